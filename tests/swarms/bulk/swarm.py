"""A swarm whose nodes upload large results at once: the coordinator's grants pace them."""

from manta_mqtt import Module, Swarm, Task


class BulkSwarm(Swarm):
    name = "bulk"

    def __init__(self, rounds=2, elements=786_432):
        super().__init__()
        self.worker = Task(Module("worker.py"), alias="worker", timeout=60)
        self.aggregator = Task(Module("aggregator.py"), placement="coordinator", timeout=60)
        self.set_global("x", 0)
        self.set_global("rounds", rounds)
        self.set_global("elements", elements)  # of each node's float64 result: 6 MiB by default

    def execute(self):
        return self.aggregator(self.worker())
