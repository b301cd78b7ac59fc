"""The memory bombs of the attacker review, replayed against the real classes (no broker).

Each one once took gigabytes: upload chunks declaring a 1 GiB blob (the receiver preallocated at
the declared size), a numpy extension of dtype ``S0`` with a huge shape (the size check was
bypassed), and a flood of assignments (the node queued them all). Now each costs about what the
attacker actually sent, and a node past its budget does not hurt the others.
"""

from __future__ import annotations

import gc
import hashlib
import os
import struct
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import psutil
import pytest

from edge_node.agent import EdgeAgent
from edge_node.config import NodeConfig
from edge_node.events import AssignmentArrived, JobFinished, JobStarted
from edge_node.jobs import Dispatch, JobBook, Reject
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.protocol import codec, topics
from manta_mqtt.protocol.chunking import OPEN_BLOB_COST, BlobInfo, split
from manta_mqtt.protocol.limits import MAX_ASSIGNMENT_BYTES, MAX_QUEUED_JOBS, MIN_CHUNK_SIZE, GiB, KiB, MiB
from manta_mqtt.protocol.messages import Assignment, BlobRequest, Chunk, CodeRef
from manta_mqtt.transport.blob_fetcher import BlobFetcher
from manta_mqtt.transport.blobs import UploadReceiver
from manta_mqtt.transport.mqtt import BrokerAddress

Rejected = list[tuple[str, str]]

# The codec imports numpy at its first array; import it here, so that a measurement counts what a
# decode keeps, not numpy's one-time import (a few MiB, once per process).
codec.decode(codec.encode(np.zeros(1)))


def receiver(tmp_path: Path, rejected: Rejected, **budgets: int) -> UploadReceiver:
    return UploadReceiver(BlobStore(tmp_path / "blobs"), on_reject=lambda r, d: rejected.append((r, d)), **budgets)


def bomb_chunk(seed: int, declared: int = GiB) -> tuple[str, bytes]:
    """One 1 KiB chunk (index 0) of a blob that claims ``declared`` bytes: ~1 KiB on the wire."""
    sha = hashlib.sha256(b"bomb %d" % seed).hexdigest()
    return sha, Chunk(BlobInfo(sha, declared, MIN_CHUNK_SIZE), 0, os.urandom(MIN_CHUNK_SIZE)).to_bytes()


def allocated_by(action: Callable[[], object]) -> tuple[int, object]:
    """Bytes still allocated (numpy's buffers included) after ``action``, and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, result
    finally:
        tracemalloc.stop()


# --- uploads -------------------------------------------------------------------------------------


def test_six_chunks_declaring_a_gibibyte_hold_what_was_sent(tmp_path: Path) -> None:
    rejected: Rejected = []
    uploads = receiver(tmp_path, rejected)
    chunks = [bomb_chunk(i) for i in range(6)]

    def attack() -> None:
        for sha, payload in chunks:
            assert uploads.receive("mallory", sha, 0, payload) is None

    kept, _ = allocated_by(attack)
    assert rejected == []  # all legal: 1 GiB is within MAX_BLOB_BYTES, each chunk is well formed
    assert uploads.pool.open_by("mallory") == 6
    assert uploads.pool.held_by("mallory") == uploads.pool.held_total == 6 * (MIN_CHUNK_SIZE + OPEN_BLOB_COST)
    assert kept < 6 * OPEN_BLOB_COST + 6 * MIN_CHUNK_SIZE  # the charge covers the real cost (was 6 GiB)


def test_the_upload_bomb_costs_kilobytes_of_rss_not_gigabytes(tmp_path: Path) -> None:
    """The attacker's own measurement, RSS, with a generous threshold: 6 GiB before the fix."""
    uploads = receiver(tmp_path, [])
    chunks = [bomb_chunk(i) for i in range(6)]
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    for sha, payload in chunks:
        uploads.receive("mallory", sha, 0, payload)
    grown = process.memory_info().rss - before
    assert uploads.pool.open_by("mallory") == 6
    assert grown < 64 * MiB, f"RSS grew by {grown / MiB:.0f} MiB for 6 KiB of chunks"


