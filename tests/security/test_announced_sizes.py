"""Blob sizes announced by the (signed) assignment: a node refuses a meta or chunk that declares
another size before it allocates or waits for anything, and keeps waiting for the real one.

The attack: a blob meta claiming 1 GiB for the code's sha256 kept a node fetching (and holding
memory) until its fetch timed out. Allocation now follows the data anyway; with the size in the
assignment, the forged meta is refused on arrival.
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
from manta_mqtt.protocol.messages import Assignment, BlobMeta, Chunk, CodeRef, ProtocolError
from manta_mqtt.protocol.signing import OwnerKey, Trust, Untrusted
from manta_mqtt.transport.blobs import BlobFetcher
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


def test_a_node_refuses_a_forged_size_and_still_fetches_the_real_blob(tmp_path: Path) -> None:
    real = os.urandom(3 * MIN_CHUNK_SIZE)
    info, pieces = split(real, MIN_CHUNK_SIZE)
    forged = BlobInfo(info.sha, GiB, MIN_CHUNK_SIZE)
    link, rejected = FakeLink(), []
    fetcher = BlobFetcher(link, BlobStore(tmp_path / "cache"), on_reject=lambda r, d: rejected.append((r, d)))  # type: ignore[arg-type]
    failed: list[list[str]] = []
    fetch = threading.Thread(target=lambda: failed.append(fetcher.fetch("sw", [info.sha], 10.0, {info.sha: len(real)})))
    fetch.start()
    assert link.subscribed.wait(5)
    fetcher._on_message(topics.blob_meta("sw", info.sha), BlobMeta(forged).to_bytes(), True)
    bogus = Chunk(forged, 0, os.urandom(MIN_CHUNK_SIZE)).to_bytes()
    fetcher._on_message(topics.blob_chunk("sw", info.sha, 0), bogus, True)
    assert [r for r, _ in rejected] == ["bad_chunk", "bad_chunk"]
    assert "the assignment announced 3072" in rejected[0][1]
    assert fetcher._transfers[info.sha].assembler is None  # nothing allocated for the forgery
    fetcher._on_message(topics.blob_meta("sw", info.sha), BlobMeta(info).to_bytes(), True)
    for index, piece in enumerate(pieces):
        fetcher._on_message(topics.blob_chunk("sw", info.sha, index), Chunk(info, index, piece).to_bytes(), True)
    fetch.join(10)
    assert failed == [[]] and fetcher.store.get(info.sha) == real


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
