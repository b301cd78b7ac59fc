"""The node's upload server with a fake link: envelopes go out alone, chunks only as grants ask,
and only of the node's own results; anything else is counted, never a crash."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_node.outbox import Entry
from edge_node.uploads import UploadServer
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.chunking import MIN_CHUNK_SIZE, split
from manta_mqtt.protocol.messages import Chunk, UploadGrant
from manta_mqtt.protocol.rejections import Rejections

from .test_edge_worker import FakeFetcher, FakeLink, make

CS = MIN_CHUNK_SIZE


def until(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.link = FakeLink()
        self.cache = BlobStore(tmp_path / "cache")
        self.reject = Rejections(logging.getLogger("test"))
        self.server = UploadServer("n1", self.link, self.cache, self.reject)  # type: ignore[arg-type]
        self.data = os.urandom(5 * CS + 100)
        self.sha = self.cache.put(self.data)

    def grant(self, first: int, count: int, **change: object) -> None:
        fields = {"swarm": "sw", "node": "n1", "sha": self.sha, "size": len(self.data), "chunk_size": CS}
        grant = UploadGrant(**(fields | change), first=first, count=count)  # type: ignore[arg-type]
        self.server.on_grant(topics.upload_grant(str(fields["swarm"]), "n1"), grant.to_bytes(), False)

    def chunks(self) -> list[tuple[int, bytes]]:
        out = []
        for topic, payload in self.link.published:
            parsed = topics.parse(topic)
            assert parsed.kind is topics.Kind.UPLOAD_CHUNK and parsed.node == "n1" and parsed.swarm == "sw"
            chunk = Chunk.parse(payload)
            assert chunk.index == parsed.index and chunk.info.sha == self.sha
            out.append((chunk.index, bytes(chunk.data)))
        return out


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Setup(tmp_path)
    s.server.start()
    yield s
    s.server.stop()


def test_a_grant_is_answered_with_exactly_its_chunks(setup: Setup) -> None:
    setup.server.offer("sw", [setup.sha])
    setup.server.offered_all()
    setup.grant(2, 3)
    assert until(lambda: setup.server.served == 1)
    _, pieces = split(setup.data, CS)
    expected = [bytes(p) for p in pieces]
    assert setup.chunks() == [(2, expected[2]), (3, expected[3]), (4, expected[4])]
    setup.grant(5, 1)  # the last, short chunk
    assert until(lambda: setup.server.served == 2)
    assert setup.chunks()[-1] == (5, expected[5]) and len(expected[5]) == 100
    assert setup.reject.as_dict() == {}


def test_grants_that_came_before_the_outbox_was_offered_wait_for_it(setup: Setup) -> None:
    setup.grant(0, 1)  # right after a restart: the worker has not read its outbox yet
    setup.server.offer("sw", [setup.sha])
    setup.server.offered_all()
    assert until(lambda: setup.server.served == 1)
    assert [i for i, _ in setup.chunks()] == [0] and setup.reject.as_dict() == {}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("not offered", "unexpected"),
        ("other swarm", "unexpected"),
        ("other size", "unexpected"),
        ("gone from the cache", "unexpected"),
        ("another node's topic", "forged"),
        ("names another node", "forged"),
        ("retained", "unexpected"),
        ("garbage", "malformed"),
    ],
)
def test_a_grant_for_anything_but_our_own_result_is_counted_and_sends_nothing(
    setup: Setup, case: str, reason: str
) -> None:
    if case != "not offered":
        setup.server.offer("sw", [setup.sha])
    setup.server.offer("other", ["cd" * 32])
    setup.server.offered_all()
    grant = UploadGrant("sw", "n1", setup.sha, len(setup.data), CS, 0, 1)
    topic, payload, retained = topics.upload_grant("sw", "n1"), grant.to_bytes(), False
    if case == "other swarm":
        grant = UploadGrant("other", "n1", setup.sha, len(setup.data), CS, 0, 1)
        topic, payload = topics.upload_grant("other", "n1"), grant.to_bytes()
    elif case == "other size":
        payload = UploadGrant("sw", "n1", setup.sha, len(setup.data) + 1, CS, 0, 1).to_bytes()
    elif case == "gone from the cache":
        setup.cache.path(setup.sha).unlink()
    elif case == "another node's topic":
        topic = topics.upload_grant("sw", "n2")
    elif case == "names another node":
        payload = UploadGrant("sw", "n2", setup.sha, len(setup.data), CS, 0, 1).to_bytes()
    elif case == "retained":
        retained = True
    elif case == "garbage":
        payload = b"\xc1 not msgpack"
    setup.server.on_grant(topic, payload, retained)
    assert until(lambda: setup.reject.as_dict() != {})
    setup.server.stop()  # everything queued is handled by now
    assert setup.reject.as_dict() == {reason: 1}
    assert setup.link.published == [] and setup.server.served == 0


def test_the_worker_publishes_the_envelope_alone_and_offers_its_uploads_first(tmp_path: Path) -> None:
    link = FakeLink()
    worker, _ = make(tmp_path, link, FakeFetcher())
    offers: list[tuple[str, list[str]]] = []
    ready = threading.Event()

    class Recorder:
        def offer(self, swarm: str, shas: list[str]) -> None:
            assert not link.published  # before the envelope: no grant can come first
            offers.append((swarm, shas))

        def offered_all(self) -> None:
            ready.set()

    worker.uploads = Recorder()  # type: ignore[assignment]
    entry = Entry(("sw", 0, "worker", 0), b"envelope", ["ab" * 32])
    assert worker._deliver(entry)
    assert offers == [("sw", ["ab" * 32])]
    assert link.published == [(topics.results("sw", "n1"), b"envelope")]  # no upload chunk pushed


def test_a_restarted_worker_offers_every_result_it_still_holds(tmp_path: Path) -> None:
    link = FakeLink()
    worker, _ = make(tmp_path, link, FakeFetcher())
    offers: list[tuple[str, list[str]]] = []
    ready = threading.Event()

    class Recorder:
        def offer(self, swarm: str, shas: list[str]) -> None:
            offers.append((swarm, shas))

        def offered_all(self) -> None:
            ready.set()

    def fill() -> None:
        worker.outbox.put(Entry(("sw", 0, "worker", 0), b"e0", ["ab" * 32]))
        worker.outbox.put(Entry(("sw", 1, "worker", 0), b"e1", ["cd" * 32]))
        worker.outbox.mark_sent(Entry(("sw", 0, "worker", 0), b"e0", []))

    def main() -> None:  # the outbox belongs to the thread that uses it first: the worker's
        fill()
        worker._loop()

    worker.uploads = Recorder()  # type: ignore[assignment]
    worker._thread = threading.Thread(target=main)
    worker.start()
    assert ready.wait(10)
    worker.stop()
    worker.join()
    assert sorted(offers) == [("sw", ["ab" * 32]), ("sw", ["cd" * 32])]  # sent and pending alike
