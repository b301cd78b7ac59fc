"""A small swarm for integration tests: no torch, deterministic, exact expected results."""

import numpy as np

from manta_mqtt import Module, Swarm, Task


class CounterSwarm(Swarm):
    name = "counter"

    def __init__(self, rounds=3, delay=0.0):
        super().__init__()
        self.worker = Task(Module("worker.py", datasets=["numbers.npy"]), alias="worker", timeout=60)
        self.aggregator = Task(Module("aggregator.py"), placement="coordinator", timeout=60)
        self.set_global("x", 0)
        self.set_global("rounds", rounds)
        self.set_global("delay", delay)
        self.set_global("crash", None)  # [node id, x]: that node's worker segfaults at that x
        self.set_global("nodes", None)  # nodes to schedule each iteration (default: those that answered)
        self.set_global("rewrite", None)  # a node id: that node's worker sets globals and stops the swarm
        self.set_global("poison", None)  # a node id: that node's worker sends a result the aggregator raises on
        self.set_global("size", 300_000)  # elements of the "weights" global (8 bytes each)
        self.set_global("weights", np.zeros(300_000, dtype=np.float64))

    def execute(self):
        return self.aggregator(self.worker())
