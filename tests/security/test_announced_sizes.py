"""Blob sizes announced by the (signed) assignment: a node refuses a chunk that declares another
size before it allocates or waits for anything, and keeps waiting for the real one; and chunks
forged on a blob's topic while a node fetches it (wrong size, wrong length, corrupt bytes, another
blob) are refused and counted, and never make a corrupt blob.

The attack: a chunk (a retained meta, in protocol v1) claiming 1 GiB for the code's sha256 kept
a node fetching (and holding memory) until its fetch timed out. Allocation now follows the data
anyway; with the size in the assignment, the forged chunk is refused on arrival.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import pytest

from manta_mqtt import BrokerAddress, Coordinator, CoordinatorOptions, RunStore, load_swarm
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.chunking import BlobInfo, split
from manta_mqtt.protocol.limits import MAX_BLOB_BYTES, MIN_CHUNK_SIZE, GiB
from manta_mqtt.protocol.messages import Assignment, Chunk, CodeRef, ProtocolError
from manta_mqtt.protocol.signing import OwnerKey, Trust, Untrusted
from manta_mqtt.transport.blob_fetcher import BlobFetcher
from manta_mqtt.transport.mqtt import MqttLink

from ..conftest import SIGNING_KEY, BrokerUnderTest
from ..test_e2e_swarm import COUNTER, numbers
from .test_bounds import FakeLink

CODE, MODEL = "ab" * 32, "cd" * 32


def assignment(sizes: dict[str, int]) -> Assignment:
    return Assignment("sw", 0, "worker", 0, CodeRef(CODE, "worker"), {"model": MODEL}, [], 60.0, sizes=sizes)


def test_sizes_travel_and_are_covered_by_the_signature() -> None:
    owner = OwnerKey.generate()
    signed = owner.sign("n1", assignment({CODE: 5000, MODEL: 12}))
    received = Assignment.parse(signed.to_bytes())
    assert received.sizes == {CODE: 5000, MODEL: 12}
    Trust([owner.public]).check("n1", received)
    tampered = Assignment.parse(dataclasses.replace(signed, sizes={CODE: GiB, MODEL: 12}).to_bytes())
    with pytest.raises(Untrusted, match="does not match"):
        Trust([owner.public]).check("n1", tampered)


def test_an_assignment_without_sizes_is_unchanged_on_the_wire() -> None:
    """Older coordinators announce nothing; the field is omitted, not sent empty."""
    assert b"sizes" not in assignment({}).to_bytes()
    assert Assignment.parse(assignment({}).to_bytes()).sizes == {}


@pytest.mark.parametrize(
    "sizes",
    [{"ef" * 32: 10}, {CODE: -1}, {CODE: MAX_BLOB_BYTES + 1}, {CODE: True}, {CODE: 1.5}, {CODE: "10"}],
    ids=["foreign-sha", "negative", "too-large", "bool", "float", "text"],
)
def test_announced_sizes_are_validated(sizes: dict[str, object]) -> None:
    with pytest.raises(ProtocolError, match="sizes"):
        Assignment.parse(assignment(sizes).to_bytes())  # type: ignore[arg-type]


class Fetching:
    """A node's fetcher on a fake link, fetching one blob in a thread; ``deliver`` plays the broker."""

    def __init__(self, tmp_path: Path, sha: str, sizes: dict[str, int] | None = None) -> None:
        self.link = FakeLink()
        self.rejected: list[tuple[str, str]] = []
        self.fetcher = BlobFetcher(self.link, BlobStore(tmp_path / "cache"), "n1", on_reject=self.on_reject)  # type: ignore[arg-type]
        self.sha = sha
        self.failed: list[list[str]] = []
        self.thread = threading.Thread(target=lambda: self.failed.append(self.fetcher.fetch("sw", [sha], 10.0, sizes)))
        self.thread.start()
        assert self.link.subscribed.wait(5)

    def on_reject(self, reason: str, detail: str) -> None:
        self.rejected.append((reason, detail))

    def deliver(self, index: int, chunk: Chunk) -> None:
        self.fetcher._on_message(topics.blob_chunk("sw", self.sha, index), chunk.to_bytes(), False)

    def result(self) -> list[str]:
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.failed[0]


def real_blob() -> tuple[bytes, BlobInfo, list[bytes]]:
    real = os.urandom(3 * MIN_CHUNK_SIZE)
    info, pieces = split(real, MIN_CHUNK_SIZE)
    return real, info, [bytes(p) for p in pieces]


def test_a_node_refuses_a_forged_size_and_still_fetches_the_real_blob(tmp_path: Path) -> None:
    real, info, pieces = real_blob()
    node = Fetching(tmp_path, info.sha, {info.sha: len(real)})
    forged = BlobInfo(info.sha, GiB, MIN_CHUNK_SIZE)
    node.deliver(0, Chunk(forged, 0, os.urandom(MIN_CHUNK_SIZE)))
    node.deliver(1, Chunk(forged, 1, os.urandom(MIN_CHUNK_SIZE)))
    assert [r for r, _ in node.rejected] == ["bad_chunk", "bad_chunk"]
    assert "the assignment announced 3072" in node.rejected[0][1]
    assert node.fetcher._transfers[info.sha].assembler is None  # nothing allocated for the forgery
    for index, piece in enumerate(pieces):
        node.deliver(index, Chunk(info, index, piece))
    assert node.result() == [] and node.fetcher.store.get(info.sha) == real
    assert (node.link.requests[0].first, node.link.requests[0].count) == (0, node.fetcher.window)


