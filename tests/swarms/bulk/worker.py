"""A result of ``elements`` float64 values, each the iteration plus the node's number: exact to check."""

import numpy as np

from manta_light.task import Task


class Worker(Task):
    def run(self):
        x = self.world.globals["x"]
        value = x + int(self.node_id.lstrip("n"))
        self.world.results.add("big", np.full(self.world.globals["elements"], value, dtype=np.float64))


def main():
    Worker().run()
