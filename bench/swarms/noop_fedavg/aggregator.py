"""FedAvg of the workers' models; records the time of each aggregation (the bench's round clock)."""

import time

import numpy as np

from manta_light.task import Task


class Aggregator(Task):
    def run(self):
        models = list(self.world.results.select("model").values())
        averaged = {name: np.zeros_like(layer) for name, layer in models[0].items()}
        for model in models:  # a running sum: one model's worth of memory, not one per node
            for name, layer in model.items():
                averaged[name] += layer
        for layer in averaged.values():
            layer /= np.float32(len(models))
        self.world.globals["model"] = averaged
        done = self.world.globals["rounds_done"] + 1
        self.world.results.add("clock", {"t": time.time(), "nodes": len(models)})
        self.world.globals["rounds_done"] = done
        if done >= self.world.globals["rounds"]:
            self.world.stop_swarm()
        else:
            nodes = sorted(self.world.results.select("model"))
            self.world.schedule_next_iter(node_ids=nodes, task_to_schedule_alias="worker")


def main():
    Aggregator().run()
