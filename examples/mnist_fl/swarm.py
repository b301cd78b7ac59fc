"""The seed's federated-learning swarm: workers train on their node's digits, the coordinator
averages their models (FedAvg) and re-schedules the nodes still below 95% validation accuracy.

    manta-mqtt run examples/mnist_fl/swarm.py --broker mqtt://127.0.0.1:1883 --min-nodes 3
"""

import importlib.util
from pathlib import Path

from hyperparameters import HYPERPARAMETERS  # a sibling file of this swarm

from manta_light.utils import numpy_to_bytes
from manta_mqtt import Module, Swarm, Task

HERE = Path(__file__).parent


def initial_weights() -> dict:
    """The MLP's seeded initial weights (this imports torch on the coordinator, once)."""
    spec = importlib.util.spec_from_file_location("mnist_model", HERE / "worker" / "model.py")
    assert spec is not None and spec.loader is not None
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    return model.MLP().get_weights()


class FLSwarm(Swarm):
    name = "mnist-fl"

    def __init__(self):
        super().__init__()
        self.worker = Task(Module("worker", datasets=["mnist_part.npz"]), method="all", alias="worker", timeout=300)
        self.aggregator = Task(Module("aggregator.py"), method="any", maximum=1, placement="coordinator")
        self.scheduler = Task(Module("scheduler.py"), method="any", maximum=1, placement="coordinator")
        self.set_global("hyperparameters", HYPERPARAMETERS)
        self.set_global("global_model_params", numpy_to_bytes(initial_weights()))

    def execute(self):
        return self.scheduler(self.aggregator(self.worker()))