def test_a_node_past_its_budget_is_refused_while_another_completes(tmp_path: Path) -> None:
    rejected: Rejected = []
    uploads = receiver(tmp_path, rejected, max_bytes_per_node=64 * KiB, max_bytes_total=1 * MiB)
    good = os.urandom(48 * KiB)
    info, pieces = split(good, MIN_CHUNK_SIZE)
    good_chunks = [Chunk(info, i, p).to_bytes() for i, p in enumerate(pieces)]
    bad_sha = hashlib.sha256(b"never").hexdigest()
    bad_info = BlobInfo(bad_sha, 10 * MiB, MIN_CHUNK_SIZE)  # a legal size, more than its budget
    completed = []
    for index in range(100):  # interleaved, as on the broker
        payload = Chunk(bad_info, index, os.urandom(MIN_CHUNK_SIZE)).to_bytes()
        uploads.receive("mallory", bad_sha, index, payload)
        assert uploads.pool.held_by("mallory") <= 64 * KiB
        if index < len(good_chunks):
            completed.append(uploads.receive("alice", info.sha, index, good_chunks[index]))
    assert completed[-1] == info.sha and not any(completed[:-1])
    assert uploads.store.get(info.sha) == good
    reasons = {reason for reason, _ in rejected}
    assert reasons == {"oversized"}, rejected
    assert all("mallory" in detail for _, detail in rejected)
    # each refusal discarded mallory's partial upload, so its later chunks start over, still bounded
    assert uploads.pool.held_by("alice") == 0 and uploads.pool.open_by("alice") == 0


def test_the_total_budget_protects_the_process(tmp_path: Path) -> None:
    """Many node ids (forged, without an ACL) each within their own budget: the total holds."""
    rejected: Rejected = []
    total = 256 * KiB
    uploads = receiver(tmp_path, rejected, max_bytes_per_node=64 * KiB, max_bytes_total=total)
    for node in range(200):
        sha, payload = bomb_chunk(node)
        uploads.receive(f"n{node}", sha, 0, payload)
        assert uploads.pool.held_total <= total
    accepted = total // (MIN_CHUNK_SIZE + OPEN_BLOB_COST)
    assert len(uploads.pool) == accepted
    assert [r for r, _ in rejected] == ["oversized"] * (200 - accepted)


def test_open_uploads_per_node_are_counted_and_released(tmp_path: Path) -> None:
    rejected: Rejected = []
    uploads = receiver(tmp_path, rejected, max_per_node=3)
    chunks = [bomb_chunk(i, declared=2 * MIN_CHUNK_SIZE) for i in range(4)]
    for sha, payload in chunks:
        uploads.receive("n1", sha, 0, payload)
    assert uploads.pool.open_by("n1") == 3 and [r for r, _ in rejected] == ["oversized"]
    sha, payload = bomb_chunk(9, declared=2 * MIN_CHUNK_SIZE)
    assert uploads.receive("n2", sha, 0, payload) is None  # another node is not affected
    assert uploads.pool.open_by("n2") == 1
    uploads.stale_after = -1.0  # everything is stale now
    assert uploads.sweep() == 4
    assert len(uploads.pool) == 0 and uploads.pool.held_total == 0 and uploads.pool.held_by("n1") == 0


class FakeLink:
    """Just enough of MqttLink for a BlobFetcher: grants its subscriptions, records its requests,
    delivers nothing by itself (a test hands chunks to the fetcher's handler)."""

    def __init__(self) -> None:
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self.connected.set()
        self.refusal = ""
        self.requests: list[BlobRequest] = []

    def route(self, _filter: str, _handler: object) -> None: ...
    def on_connect(self, _handler: object) -> None: ...
    def on_refused(self, _handler: object) -> None: ...
    def unsubscribe(self, _filters: object) -> None: ...

    def subscribe(self, _filters: object, qos: int = 1, wait: float | None = None) -> bool:
        self.subscribed.set()
        return True

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        request = BlobRequest.parse(payload)
        assert topic == topics.blob_request(request.swarm, request.node) and not retain
        self.requests.append(request)


def test_a_chunk_claiming_a_gibibyte_costs_a_node_only_what_arrived(tmp_path: Path) -> None:
    """Published on the blob's chunk topic while a node fetches it (no size announced)."""
    link = FakeLink()
    fetcher = BlobFetcher(link, BlobStore(tmp_path / "cache"), "n1", on_reject=lambda r, d: None)  # type: ignore[arg-type]
    sha = hashlib.sha256(b"forged").hexdigest()
    chunk = Chunk(BlobInfo(sha, GiB, MIN_CHUNK_SIZE), 0, os.urandom(MIN_CHUNK_SIZE)).to_bytes()
    failed: list[list[str]] = []
    fetch = threading.Thread(target=lambda: failed.append(fetcher.fetch("sw", [sha], timeout=1.0)))

    def attack() -> None:
        fetch.start()
        assert link.subscribed.wait(5)
        fetcher._on_message(topics.blob_chunk("sw", sha, 0), chunk, False)

    kept, _ = allocated_by(attack)  # measured while the transfer is open, holding its one chunk
    fetch.join()
    assert failed == [[sha]]  # never completes, of course
    assert kept < 256 * KiB, f"{kept / MiB:.1f} MiB held for a 1 KiB chunk"
    assert link.requests and all(r.count <= fetcher.window for r in link.requests)  # asked a window at a time


