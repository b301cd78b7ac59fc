"""The node's blob cache within its budget: the rule (least recently used first, pins never), the
cache folder it lists and prunes, and the worker pruning around a job (a real task process, a
fake link and fetcher, no broker)."""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_node.cache import Blob, BlobCache, plan
from edge_node.config import NodeConfig
from edge_node.events import Event, Job, JobFinished, JobStarted
from edge_node.outbox import Entry
from edge_node.worker import Worker
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.ownership import WrongThread
from manta_mqtt.protocol import codec
from manta_mqtt.protocol.messages import Assignment, CodeRef
from manta_mqtt.protocol.signing import Trust
from manta_mqtt.transport.mqtt import BrokerAddress

from .test_edge_worker import FakeLink, drain, results

KiB = 1024


def sha(n: int) -> str:
    return f"{n:02x}" * 32


# --- the rule ----------------------------------------------------------------------------------


def test_nothing_goes_while_the_cache_fits() -> None:
    blobs = [Blob(sha(1), 10, 1.0), Blob(sha(2), 10, 2.0)]
    result = plan(blobs, set(), budget=20)
    assert result.evict == [] and result.total == 20 and not result.over


def test_the_least_recently_used_go_first_until_it_fits() -> None:
    blobs = [Blob(sha(1), 10, 3.0), Blob(sha(2), 10, 1.0), Blob(sha(3), 10, 2.0), Blob(sha(4), 10, 4.0)]
    result = plan(blobs, set(), budget=25)
    assert [b.sha for b in result.evict] == [sha(2), sha(3)]
    assert result.after == 20 and not result.over


def test_pinned_blobs_never_go_even_past_the_budget() -> None:
    blobs = [Blob(sha(1), 10, 1.0), Blob(sha(2), 10, 2.0), Blob(sha(3), 10, 3.0)]
    result = plan(blobs, {sha(1), sha(3)}, budget=5)
    assert [b.sha for b in result.evict] == [sha(2)]  # the only one that may go
    assert result.over and result.pinned == result.after == 20


def test_delivered_results_go_after_every_other_blob_oldest_first() -> None:
    """Uploads of delivered results may still be pulled (by a resumed coordinator): they go last."""
    blobs = [Blob(sha(1), 10, 1.0), Blob(sha(2), 10, 2.0), Blob(sha(3), 10, 3.0), Blob(sha(4), 10, 9.0)]
    result = plan(blobs, {sha(3)}, budget=25, last={sha(1), sha(2)})
    assert [b.sha for b in result.evict] == [sha(4), sha(1)]  # sha(4) is the newest, but nobody's
    assert result.after == 20 and not result.over


def test_room_is_made_for_what_is_being_and_about_to_be_fetched() -> None:
    blobs = [Blob(sha(1), 10, 1.0), Blob(sha(2), 10, 2.0)]
    assert plan(blobs, set(), budget=30).evict == []
    assert [b.sha for b in plan(blobs, set(), budget=30, incoming=15).evict] == [sha(1)]
    result = plan(blobs, set(), budget=30, incoming=15, spool=10)
    assert [b.sha for b in result.evict] == [sha(1), sha(2)] and result.after == 25
    assert plan([], set(), budget=10, incoming=20).over  # nothing can go: the job's own blob is too large


# --- the cache folder ----------------------------------------------------------------------------


def stored(store: BlobStore, size: int, mtime: float, fill: bytes = b"x") -> str:
    digest = store.put(fill * size)
    os.utime(store.path(digest), (mtime, mtime))
    return digest


def test_prune_deletes_the_oldest_unpinned_blobs_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = BlobStore(tmp_path / "cache")
    old, pinned, new = (stored(store, 4 * KiB, t, bytes([t])) for t in (1, 2, 3))
    (tmp_path / "cache" / "ab").mkdir()
    (tmp_path / "cache" / "ab" / ".tmp-half").write_bytes(b"y" * KiB)  # a write under way: not a blob
    spool = store.spool()
    spool.write(b"z" * (300 * KiB))  # past the spool's memory: a file in .partial/
    cache = BlobCache(store, budget=305 * KiB)
    assert sorted(b.sha for b in cache.blobs()) == sorted([old, pinned, new])
    assert cache.spool_bytes() == 300 * KiB
    with caplog.at_level(logging.DEBUG, logger="edge_node"):
        result = cache.prune({pinned})
    assert [b.sha for b in result.evict] == [old, new]
    assert pinned in store and old not in store and new not in store
    assert spool.path is not None and spool.path.exists()  # the spool is counted, never deleted
    assert (cache.evicted, cache.evicted_bytes) == (2, 8 * KiB)
    assert sum("deleted" in r.message for r in caplog.records if r.levelno == logging.DEBUG) == 3
    spool.discard()


