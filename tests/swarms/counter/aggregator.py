"""Test aggregator: checks the chunked uploads, writes a new chunked global, loops or stops."""

import numpy as np

from manta_light.task import Task


class Aggregator(Task):
    def run(self):
        vals = self.world.results.select("val")
        bigs = self.world.results.select("big")
        x = max(v["x"] for v in vals.values())
        for node, big in bigs.items():
            if not np.array_equal(big, np.full(400_000, x, dtype=np.float64)):
                raise ValueError(f"chunked result from {node} arrived wrong")
        self.world.globals["x"] = x
        self.world.globals["weights"] = np.full(self.world.globals["size"], x, dtype=np.float64)
        self.world.results.add("metrics", {"x": x, "nodes": len(vals)})
        if x >= self.world.globals["rounds"]:
            self.world.stop_swarm()
        else:
            nodes = self.world.globals["nodes"] or sorted(vals)
            self.world.schedule_next_iter(node_ids=nodes, task_to_schedule_alias="worker")


def main():
    Aggregator().run()
