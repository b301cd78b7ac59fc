"""One real round, timed: a private Mosquitto, N edge-node processes, an in-process coordinator.

A no-op swarm: each worker returns a float32 array of ``--mib`` MiB, its own (identical ones
would be stored once and their other uploads dropped), so a round costs only moving them up; the
coordinator's aggregator does nothing and stops after ``--rounds``. Prints, per round: the time
from the worker step's start to the aggregator step's end; the CPU time of the coordinator's own
threads (network and main, not its task processes) and its swarm state publishes in that time;
the tail, from the network thread taking the last result message (envelope or upload chunk) to
the worker step's end in the pump (the coordinator's latency), and how much of it the message
waited in the intake queue; the local (aggregator) step's time.

    .venv/bin/python bench/profile_round.py --nodes 16 --mib 10 --rounds 2
    .venv/bin/python bench/profile_round.py --nodes 16 --py-spy /tmp/round.svg  # .txt: collapsed stacks

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
from manta_mqtt.coordinator.engine import UploadCompleted  # noqa: E402
from manta_mqtt.coordinator.engine.actions import PublishState  # noqa: E402
from manta_mqtt.coordinator.intake import Intake, Received, ReceivedEnvelope  # noqa: E402
from manta_mqtt.coordinator.state import StateBoard  # noqa: E402
from manta_mqtt.swarm import load_swarm  # noqa: E402
from manta_mqtt.tools.mosquitto import MosquittoProcess, find_mosquitto  # noqa: E402
from manta_mqtt.tools.processes import stop_process  # noqa: E402
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink  # noqa: E402

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
        value = sum(map(ord, self.node_id)) + 1000 * self.world.globals["done"]  # a blob of its own
        self.world.results.add("model", np.full(n, value, dtype=np.float32))

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


#: when the network thread last took a result envelope or upload chunk ("last"), and when the
#: pump last took a result envelope or a completed upload off the queue ("taken")
ARRIVED = {"last": 0.0, "taken": 0.0}


Handler = Callable[[Intake, str, bytes, bool], None]


def _timed(method: Handler) -> Handler:
    def wrapper(self: Intake, topic: str, payload: bytes, retained: bool) -> None:
        method(self, topic, payload, retained)
        ARRIVED["last"] = time.monotonic()

    return wrapper


for _name in ("on_results", "on_upload"):
    setattr(Intake, _name, _timed(getattr(Intake, _name)))
_next = Intake.next


def _next_timed(self: Intake, timeout: float) -> Received:
    item = _next(self, timeout)
    if isinstance(item, ReceivedEnvelope | UploadCompleted):
        ARRIVED["taken"] = time.monotonic()
    return item


Intake.next = _next_timed  # type: ignore[method-assign]
STATES = {"published": 0}  # swarm state publishes (each goes to every node)
_publish = StateBoard.publish


def _publish_counted(self: StateBoard, link: MqttLink, state: PublishState, metrics: dict[str, float]) -> None:
    STATES["published"] += 1
    _publish(self, link, state, metrics)


StateBoard.publish = _publish_counted  # type: ignore[method-assign]


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
            self._open = {"start": time.monotonic(), "cpu": time.process_time(), "states": STATES["published"]}

    def node_done(self, node: str, ok: bool) -> None:
        pass

    def step_finished(self, iteration: int, task: str, ok: int, total: int, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        if task == "worker" and "start" in self._open:
            self._open["worker_end"] = now
            self._open["last_result"] = ARRIVED["last"]
            self._open["taken"] = ARRIVED["taken"]
        elif "worker_end" in self._open:
            o = self._open
            self.rounds.append(
                {
                    "round": now - o["start"],
                    "local": now - o["worker_end"],  # the coordinator's step (aggregator process)
                    "cpu": time.process_time() - o["cpu"],  # the coordinator's threads, not its task processes
                    "states": STATES["published"] - o["states"],
                    "tail": o["worker_end"] - o["last_result"],
                    "queued": o["taken"] - o["last_result"],  # of the tail: waiting in the intake queue
                }
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
    queued = [r["queued"] for r in clock.rounds]
    cpu = [r["cpu"] for r in clock.rounds]
    states = [r["states"] for r in clock.rounds]
    local = [r["local"] for r in clock.rounds]
    print(f"{summary.state}: {args.nodes} nodes x {args.mib} MiB, {len(rounds)} rounds")
    for i, r in enumerate(clock.rounds):
        tail, wait = r["tail"] * 1000, r["queued"] * 1000
        print(f"  round {i}: {r['round']:.3f} s, coordinator CPU {r['cpu']:.3f} s, {r['states']:.0f} state publishes")
        print(f"    tail after the last result {tail:.0f} ms ({wait:.0f} ms queued); local step {r['local']:.3f} s")
    if rounds:
        print(f"  median round {statistics.median(rounds):.3f} s, median tail {statistics.median(tails) * 1000:.0f} ms")
    if args.json:
        row = {"rounds": rounds, "tails": tails, "queued": queued, "cpu": cpu, "states": states, "local": local}
        print(json.dumps({"nodes": args.nodes, "mib": args.mib, **row}))


if __name__ == "__main__":
    main()