def test_a_touched_blob_goes_last(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    first, second = stored(store, KiB, 1, b"a"), stored(store, KiB, 2, b"b")
    cache = BlobCache(store, budget=KiB)
    cache.touch([first, sha(9)])  # one not cached: nothing to touch
    cache.prune(set())
    assert first in store and second not in store


def test_pins_over_the_budget_are_kept_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = BlobStore(tmp_path / "cache")
    pins = {stored(store, 2 * KiB, 1, b"a"), stored(store, 2 * KiB, 2, b"b")}
    cache = BlobCache(store, budget=3 * KiB)
    with caplog.at_level(logging.WARNING, logger="edge_node"):
        cache.prune(pins)
        cache.prune(pins)  # still over: not said again
    (warning,) = caplog.records
    assert "4.0 KiB" in warning.message and "3.0 KiB" in warning.message  # what is pinned, the budget
    assert all(p in store for p in pins) and cache.evicted == 0
    cache.prune(set())  # unpinned, they go, and a later excess is reported again
    assert cache.evicted == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge_node"):
        cache.prune({stored(store, 4 * KiB, 3, b"c")})
    assert len(caplog.records) == 1


def test_the_cache_belongs_to_one_thread(tmp_path: Path) -> None:
    cache = BlobCache(BlobStore(tmp_path / "cache"), budget=KiB)
    cache.prune(set())
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(errors, lambda: cache.prune(set())))
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], WrongThread)


def _catch(errors: list[BaseException], call: Callable[[], object]) -> None:
    try:
        call()
    except BaseException as exc:  # handed to the test's thread
        errors.append(exc)


# --- the worker prunes around a job ----------------------------------------------------------------

#: Reads its global and adds a result past the node's inline limit: uploaded, so kept in the cache.
TASK = """
from manta_light.task import Task

class T(Task):
    def run(self):
        assert len(self.world.globals["g"]) == 20 * 1024
        self.world.results.add("m", b"r" * (30 * 1024))

def main():
    T().run()
"""


def code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("usertask.py", TASK)
    return buffer.getvalue()


class StoringFetcher:
    """Fetches by writing the blob into the cache, noting what the cache held when it was asked."""

    def __init__(self, store: BlobStore, blobs: dict[str, bytes]) -> None:
        self.store = store
        self.blobs = blobs
        self.held_at_fetch: set[str] = set()

    def fetch(
        self, swarm: str, shas: list[str], timeout: float, sizes: object = None, cancel: object = None
    ) -> list[str]:
        self.held_at_fetch = {b.sha for b in BlobCache(self.store, 0).blobs()}
        for wanted in shas:
            if wanted not in self.store:
                self.store.put(self.blobs[wanted], wanted)
        return []


