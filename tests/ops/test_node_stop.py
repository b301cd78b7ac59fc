"""Stopping a node in the middle of a long task: real ``edge-node start`` processes, a real
Mosquitto and coordinator. SIGTERM (systemd's stop) gives the task ``[tasks] stop_grace``
seconds, kills it, publishes the offline status and exits 0; a second Ctrl-C kills at once; and
a node killed with SIGKILL leaves no task process behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from manta_mqtt.coordinator.coordinator import Coordinator, CoordinatorOptions
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import NodeStatus
from manta_mqtt.swarm import load_swarm
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from ..conftest import ROOT, SIGNING_KEY, BrokerUnderTest, NodeProcess
from ..test_e2e_swarm import COUNTER, numbers


@dataclass
class Busy:
    """A node process running a task that sleeps for ten minutes."""

    node: NodeProcess
    task: psutil.Process  # the task process (python -m manta_mqtt.runtime.child)
    group: list[psutil.Process]  # the task and every process it started (its sentinel among them)

    @property
    def pid(self) -> int:
        assert self.node.proc is not None
        return self.node.proc.pid


def busy_node(mosquitto: BrokerUnderTest, tmp_path: Path, grace: float) -> Iterator[Busy]:
    node = NodeProcess(tmp_path / "nodes", "n1", mosquitto, {"numbers.npy": numbers(tmp_path)})
    node.config.write_text(node.config.read_text() + f"[tasks]\nstop_grace = {grace}\n")
    node.start()
    swarm = load_swarm(COUNTER)
    swarm.globals.update(delay=600, rounds=1)
    options = CoordinatorOptions(
        runs_dir=tmp_path / "runs", min_nodes=1, wait_nodes=30, mqtt_version=mosquitto.version, signing_key=SIGNING_KEY
    )
    coordinator = Coordinator(swarm, BrokerAddress.parse(mosquitto.url), options, ConsoleProgress())
    thread = threading.Thread(target=coordinator.run, daemon=True)
    thread.start()
    try:
        task = task_of(node)
        yield Busy(node, task, [task, *task.children(recursive=True)])
    finally:
        coordinator.interrupt()
        thread.join(30)
        node.stop()


def task_of(node: NodeProcess, timeout: float = 60.0) -> psutil.Process:
    """The node's task process, once it has run for a second (user code runs by then)."""
    assert node.proc is not None
    agent = psutil.Process(node.proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = [p for p in agent.children() if "manta_mqtt.runtime.child" in " ".join(p.cmdline())]
        if tasks and time.time() - tasks[0].create_time() > 1.0:
            return tasks[0]
        assert node.proc.poll() is None, node.output()
        time.sleep(0.2)
    raise AssertionError(f"no task started on the node:\n{node.output()}")


def alive(processes: list[psutil.Process], within: float) -> list[psutil.Process]:
    """Those of ``processes`` still running (not zombies) after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        running = []
        for p in processes:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    running.append(p)
            except psutil.NoSuchProcess:
                pass
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.1)


def retained_status(broker: BrokerUnderTest, node_id: str) -> NodeStatus:
    statuses: list[NodeStatus] = []
    link = MqttLink("status-reader", BrokerAddress.parse(broker.url), version=broker.version, session_expiry=0)
    link.route(topics.node_status(node_id), lambda t, p, r: statuses.append(NodeStatus.parse(p)))
    assert link.start() and link.subscribe(topics.node_status(node_id), wait=5)
    deadline = time.monotonic() + 5
    while not statuses and time.monotonic() < deadline:
        time.sleep(0.05)
    link.stop()
    assert statuses, "no retained status"
    return statuses[-1]


@pytest.fixture
def busy(mosquitto: BrokerUnderTest, tmp_path: Path) -> Iterator[Busy]:
    yield from busy_node(mosquitto, tmp_path, grace=2)


@pytest.fixture
def patient(mosquitto: BrokerUnderTest, tmp_path: Path) -> Iterator[Busy]:
    yield from busy_node(mosquitto, tmp_path, grace=600)


def test_sigterm_during_a_task_kills_it_after_the_grace_and_exits_0(busy: Busy, mosquitto: BrokerUnderTest) -> None:
    assert busy.node.proc is not None
    busy.node.proc.send_signal(signal.SIGTERM)
    assert busy.node.proc.wait(timeout=2 + 30) == 0, busy.node.output()
    assert alive(busy.group, within=5) == []
    log = busy.node.output()
    assert "stopping: waiting up to 2 s for task " in log and "/0/worker killed" in log, log
    assert retained_status(mosquitto, "n1").state == "offline"


def test_a_second_ctrl_c_kills_the_task_at_once(patient: Busy) -> None:
    """A grace of ten minutes: only the second SIGINT can end this run within the test's bound."""
    assert patient.node.proc is not None
    patient.node.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 30
    while "stopping: waiting up to 600 s" not in patient.node.output():
        assert time.monotonic() < deadline, patient.node.output()
        time.sleep(0.1)
    assert patient.task.is_running()  # the first Ctrl-C waits for the task
    patient.node.proc.send_signal(signal.SIGINT)
    assert patient.node.proc.wait(timeout=30) == 0, patient.node.output()
    assert alive(patient.group, within=5) == []
    assert "/0/worker killed" in patient.node.output()


def test_sigkill_of_the_agent_leaves_no_task_process(busy: Busy) -> None:
    assert busy.node.proc is not None
    busy.node.proc.kill()
    busy.node.proc.wait(timeout=10)
    assert alive(busy.group, within=10) == []


HOST = """
import sys
from pathlib import Path
from manta_mqtt.runtime.executor import run_task

class Host:
    def context(self):
        return {}

run_task(Path(sys.argv[1]), "usertask", Host(), timeout=600, workdir=Path(sys.argv[2]))
"""

TASK_WITH_A_CHILD = """
import os, subprocess, sys, time

def main():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open("pids.tmp", "w").write(f"{os.getpid()} {child.pid}")
    os.rename("pids.tmp", "pids")
    time.sleep(600)
"""


def test_a_killed_host_takes_the_task_and_the_processes_it_started_along(tmp_path: Path) -> None:
    """The runtime alone (the coordinator runs tasks with it too): SIGKILL the process that called run_task."""
    bundle, work = tmp_path / "bundle", tmp_path / "work"
    bundle.mkdir()
    (bundle / "usertask.py").write_text(TASK_WITH_A_CHILD)
    host = subprocess.Popen([sys.executable, "-c", HOST, str(bundle), str(work)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (work / "pids").exists():
            assert time.monotonic() < deadline and host.poll() is None
            time.sleep(0.1)
        task, child = (psutil.Process(int(pid)) for pid in (work / "pids").read_text().split())
        group = [task, *task.children()]  # its child and its sentinel
        assert child in group and len(group) == 3
    finally:
        host.kill()
        host.wait()
    assert alive(group, within=10) == []
