"""The edge agent's worker thread with a fake link and fetcher (no broker, no task process): what it
reports to the main thread, when it delivers, how it stops, and that the outbox is its alone."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge_node.config import NodeConfig
from edge_node.events import Event, Job, JobFinished, JobStarted, WorkerCrashed
from edge_node.outbox import Entry
from edge_node.worker import Worker
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.ownership import WrongThread
from manta_mqtt.protocol.messages import Assignment, CodeRef, ResultEnvelope
from manta_mqtt.protocol.signing import Trust
from manta_mqtt.transport.mqtt import BrokerAddress

SHA = "ab" * 32


class FakeLink:
    """What the worker uses of MqttLink; ``acks`` says whether each flush succeeds (then True)."""

    def __init__(self, acks: list[bool] | None = None) -> None:
        self.connected = threading.Event()
        self.connected.set()
        self.max_packet: int | None = None
        self.published: list[tuple[str, bytes]] = []
        self.acks = list(acks or [])

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, payload))

    def flush(self, timeout: float = 30.0) -> bool:
        return self.acks.pop(0) if self.acks else True


class FakeFetcher:
    """Blocks each fetch until ``gate`` opens, then reports the code missing (so no task process runs)."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.fail = fail

    def fetch(
        self, swarm: str, shas: list[str], timeout: float, sizes: object = None, cancel: object = None
    ) -> list[str]:
        assert self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        return [SHA]


def assignment(iteration: int = 0) -> Assignment:
    return Assignment("sw", iteration, "worker", 0, CodeRef(SHA, "worker"), {}, [], 60.0)


def make(tmp_path: Path, link: FakeLink, fetcher: FakeFetcher) -> tuple[Worker, queue.Queue[Event]]:
    config = NodeConfig("n1", BrokerAddress.parse("mqtt://127.0.0.1:9"), tmp_path, trust=Trust([], allow_unsigned=True))
    inbox: queue.Queue[Event] = queue.Queue()
    worker = Worker(config, link, BlobStore(tmp_path / "cache"), fetcher, inbox)  # type: ignore[arg-type]
    return worker, inbox


def wait_for(inbox: queue.Queue[Event], wanted: Event, seen: list[Event]) -> list[Event]:
    deadline = time.monotonic() + 10
    while wanted not in seen:
        seen.append(inbox.get(timeout=max(0.01, deadline - time.monotonic())))
    return seen


def drain(inbox: queue.Queue[Event]) -> list[Event]:
    out = []
    while not inbox.empty():
        out.append(inbox.get_nowait())
    return out


def results(link: FakeLink) -> list[ResultEnvelope]:
    return [ResultEnvelope.parse(p) for t, p in link.published if t == "manta/v2/swarms/sw/results/n1"]


def test_a_job_runs_and_its_result_is_kept_then_delivered(tmp_path: Path) -> None:
    link = FakeLink()
    worker, inbox = make(tmp_path, link, FakeFetcher())
    job = Job(assignment())
    worker.run(job)
    assert drain(inbox) == [JobStarted(job.key), JobFinished(job.key)]
    (envelope,) = results(link)
    assert envelope.status == "failed" and "could not fetch" in envelope.error
    assert worker.outbox.pending() == [] and worker.outbox.find(job.key) is not None


def test_a_cancelled_job_is_skipped(tmp_path: Path) -> None:
    link = FakeLink()
    worker, inbox = make(tmp_path, link, FakeFetcher())
    job = Job(assignment())
    job.cancel.set()
    worker.run(job)
    assert drain(inbox) == [JobFinished(job.key)]
    assert link.published == [] and worker.outbox.find(job.key) is None


def test_a_repeated_assignment_is_answered_from_the_outbox(tmp_path: Path) -> None:
    link = FakeLink()
    worker, inbox = make(tmp_path, link, FakeFetcher())
    job = Job(assignment())
    envelope = ResultEnvelope("sw", 0, "worker", "n1", 0, "ok", {"val": b"x"})
    worker.outbox.put(Entry(job.key, envelope.to_bytes(), []))
    worker.run(job)
    assert drain(inbox) == [JobFinished(job.key)]  # never "started": the status stays online
    assert results(link) == [envelope]
    assert worker.outbox.pending() == []


def test_a_job_cancelled_while_it_runs_sends_no_result(tmp_path: Path) -> None:
    link = FakeLink()
    fetcher = FakeFetcher()
    fetcher.gate.clear()
    worker, inbox = make(tmp_path, link, fetcher)
    worker.start()
    job = Job(assignment())
    worker.submit(job)
    seen = wait_for(inbox, JobStarted(job.key), [])
    job.cancel.set()
    fetcher.gate.set()
    wait_for(inbox, JobFinished(job.key), seen)
    worker.stop()
    worker.join()
    assert link.published == []


def test_stop_finishes_the_running_job_and_starts_no_queued_one(tmp_path: Path) -> None:
    link = FakeLink()
    fetcher = FakeFetcher()
    fetcher.gate.clear()
    worker, inbox = make(tmp_path, link, fetcher)
    worker.start()
    first, second = Job(assignment(0)), Job(assignment(1))
    worker.submit(first)
    worker.submit(second)
    wait_for(inbox, JobStarted(first.key), [])
    worker.stop()
    fetcher.gate.set()
    worker.join()
    assert not worker.is_alive()
    assert drain(inbox) == [JobFinished(first.key)]
    assert [e.iteration for e in results(link)] == [0]


def test_results_kept_while_the_link_is_down_are_delivered_on_request(tmp_path: Path) -> None:
    link = FakeLink()
    link.connected.clear()
    worker, inbox = make(tmp_path, link, FakeFetcher())
    worker.start()
    job = Job(assignment())
    worker.submit(job)
    wait_for(inbox, JobFinished(job.key), [])
    assert link.published == []
    link.connected.set()
    worker.deliver_pending()
    deadline = time.monotonic() + 10
    while not link.published and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    worker.join()
    assert [e.iteration for e in results(link)] == [0]


def test_a_delivery_not_acknowledged_is_retried_when_idle(tmp_path: Path) -> None:
    link = FakeLink(acks=[False])
    worker, inbox = make(tmp_path, link, FakeFetcher())
    worker.start()
    job = Job(assignment())
    worker.submit(job)
    wait_for(inbox, JobFinished(job.key), [])
    deadline = time.monotonic() + 10
    while len(link.published) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    worker.join()
    assert [e.iteration for e in results(link)] == [0, 0]


def test_a_crashed_worker_tells_the_main_thread(tmp_path: Path) -> None:
    worker, inbox = make(tmp_path, FakeLink(), FakeFetcher(fail=OSError("disk gone")))
    worker.start()
    job = Job(assignment())
    worker.submit(job)
    worker.join()
    events: list[Any] = drain(inbox)
    assert events[:2] == [JobStarted(job.key), JobFinished(job.key)]
    assert isinstance(events[2], WorkerCrashed) and "disk gone" in events[2].error


def test_the_outbox_belongs_to_the_worker_thread(tmp_path: Path) -> None:
    worker, inbox = make(tmp_path, FakeLink(), FakeFetcher())
    worker.start()
    job = Job(assignment())
    worker.submit(job)
    wait_for(inbox, JobFinished(job.key), [])
    worker.stop()
    worker.join()
    with pytest.raises(WrongThread, match="outbox"):
        worker.outbox.find(job.key)
