"""Test worker: exercises globals (small and chunked), local data, and results (small and chunked)."""

import ctypes
import time

import numpy as np

from manta_light.task import Task


class Worker(Task):
    def run(self):
        x = self.world.globals["x"]
        weights = self.world.globals["weights"]  # a multi-chunk global
        if not np.array_equal(weights, np.full(self.world.globals["size"], x, dtype=np.float64)):
            raise ValueError("chunked global arrived wrong")
        time.sleep(self.world.globals["delay"])
        if self.world.globals["crash"] == [self.node_id, x]:
            ctypes.string_at(0)  # a segfault, on purpose
        data = self.local.get_numpy_data("numbers.npy")
        self.world.results.add("val", {"x": x + 1, "sum": int(data.sum()), "node": self.node_id})
        big = np.full(400_000, x + 1, dtype=np.float64)  # uploaded in chunks
        if self.world.globals["poison"] == self.node_id:
            big = {"x": "boom"}  # a compromised node's result: the aggregator raises on it
        self.world.results.add("big", big)
        if self.world.globals["rewrite"] == self.node_id:  # a compromised node tries to take over
            self.world.globals["x"] = 1000
            self.world.globals["rounds"] = 10**9
            self.world.stop_swarm()


def main():
    Worker().run()
