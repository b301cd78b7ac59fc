"""A no-op FedAvg swarm for the benchmarks: numpy only, so a round costs only moving the model.

Each worker adds a constant to the model; the aggregator averages what came back (FedAvg) and
records when it ran, so the bench reads the round time as the gap between aggregations.
The model size and the number of rounds come from the environment the bench sets.
"""

import os

import numpy as np

from manta_mqtt import Module, Swarm, Task


def initial_model(total_bytes):
    """A dict of float32 layers (four), ``total_bytes`` in all."""
    count = total_bytes // 4
    quarter = count // 4
    sizes = [quarter, quarter, quarter, count - 3 * quarter]
    return {f"layer{i}": np.zeros(n, dtype=np.float32) for i, n in enumerate(sizes)}


class NoopFedAvg(Swarm):
    name = "noop_fedavg"

    def __init__(self):
        super().__init__()
        self.worker = Task(Module("worker.py"), alias="worker", timeout=600)
        self.aggregator = Task(Module("aggregator.py"), placement="coordinator", timeout=600)
        self.set_global("rounds", int(os.environ.get("MANTA_BENCH_ROUNDS", "3")))
        self.set_global("rounds_done", 0)
        self.set_global("model", initial_model(int(os.environ.get("MANTA_BENCH_MODEL_BYTES", str(1 << 20)))))

    def execute(self):
        return self.aggregator(self.worker())