# --- the codec -----------------------------------------------------------------------------------


def ndarray_bomb(descr: bytes, shape: tuple[int, ...]) -> bytes:
    header = struct.pack(f"<B{len(descr)}sB{len(shape)}Q", len(descr), descr, len(shape), *shape)
    return msgpack.packb({"v": 2, "model": msgpack.ExtType(codec.NDARRAY_EXT, header)})


@pytest.mark.parametrize("descr", [b"|S0", b"<U0", b"|V0", b"S", b"U"])
@pytest.mark.parametrize("shape", [(GiB,), (1 << 15, 1 << 15), (0, 1 << 40)], ids=["1d", "2d", "empty"])
def test_the_zero_itemsize_dtype_bomb_is_refused(descr: bytes, shape: tuple[int, ...]) -> None:
    payload = ndarray_bomb(descr, shape)
    assert len(payload) < 150

    def decode() -> None:
        with pytest.raises(codec.CodecError, match="zero-size dtype"):
            codec.decode(payload)

    kept, _ = allocated_by(decode)
    assert kept < 64 * KiB


# --- the node's job queue ---------------------------------------------------------------------------


def big_assignment(iteration: int, globals_count: int) -> bytes:
    refs = {f"t{i:05d}": hashlib.sha256(b"%d" % i).hexdigest() for i in range(globals_count)}
    return Assignment("sw", iteration, "worker", 0, CodeRef("ab" * 32, "worker"), refs, [], 60.0).to_bytes()


def test_300_assignments_leave_the_job_book_bounded(tmp_path: Path) -> None:
    """Through the real intake and pump: the worker's queue holds MAX_QUEUED_JOBS, the rest is refused."""
    agent = EdgeAgent(NodeConfig("n1", BrokerAddress.parse("mqtt://127.0.0.1:9"), tmp_path))
    mine = topics.assignment("sw", "n1")
    payloads = [big_assignment(iteration, 600) for iteration in range(300)]
    payload_bytes = len(payloads[0])
    assert 32 * KiB < payload_bytes < MAX_ASSIGNMENT_BYTES

    def flood() -> None:
        for payload in payloads:
            agent.intake.on_assignment(mine, payload, False)
            agent.pump(0)

    kept, _ = allocated_by(flood)
    assert agent.worker._queue.qsize() == len(agent.book.jobs()) == MAX_QUEUED_JOBS
    assert agent.reject.as_dict() == {"overflow": 300 - MAX_QUEUED_JOBS}
    # 16 parsed jobs of ~45 KiB on the wire each (a few times that in Python objects), not 300
    assert kept < MAX_QUEUED_JOBS * payload_bytes * 8, f"{kept / MiB:.1f} MiB kept"


def test_the_running_job_is_unaffected_and_room_frees_up() -> None:
    book = JobBook(max_queued=2)

    def arrive(iteration: int) -> list[object]:
        return list(
            book.handle(AssignmentArrived(Assignment("sw", iteration, "w", 0, CodeRef("ab" * 32, "w"), {}, [], 9.0)))
        )

    (first,) = arrive(0)
    assert isinstance(first, Dispatch)
    book.handle(JobStarted(first.job.key))
    assert all(isinstance(a, Dispatch) for a in arrive(1) + arrive(2))  # two queued behind the running one
    (refused,) = arrive(3)
    assert isinstance(refused, Reject) and refused.reason == "overflow"
    assert book.running is first.job and not first.job.cancel.is_set()
    assert book.queued() == 2
    book.handle(JobFinished(first.job.key))
    assert book.queued() == 2 and isinstance(arrive(3)[0], Reject)  # nothing runs, two still wait
    second = next(job for job in book.jobs() if job.assignment.iteration == 1)
    book.handle(JobStarted(second.key))
    assert isinstance(arrive(3)[0], Dispatch)  # the worker took one: room again
    assert book.queued() == 2 and book.running is second
