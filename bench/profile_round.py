"""One real round, timed: a private Mosquitto, N edge-node processes, an in-process coordinator.

A no-op swarm: each worker returns a float32 array of ``--mib`` MiB (so the round costs only
moving it up), the coordinator's aggregator does nothing and stops after ``--rounds``. Prints,
per round, the time from the worker step's start to the aggregator step's end, and the tail:
from the network thread taking the last result message (envelope or upload chunk) to the
worker step's end in the pump (the coordinator's own latency).

    .venv/bin/python bench/profile_round.py --nodes 16 --mib 10 --rounds 2
    .venv/bin/python bench/profile_round.py --nodes 16 --py-spy /tmp/round.svg  # a flame graph (.txt: collapsed stacks)

Runs the code of the checkout it is in (for before/after comparisons, run it from two worktrees).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions  # noqa: E402
from manta_mqtt.coordinator.intake import Intake  # noqa: E402
from manta_mqtt.swarm import load_swarm  # noqa: E402
from manta_mqtt.tools.mosquitto import MosquittoProcess, find_mosquitto  # noqa: E402
from manta_mqtt.tools.processes import stop_process  # noqa: E402
from manta_mqtt.transport.mqtt import BrokerAddress  # noqa: E402

SWARM = """
from manta_mqtt import Module, Swarm, Task

class NoopRound(Swarm):
    name = "noop_round"

    def __init__(self):
        super().__init__()
        self.worker = Task(Module("worker.py"), alias="worker", timeout=600)
        self.aggregator = Task(Module("aggregator.py"), placement="coordinator", timeout=600)
        self.set_global("mib", 10)
        self.set_global("rounds", 1)
        self.set_global("done", 0)
        self.set_global("nodes", [])

    def execute(self):
        return self.aggregator(self.worker())
"""
WORKER = """
import numpy as np
from manta_light.task import Task

class Worker(Task):
    def run(self):
        n = self.world.globals["mib"] * (1 << 20) // 4
        self.world.results.add("model", np.full(n, 1.0, dtype=np.float32))

def main():
    Worker().run()
"""
AGGREGATOR = """
from manta_light.task import Task

class Aggregator(Task):
    def run(self):
        done = self.world.globals["done"] + 1
        self.world.globals["done"] = done
        if done >= self.world.globals["rounds"]:
            self.world.stop_swarm()
        else:
            self.world.schedule_next_iter(node_ids=self.world.globals["nodes"], task_to_schedule_alias="worker")

def main():
    Aggregator().run()
"""


ARRIVED = {"last": 0.0}  # when the network thread last took a result envelope or upload chunk


Handler = Callable[[Intake, str, bytes, bool], None]


def _timed(method: Handler) -> Handler:
    def wrapper(self: Intake, topic: str, payload: bytes, retained: bool) -> None:
        method(self, topic, payload, retained)
        ARRIVED["last"] = time.monotonic()

    return wrapper


for _name in ("on_results", "on_upload"):
    setattr(Intake, _name, _timed(getattr(Intake, _name)))


class Clock:
    """A ProgressView that timestamps steps and results (the pump calls it on the main thread)."""

    def __init__(self) -> None:
        self.rounds: list[dict[str, float]] = []
        self._open: dict[str, float] = {}

    def info(self, message: str) -> None:
        print(message, flush=True)

    def warn(self, message: str) -> None:
        print("WARN", message, flush=True)

    def task_error(self, task: str, node: str, error: str) -> None:
        print("TASK ERROR", task, node, error, flush=True)

    def step_started(self, iteration: int, task: str, nodes: list[str]) -> None:
        if task == "worker":
            self._open = {"start": time.monotonic()}

    def node_done(self, node: str, ok: bool) -> None:
        pass

    def step_finished(self, iteration: int, task: str, ok: int, total: int, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        if task == "worker" and "start" in self._open:
            self._open["worker_end"] = now
            self._open["last_result"] = ARRIVED["last"]
        elif "worker_end" in self._open:
            o = self._open
            self.rounds.append(
                {"round": now - o["start"], "tail": o["worker_end"] - o.get("last_result", o["worker_end"])}
            )
            self._open = {}

    def finished(self, state: str, reason: str, iterations: int) -> None:
        print(f"finished: {state} ({reason}), {iterations} iterations", flush=True)


def node_config(home: Path, node: str, url: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    lines = [
        "[node]",
        f'id = "{node}"',
        f'data_dir = "{home / "state"}"',
        "[broker]",
        f'url = "{url}"',
        'version = "5"',
        "[trust]",
        "allow_unsigned = true",
    ]
    path = home / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--mib", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--py-spy", metavar="FILE", help="record the coordinator with py-spy into FILE")
    parser.add_argument("--json", action="store_true", help="print the rounds as one JSON line at the end")
    args = parser.parse_args()
    binary = find_mosquitto()
    if binary is None:
        sys.exit("Mosquitto is not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="profile-round-") as tmp_name:
        tmp = Path(tmp_name)
        swarm_dir = tmp / "swarm"
        swarm_dir.mkdir()
        for name, text in (("swarm.py", SWARM), ("worker.py", WORKER), ("aggregator.py", AGGREGATOR)):
            (swarm_dir / name).write_text(text)
        ids = [f"n{i:02d}" for i in range(args.nodes)]
        broker = MosquittoProcess(tmp / "mosquitto", binary=binary).start()
        procs: list[subprocess.Popen[bytes]] = []
        spy: subprocess.Popen[bytes] | None = None
        try:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            for node in ids:
                config = node_config(tmp / "nodes" / node, node, broker.url)
                with (tmp / "nodes" / node / "node.log").open("ab") as log:
                    cmd = [sys.executable, "-m", "edge_node.cli", "start", "--config", str(config)]
                    procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env))
            swarm = load_swarm(swarm_dir / "swarm.py")
            swarm.globals.update(mib=args.mib, rounds=args.rounds, nodes=ids)
            options = CoordinatorOptions(runs_dir=tmp / "runs", min_nodes=args.nodes, wait_nodes=120, mqtt_version="5")
            clock = Clock()
            if args.py_spy:
                spy_cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(os.getpid())]
                fmt = "raw" if args.py_spy.endswith(".txt") else "flamegraph"  # raw: collapsed stacks
                spy = subprocess.Popen([*spy_cmd, "-o", args.py_spy, "-f", fmt, "--threads", "--nonblocking"])
            summary = Coordinator(swarm, BrokerAddress.parse(broker.url), options, clock).run()  # type: ignore[arg-type]
        finally:
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=60)
            for proc in procs:
                stop_process(proc)
            broker.stop()
    rounds = [r["round"] for r in clock.rounds]
    tails = [r["tail"] for r in clock.rounds]
    print(f"{summary.state}: {args.nodes} nodes x {args.mib} MiB, {len(rounds)} rounds")
    for i, r in enumerate(clock.rounds):
        print(f"  round {i}: {r['round']:.3f} s (tail after the last result {r['tail'] * 1000:.0f} ms)")
    if rounds:
        print(f"  median round {statistics.median(rounds):.3f} s, median tail {statistics.median(tails) * 1000:.0f} ms")
    if args.json:
        print(json.dumps({"nodes": args.nodes, "mib": args.mib, "rounds": rounds, "tails": tails}))


if __name__ == "__main__":
    main()
