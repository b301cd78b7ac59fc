"""Warm task processes on a node: the worker thread keeps one per swarm's task, reuses it, reaps
it after ``[tasks] warm_idle`` seconds and when its swarm ends, and ends it when it stops; the
main thread passes a swarm's end on. Real task processes, a fake link and fetcher, no broker.
"""

from __future__ import annotations

import io
import queue
import zipfile
from pathlib import Path

import pytest

from edge_node.agent import EdgeAgent
from edge_node.config import NodeConfig
from edge_node.events import Event, Job, JobFinished, SwarmEnded
from edge_node.worker import Worker
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.protocol.messages import Assignment, CodeRef
from manta_mqtt.protocol.signing import Trust
from manta_mqtt.runtime.reuse import ReuseSettings
from manta_mqtt.transport.mqtt import BrokerAddress

from .test_edge_worker import FakeLink, results, wait_for
from .test_runtime_pool import eventually, gone

#: Writes "pid runs" to its working folder (the node's work/<swarm>) each run.
TASK = """
import os
RUNS = 0

def main():
    global RUNS
    RUNS += 1
    with open("seen.tmp", "w") as out:
        out.write(f"{os.getpid()} {RUNS}")
    os.replace("seen.tmp", "seen")
"""


class NothingMissing:
    """The fetcher of a node whose cache holds everything already."""

    def fetch(
        self, swarm: str, shas: list[str], timeout: float, sizes: object = None, cancel: object = None
    ) -> list[str]:
        return []


def code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("usertask.py", TASK)
    return buffer.getvalue()


def make(tmp_path: Path, reuse: ReuseSettings) -> tuple[Worker, queue.Queue[Event], str]:
    address, trust = BrokerAddress.parse("mqtt://127.0.0.1:9"), Trust([], allow_unsigned=True)
    config = NodeConfig("n1", address, tmp_path, trust=trust, task_reuse=reuse)
    cache = BlobStore(tmp_path / "cache")
    sha = cache.put(code_zip())
    inbox: queue.Queue[Event] = queue.Queue()
    worker = Worker(config, FakeLink(), cache, NothingMissing(), inbox)  # type: ignore[arg-type]
    return worker, inbox, sha


def run_job(worker: Worker, inbox: queue.Queue[Event], sha: str, iteration: int, swarm: str = "sw") -> tuple[int, int]:
    """Submit one job, wait for it, and return the task's (pid, runs)."""
    job = Job(Assignment(swarm, iteration, "worker", 0, CodeRef(sha, "usertask"), {}, [], 60.0))
    worker.submit(job)
    wait_for(inbox, JobFinished(job.key), [])
    pid, runs = (worker.config.data_dir / "work" / swarm / "seen").read_text().split()
    return int(pid), int(runs)


def test_the_worker_reuses_a_task_process_and_ends_it_with_its_swarm(tmp_path: Path) -> None:
    worker, inbox, sha = make(tmp_path, ReuseSettings())
    worker.start()
    try:
        first = run_job(worker, inbox, sha, 0)
        second = run_job(worker, inbox, sha, 1)
        assert first[0] == second[0] and (first[1], second[1]) == (1, 2)
        other = run_job(worker, inbox, sha, 0, swarm="other")
        assert other[0] != first[0] and other[1] == 1  # never shared between swarms
        worker.end_swarm("sw")
        assert eventually(lambda: gone(first[0]))
        assert not gone(other[0])
    finally:
        worker.stop()
        worker.join()
    assert gone(other[0])  # the worker's end takes the rest
    assert [e.status for e in results(worker.link)] == ["ok", "ok"]  # type: ignore[arg-type]


def test_the_worker_reaps_an_idle_task_process(tmp_path: Path) -> None:
    worker, inbox, sha = make(tmp_path, ReuseSettings(idle_seconds=0.2))
    worker.start()
    try:
        pid, _ = run_job(worker, inbox, sha, 0)
        assert eventually(lambda: gone(pid))
    finally:
        worker.stop()
        worker.join()


def test_warm_off_runs_every_task_in_a_fresh_process(tmp_path: Path) -> None:
    worker, inbox, sha = make(tmp_path, ReuseSettings(enabled=False))
    worker.start()
    try:
        first = run_job(worker, inbox, sha, 0)
        second = run_job(worker, inbox, sha, 1)
        assert first[0] != second[0] and second[1] == 1
        assert gone(first[0])
    finally:
        worker.stop()
        worker.join()


def test_the_main_thread_passes_a_swarm_end_to_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = EdgeAgent(NodeConfig("n1", BrokerAddress.parse("mqtt://127.0.0.1:9"), tmp_path))
    ended: list[str] = []
    monkeypatch.setattr(agent.worker, "end_swarm", ended.append)
    monkeypatch.setattr(agent.link, "publish", lambda *args, **kwargs: None)
    agent.inbox.put(SwarmEnded("sw", "completed"))
    agent.pump(0)
    assert ended == ["sw"]