def test_chunks_that_do_not_fit_are_refused_and_the_real_ones_still_make_the_blob(tmp_path: Path) -> None:
    """Without an announced size: a short chunk, one of another blob, one on another index's topic."""
    real, info, pieces = real_blob()
    node = Fetching(tmp_path, info.sha)
    node.deliver(0, Chunk(info, 0, pieces[0]))
    node.deliver(1, Chunk(info, 1, pieces[1][:-1]))  # one byte short
    other = BlobInfo("ef" * 32, len(real), MIN_CHUNK_SIZE)
    node.deliver(1, Chunk(other, 1, pieces[1]))  # another blob's, on this blob's topic
    node.deliver(2, Chunk(info, 1, pieces[1]))  # chunk 1, on chunk 2's topic
    node.deliver(1, Chunk(BlobInfo(info.sha, len(real), 2 * MIN_CHUNK_SIZE), 1, pieces[1]))  # other chunking
    assert [r for r, _ in node.rejected] == ["bad_chunk", "malformed", "malformed", "bad_chunk"], node.rejected
    for index in (1, 2):
        node.deliver(index, Chunk(info, index, pieces[index]))
    assert node.result() == [] and node.fetcher.store.get(info.sha) == real


def test_a_corrupt_chunk_makes_the_fetch_start_over_and_never_reaches_the_store(tmp_path: Path) -> None:
    """Right size and length, wrong bytes, there before the real one: the sha256 check at the end
    refuses the blob, nothing of it is kept, and the fetch starts over (chunks can be asked for
    again): the real chunks then make the blob."""
    real, info, pieces = real_blob()
    node = Fetching(tmp_path, info.sha, {info.sha: len(real)})
    node.deliver(1, Chunk(info, 1, os.urandom(MIN_CHUNK_SIZE)))
    for index, piece in enumerate(pieces):
        node.deliver(index, Chunk(info, index, piece))  # the real chunk 1 comes as a duplicate
    assert [r for r, _ in node.rejected] == ["bad_chunk"] and "sha256" in node.rejected[0][1]
    store = node.fetcher.store
    assert info.sha not in store and not [f for f in store.root.rglob("*") if f.is_file()]
    for index, piece in enumerate(pieces):  # what the fetch asks for again
        node.deliver(index, Chunk(info, index, piece))
    assert node.result() == [] and store.get(info.sha) == real


def test_a_forged_first_chunk_with_another_chunking_cannot_stall_the_fetch(tmp_path: Path) -> None:
    """The right size but another chunk size, first: it sets up the reassembly, and the real chunks
    disagree with it; after two of them the fetch starts over, and the real chunks make the blob."""
    real, info, pieces = real_blob()
    node = Fetching(tmp_path, info.sha, {info.sha: len(real)})
    forged = BlobInfo(info.sha, info.size, 2 * MIN_CHUNK_SIZE)
    node.deliver(0, Chunk(forged, 0, os.urandom(2 * MIN_CHUNK_SIZE)))
    for index, piece in enumerate(pieces):
        node.deliver(index, Chunk(info, index, piece))
    for index, piece in enumerate(pieces):  # asked for again after the restart
        node.deliver(index, Chunk(info, index, piece))
    assert node.result() == [] and node.fetcher.store.get(info.sha) == real
    assert {r for r, _ in node.rejected} == {"bad_chunk"}


def test_a_real_run_announces_the_size_of_every_blob(
    mosquitto: BrokerUnderTest,
    tmp_path: Path,
    start_nodes,  # type: ignore[no-untyped-def]
) -> None:
    """Every assignment a coordinator sends names the exact size of its code and of each global."""
    start_nodes(mosquitto, ["n1"], {"numbers.npy": numbers(tmp_path)})
    address = BrokerAddress.parse(mosquitto.url)
    sniffer = MqttLink("sniffer", address, version=mosquitto.version, session_expiry=0)
    seen: list[Assignment] = []
    sniffer.route(f"{topics.ROOT}/swarms/+/assign/+", lambda _t, p, _r: seen.append(Assignment.parse(p)))
    assert sniffer.start()
    sniffer.subscribe([f"{topics.ROOT}/swarms/+/assign/+"])
    options = CoordinatorOptions(
        runs_dir=tmp_path / "runs", wait_nodes=30, mqtt_version=mosquitto.version, signing_key=SIGNING_KEY
    )
    try:
        summary = Coordinator(load_swarm(COUNTER), address, options, ConsoleProgress()).run()
    finally:
        sniffer.stop()
    assert summary.state == "stopped", summary.reason
    blobs = RunStore.open(summary.store_path).blobs
    assert seen
    for a in seen:
        assert set(a.sizes) == set(a.blobs) and a.sizes == blobs.sizes(a.blobs)
