"""``manta-mqtt run`` as an operator runs it: a real process, a real Mosquitto, real edge nodes.

SIGINT and SIGTERM end a run as "interrupted" (retained on the broker, recorded in the run,
exit 128 + signal); ``--resume`` continues it to the same results as a run never interrupted;
resuming a run that really ended is refused in one line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.coordinator.store import RunStore
from manta_mqtt.swarm import load_swarm
from manta_mqtt.tools.processes import stop_process
from manta_mqtt.transport.mqtt import BrokerAddress

from ..chaos.test_chaos import Watcher
from ..conftest import ROOT, SIGNING_KEY, BrokerUnderTest

COUNTER_DIR = ROOT / "tests" / "swarms" / "counter"


def counter_copy(tmp_path: Path, name: str, *, rounds: int = 3, delay: float = 0.0) -> Path:
    """The counter swarm in its own folder, with other defaults for ``rounds`` and ``delay``."""
    folder = tmp_path / name
    folder.mkdir()
    for source in COUNTER_DIR.glob("*.py"):
        (folder / source.name).write_text(source.read_text())
    swarm = folder / "swarm.py"
    text = swarm.read_text()
    assert "def __init__(self, rounds=3, delay=0.0):" in text
    swarm.write_text(text.replace("rounds=3, delay=0.0", f"rounds={rounds}, delay={delay}"))
    return swarm


def numbers(tmp_path: Path) -> dict[str, Path]:
    path = tmp_path / "numbers.npy"
    if not path.exists():
        np.save(path, np.arange(10))
    return {"numbers.npy": path}


class RunProcess:
    """``python -m manta_mqtt.cli.main run ...`` with its output in files."""

    def __init__(self, tmp_path: Path, label: str, args: list[str]) -> None:
        self.out, self.err = tmp_path / f"{label}.out", tmp_path / f"{label}.err"
        cmd = [sys.executable, "-m", "manta_mqtt.cli.main", "run", *args]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=tmp_path)

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


def run_args(swarm: Path, broker: BrokerUnderTest, runs: Path, *extra: str) -> list[str]:
    return [
        str(swarm),
        "--broker",
        broker.url,
        "--mqtt-version",
        broker.version,
        "--runs-dir",
        str(runs),
        "--signing-key",
        str(SIGNING_KEY),
        *extra,
    ]


def run_folder(runs: Path, timeout: float = 30) -> Path:
    """The folder the run made (its name is the swarm id)."""
    deadline = time.monotonic() + timeout
    while not (runs.is_dir() and any(runs.iterdir())):
        assert time.monotonic() < deadline, "the run made no folder"
        time.sleep(0.05)
    (folder,) = runs.iterdir()
    return folder


def results_of(store: RunStore) -> dict[str, object]:
    """Everything a counter run computed, in comparable form."""
    return {
        "val": store.results("val"),
        "big": {it: {n: v.tolist() for n, v in nodes.items()} for it, nodes in store.results("big").items()},
        "metrics": store.results("metrics"),
        "x": store.global_value("x"),
        "weights": store.global_value("weights").tolist(),
        "iterations": store.iterations(),
    }


def test_sigint_mid_run_interrupts_and_resume_matches_an_uninterrupted_run(
    mosquitto: BrokerUnderTest,
    tmp_path: Path,
    start_nodes: Any,
) -> None:
    ids = ["n1", "n2"]
    start_nodes(mosquitto, ids, numbers(tmp_path))
    swarm = counter_copy(tmp_path, "slow", rounds=3, delay=1.0)
    watcher = Watcher(mosquitto)
    try:
        # an uninterrupted run, for reference
        plain = RunProcess(tmp_path, "plain", run_args(swarm, mosquitto, tmp_path / "plain", "--min-nodes", "2"))
        assert plain.wait() == 0, plain.stderr()
        expected = results_of(RunStore.open(run_folder(tmp_path / "plain")))

        runs = tmp_path / "runs"
        summary = tmp_path / "summary.json"
        first = RunProcess(
            tmp_path, "first", run_args(swarm, mosquitto, runs, "--min-nodes", "2", "--summary-json", str(summary))
        )
        folder = run_folder(runs)
        swarm_id = folder.name
        watcher.wait(lambda: all(watcher.running(n, 1) for n in ids), what="both nodes to run iteration 1")
        first.proc.send_signal(signal.SIGINT)
        assert first.wait(60) == 130, first.stderr()
        assert "Traceback" not in first.stderr()
        watcher.wait(lambda: watcher.state[swarm_id].state == "interrupted", what="the retained state")
        assert "--resume" in watcher.state[swarm_id].reason
        store = RunStore.open(folder)
        final = store.meta("final")
        assert final["state"] == "interrupted"
        assert final["iterations"] == len(store.iterations()) == 1  # iteration 0 done, 1 under way
        assert json.loads(summary.read_text())["iterations"] == 1
        assert "swarm interrupted after 1 iteration(s)" in first.stdout()
        store.close()
        watcher.wait(lambda: all(not watcher.running(n, 1) for n in ids), what="the nodes to drop the job")

        again = RunProcess(
            tmp_path, "again", run_args(swarm, mosquitto, runs, "--min-nodes", "2", "--resume", str(folder))
        )
        assert again.wait() == 0, again.stderr()
        watcher.wait(lambda: watcher.state[swarm_id].state == "stopped", what="the final state")
        store = RunStore.open(folder)
        assert store.meta("final")["state"] == "stopped"
        assert results_of(store) == expected

        # a run that ended cannot be resumed: one line, no traceback, exit 1
        ended = RunProcess(tmp_path, "ended", run_args(swarm, mosquitto, runs, "--resume", str(folder)))
        assert ended.wait() == 1
        err = ended.stderr().strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert re.search(r"cannot resume .*it already ended \(stopped by task aggregator\)", err), err
    finally:
        watcher.stop()


def test_sigterm_interrupts_with_143_and_nodes_drop_the_job(
    mosquitto: BrokerUnderTest,
    tmp_path: Path,
    start_nodes: Any,
) -> None:
    (node,) = start_nodes(mosquitto, ["n1"], numbers(tmp_path))
    swarm = counter_copy(tmp_path, "slower", rounds=3, delay=30.0)
    watcher = Watcher(mosquitto)
    try:
        runs = tmp_path / "runs"
        coordinator = RunProcess(tmp_path, "coordinator", run_args(swarm, mosquitto, runs))
        swarm_id = run_folder(runs).name
        watcher.wait(lambda: watcher.running("n1", 0), what="n1 to run iteration 0")
        coordinator.proc.send_signal(signal.SIGTERM)
        assert coordinator.wait(60) == 143, coordinator.stderr()
        watcher.wait(lambda: watcher.state[swarm_id].state == "interrupted", what="the retained state")
        assert "SIGTERM" in watcher.state[swarm_id].reason
        # the node kills the task (30 s of sleep) at once instead of finishing it for nobody
        watcher.wait(lambda: not watcher.running("n1", 0), timeout=20, what="n1 to drop the job")
        assert f"swarm {swarm_id} is interrupted: cancelling its running task" in node.output()
    finally:
        watcher.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_waiting_for_nodes_leaves_no_run(mosquitto: BrokerUnderTest, tmp_path: Path, sig: int) -> None:
    """Nothing started: exit 128 + signal, and no run folder (nothing to resume)."""
    runs = tmp_path / "runs"
    swarm = counter_copy(tmp_path, "lonely")
    coordinator = RunProcess(tmp_path, "coordinator", run_args(swarm, mosquitto, runs, "--min-nodes", "3"))
    try:
        deadline = time.monotonic() + 30
        while "waiting for 3 eligible node(s)" not in coordinator.stdout():
            assert time.monotonic() < deadline and coordinator.proc.poll() is None, coordinator.stderr()
            time.sleep(0.05)
        os.kill(coordinator.proc.pid, sig)
        assert coordinator.wait(30) == 128 + sig
        assert "Traceback" not in coordinator.stderr()
        assert not any(runs.iterdir())
    finally:
        coordinator.stop()


def test_interrupt_kills_a_running_coordinator_task(
    mosquitto: BrokerUnderTest,
    tmp_path: Path,
    start_nodes: Any,
) -> None:
    """An aggregator that would run for minutes does not hold the interruption: it is killed,
    and the run ends "interrupted", not "failed" (its death is not the task's failure)."""
    start_nodes(mosquitto, ["n1"], numbers(tmp_path))
    swarm_file = counter_copy(tmp_path, "sleepy")
    (swarm_file.parent / "aggregator.py").write_text(
        "import time\nfrom manta_light.task import Task\n\n\ndef main():\n    time.sleep(600)\n"
    )
    workers_done = threading.Event()

    class Progress(ConsoleProgress):
        def step_finished(self, iteration: int, task: str, ok: int, total: int, metrics: dict[str, float]) -> None:
            super().step_finished(iteration, task, ok, total, metrics)
            workers_done.set()

    options = CoordinatorOptions(runs_dir=tmp_path / "runs", mqtt_version="5", signing_key=SIGNING_KEY)
    coordinator = Coordinator(load_swarm(swarm_file), BrokerAddress.parse(mosquitto.url), options, Progress())
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(coordinator.run()), daemon=True)
    thread.start()
    assert workers_done.wait(60)
    time.sleep(0.5)  # the aggregator's process is starting or running
    coordinator.interrupt(signal.SIGTERM)
    thread.join(60)
    assert out, "the coordinator did not stop"
    summary = out[0]
    assert (summary.state, summary.exit_code) == ("interrupted", 143)
    store = RunStore.open(summary.store_path)
    assert store.meta("final")["state"] == "interrupted"
    assert [r["task"] for r in store.runs()] == ["worker"]  # the killed aggregator is not recorded as failed
