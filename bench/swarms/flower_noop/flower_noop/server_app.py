"""FedAvg over every SuperNode for a number of rounds; records the time of each aggregation.

The model (four float32 arrays, ``model-bytes`` in all, as bench/swarms/noop_fedavg/swarm.py)
and the clock file (one time per line, appended after each aggregation) come from the run config.
"""

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


class ClockedFedAvg(FedAvg):
    def __init__(self, clock_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock_file = clock_file

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        with open(self.clock_file, "a") as clock:
            clock.write(f"{time.time()} {sum(not r.has_error() for r in replies)}\n")
        return arrays, metrics


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    nodes, count = int(config["nodes"]), int(config["model-bytes"]) // 4
    quarter = count // 4
    sizes = [quarter, quarter, quarter, count - 3 * quarter]
    initial = ArrayRecord([np.zeros(n, dtype=np.float32) for n in sizes])
    strategy = ClockedFedAvg(
        str(config["clock-file"]),
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=nodes,
        min_available_nodes=nodes,
    )
    strategy.start(grid=grid, initial_arrays=initial, num_rounds=int(config["rounds"]), timeout=1800)
