"""FedAvg of the workers' models, streamed one node at a time (``results.iter``), so the
aggregator holds the running sum and one node's model, not one per node; records the time of
each aggregation (the bench's round clock)."""

import time

from manta_light.task import Task
from manta_light.utils import fedavg


class Aggregator(Task):
    def run(self):
        nodes = sorted(self.world.results.nodes("model"))
        averaged = fedavg(self.world.results.iter("model"), model_key=None, weight_key=None)
        self.world.globals["model"] = averaged
        del averaged  # the host has it now
        done = self.world.globals["rounds_done"] + 1
        self.world.results.add("clock", {"t": time.time(), "nodes": len(nodes)})
        self.world.globals["rounds_done"] = done
        if done >= self.world.globals["rounds"]:
            self.world.stop_swarm()
        else:
            self.world.schedule_next_iter(node_ids=nodes, task_to_schedule_alias="worker")


def main():
    Aggregator().run()
