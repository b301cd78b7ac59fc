"""The seed's FL example (examples/mnist_fl) over MQTT, next to the same training in one process.

Over MQTT: a Mosquitto of our own, 3 ``edge-node start`` processes (one torch thread each, as in
run_demo.py), each holding one of examples/mnist_fl/data/node{1,2,3}.npz, and ``manta-mqtt run
examples/mnist_fl/swarm.py`` (workers train the MLP, the aggregator averages, the scheduler
re-schedules the nodes below 95 % validation accuracy) until the scheduler stops it. An
iteration ends when its last task (the scheduler) finished, as recorded in the run's store; the
seconds of iteration k are the gap between the ends of iterations k-1 and k, so the first
iteration (start-up, the nodes' first fetch) is not counted.

In one process: a plain Python process (one torch thread, no messaging, no serialisation) that
imports the example's own code (worker/model.py's MLP, the Worker's ``train_model``, the
Aggregator's ``aggregate_models``, hyperparameters.py) and runs the same iterations: in each,
the nodes that trained in that iteration of the MQTT run train one after another, each on its
own partition from the global weights, and their weights are averaged; this replay is done 3
times and each iteration's median kept. Its seconds per iteration count the same iterations (2
to the last). The example's scheduler usually stops it after two iterations, so the whole is
done ``--runs`` times (3) and the counted iterations pooled: seconds per iteration are the mean
over them, on each side.

    python bench/bench_mnist.py [--runs 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_round import start_node

from manta_mqtt.protocol.signing import OwnerKey
from manta_mqtt.tools.mosquitto import MosquittoProcess
from manta_mqtt.tools.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "mnist_fl"
NODES = 3


def over_mqtt(tmp: Path, broker: MosquittoProcess) -> list[dict[str, Any]]:
    """Runs the example to its end; per iteration: the end time, the nodes whose worker ran, and
    each task's duration (as recorded in the run's store)."""
    key = tmp / "owner.key"
    trusted = OwnerKey.generate().save(key).read_text().strip()
    procs = []
    for i in range(1, NODES + 1):
        dataset = f'[datasets]\n"mnist_part.npz" = "{EXAMPLE / "data" / f"node{i}.npz"}"\n'
        procs.append(start_node(tmp, f"node-{i}", broker.url, trusted, dataset))
    summary = tmp / "summary.json"
    command = [sys.executable, "-m", "manta_mqtt.cli.main", "run", str(EXAMPLE / "swarm.py"), "--broker", broker.url]
    command += ["--mqtt-version", "5", "--min-nodes", str(NODES), "--wait", "120", "--runs-dir", str(tmp / "runs")]
    command += ["--signing-key", str(key), "--summary-json", str(summary), "--max-iterations", "30"]
    try:
        with (tmp / "coordinator.log").open("ab") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, timeout=1800)
    finally:
        for proc in procs:
            stop_process(proc)
    if done.returncode != 0 or not summary.exists():
        tail = (tmp / "coordinator.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the MNIST swarm failed (exit {done.returncode}): {tail}")
    index = Path(json.loads(summary.read_text())["store"]) / "index.sqlite"
    with sqlite3.connect(index) as db:
        query = "SELECT iteration, task, node, ok, duration, at FROM runs ORDER BY iteration, at"
        rows = db.execute(query).fetchall()
    iterations: dict[int, dict[str, Any]] = {}
    for iteration, task, node, ok, duration, at in rows:
        entry = iterations.setdefault(iteration, {"end": 0.0, "nodes": [], "task_s": {}})
        entry["end"] = max(entry["end"], at)
        entry["task_s"][f"{task}@{node}"] = round(duration, 3)
        if task.startswith("worker") and ok:
            entry["nodes"].append(node)
    return [iterations[k] for k in sorted(iterations)]


def in_process(plan: list[list[int]], replays_count: int = 3) -> dict[str, Any]:
    """The same iterations in this process: ``plan`` lists, per iteration, the partitions (1-3)
    that train. The whole is replayed ``replays_count`` times from the initial weights; returns
    each iteration's median seconds and the last mean validation accuracy."""
    import numpy as np
    import torch

    sys.path.insert(0, str(EXAMPLE))
    from aggregator import Aggregator
    from hyperparameters import HYPERPARAMETERS
    from worker.model import MLP
    from worker.worker_task import Worker

    torch.set_num_threads(1)
    workers = {}
    for part in range(1, NODES + 1):  # what Worker.__init__ does on a node, minus the node
        worker = Worker.__new__(Worker)
        worker.data = dict(np.load(EXAMPLE / "data" / f"node{part}.npz"))
        worker.model = MLP()
        workers[part] = worker
    aggregator = Aggregator.__new__(Aggregator)
    replays: list[list[float]] = []
    for _ in range(replays_count):
        weights = MLP().get_weights()
        seconds, accuracy = [], {}
        for parts in plan:
            started = time.perf_counter()
            models = []
            for part in parts:
                workers[part].model.set_weights(weights)
                metrics = workers[part].train_model(HYPERPARAMETERS)
                accuracy[part] = metrics["val_acc"][-1]
                models.append(workers[part].model.get_weights())
            weights = aggregator.aggregate_models(models)
            seconds.append(time.perf_counter() - started)
        replays.append(seconds)
    median = [statistics.median(each) for each in zip(*replays, strict=True)]
    return {"seconds": median, "final_accuracy": sum(accuracy.values()) / len(accuracy)}


def measure(runs: int = 3) -> dict[str, Any]:
    """``runs`` runs of the example over MQTT, each followed by its iterations in one process;
    the counted iterations (2 to the last of each run) pooled."""
    mqtt_s: list[float] = []
    local_s: list[float] = []
    per_run = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp_name, MosquittoProcess(Path(tmp_name) / "mosquitto") as broker:
            iterations = over_mqtt(Path(tmp_name), broker)
        if len(iterations) < 2:
            raise RuntimeError(f"{len(iterations)} iteration(s): too few to time one past the first")
        plan = [sorted(int(node.rsplit("-", 1)[1]) for node in it["nodes"]) for it in iterations]
        command = [sys.executable, __file__, "in-process", json.dumps(plan)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the nodes
        local = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout)
        gaps = [later["end"] - earlier["end"] for earlier, later in itertools.pairwise(iterations)]
        mqtt_s += gaps
        local_s += local["seconds"][1:]
        per_run.append(
            {
                "nodes_per_iteration": [len(parts) for parts in plan],
                "mqtt_s": [round(s, 3) for s in gaps],
                "inprocess_s": [round(s, 3) for s in local["seconds"][1:]],
                "inprocess_final_accuracy": round(local["final_accuracy"], 3),
                "task_s": [it["task_s"] for it in iterations],  # each task's duration as its runner reported it
            }
        )
    mqtt_mean, local_mean = sum(mqtt_s) / len(mqtt_s), sum(local_s) / len(local_s)
    return {
        "runs": per_run,
        "iterations_counted": len(mqtt_s),
        "mqtt_s_per_iteration": round(mqtt_mean, 3),
        "inprocess_s_per_iteration": round(local_mean, 3),
        "ratio": round(mqtt_mean / local_mean, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="?", default="measure", choices=["measure", "in-process"])
    parser.add_argument("plan", nargs="?", help="in-process only: JSON list of the partitions per iteration")
    parser.add_argument("--runs", type=int, default=3, help="runs over MQTT (each then in one process)")
    args = parser.parse_args()
    if args.what == "in-process":
        print(json.dumps(in_process(json.loads(args.plan))))
    else:
        print(measure(args.runs))


if __name__ == "__main__":
    main()