def test_the_worker_prunes_before_the_fetch_and_after_the_job(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = BlobStore(tmp_path / "cache")
    code = store.put(code_zip())
    os.utime(store.path(code), (1, 1))  # the oldest blob: still kept, as the job's code
    old = stored(store, 40 * KiB, 2, b"o")  # nobody's: goes first
    uploaded = stored(store, 40 * KiB, 1, b"u")  # a result in the outbox: pinned until delivered
    global_bytes = codec.encode(b"g" * (20 * KiB))
    glob = BlobStore(tmp_path / "elsewhere").put(global_bytes)
    fetcher = StoringFetcher(store, {glob: global_bytes})
    config = NodeConfig(
        "n1",
        BrokerAddress.parse("mqtt://127.0.0.1:9"),
        tmp_path,
        trust=Trust([], allow_unsigned=True),
        inline_limit=KiB,
        cache_max_bytes=64 * KiB,
    )
    inbox: queue.Queue[Event] = queue.Queue()
    link = FakeLink()
    worker = Worker(config, link, store, fetcher, inbox)  # type: ignore[arg-type]
    worker.outbox.put(Entry(("sw", 0, "worker", 0), b"envelope", [uploaded]))
    a = Assignment("sw", 1, "worker", 0, CodeRef(code, "usertask"), {"g": glob}, [], 60.0)
    a.sizes = {code: store.path(code).stat().st_size, glob: len(global_bytes)}
    job = Job(a)
    try:
        with caplog.at_level(logging.WARNING, logger="edge_node"):
            worker.run(job)
    finally:
        worker.tasks.close()
    assert drain(inbox) == [JobStarted(job.key), JobFinished(job.key)]
    (envelope,) = results(link)
    assert envelope.status == "ok", envelope.error
    result = envelope.results["m"]
    assert not isinstance(result, bytes)  # uploaded: in the cache, and pinned by the outbox
    # before the fetch: the old blob went to make room for the global; the pinned ones stayed
    assert fetcher.held_at_fetch == {code, uploaded} and old not in store
    # after the job: the global is no longer in use and goes; the swarm's latest result (the
    # coordinator is about to pull it), the undelivered older one and the code (a warm process
    # has it on its sys.path) stay, past the budget, with one warning
    assert {b.sha for b in worker.blob_cache.blobs()} == {code, uploaded, result.sha}
    assert worker.blob_cache.evicted == 2
    assert [r.message for r in caplog.records if "exceed its budget" in r.message] != []


def test_the_worker_brings_the_cache_within_its_budget_when_it_starts(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    old, new = stored(store, 4 * KiB, 1, b"a"), stored(store, 4 * KiB, 2, b"b")
    uploaded = stored(store, 4 * KiB, 0, b"u")  # the oldest, but a result the outbox holds
    leftover = store.root / ".partial" / ".part-dead"  # a result streaming when the agent died
    leftover.parent.mkdir()
    leftover.write_bytes(b"z" * KiB)
    address, trust = BrokerAddress.parse("mqtt://127.0.0.1:9"), Trust([], allow_unsigned=True)
    config = NodeConfig("n1", address, tmp_path, trust=trust, cache_max_bytes=9 * KiB)
    worker = Worker(config, FakeLink(), store, StoringFetcher(store, {}), queue.Queue())  # type: ignore[arg-type]
    worker.outbox.put(Entry(("sw", 0, "worker", 0), b"envelope", [uploaded]))
    worker.outbox.owner.release()  # the worker thread takes it over
    worker.start()
    worker.stop()
    worker.join()
    assert not leftover.exists()
    assert uploaded in store and new in store and old not in store


def test_older_delivered_results_go_last_the_latest_of_each_swarm_stays(tmp_path: Path) -> None:
    """The coordinator pulls a result's uploads after its envelope arrived: each swarm's latest
    result and every undelivered one are pinned; older delivered ones only go last."""
    store = BlobStore(tmp_path / "cache")
    address, trust = BrokerAddress.parse("mqtt://127.0.0.1:9"), Trust([], allow_unsigned=True)
    config = NodeConfig("n1", address, tmp_path, trust=trust)
    worker = Worker(config, FakeLink(), store, StoringFetcher(store, {}), queue.Queue())  # type: ignore[arg-type]
    entries = {
        "a1": Entry(("a", 1, "worker", 0), b"e", [sha(1)]),
        "a2": Entry(("a", 2, "worker", 0), b"e", [sha(2)]),
        "a3": Entry(("a", 3, "worker", 0), b"e", [sha(3)]),  # swarm a's latest, not delivered yet
        "b1": Entry(("b", 1, "worker", 1), b"e", [sha(4)]),  # swarm b's latest (a retry)
        "b0": Entry(("b", 1, "worker", 0), b"e", [sha(5)]),
    }
    for name, entry in entries.items():
        worker.outbox.put(entry)
        if name != "a3":
            worker.outbox.mark_sent(entry)
    pins, last = worker._pins([sha(9)])
    assert pins == {sha(9), sha(3), sha(4)}  # the job's blob, a's and b's latest
    assert last == {sha(1), sha(2), sha(5)}
