"""The grant scheduler's adapter with a fake link and a fake engine: it wants exactly what results
parked in the open step lack, and follows statuses, reconnections and arrivals."""

from __future__ import annotations

import logging
import queue
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from manta_mqtt.blobstore import BlobStore
from manta_mqtt.coordinator import engine as eng
from manta_mqtt.coordinator.grants import GrantScheduler
from manta_mqtt.coordinator.intake import ChunksArrived, Intake
from manta_mqtt.coordinator.pulls import UploadPuller, awaited_uploads
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.chunking import BlobInfo, sha256
from manta_mqtt.protocol.messages import BlobRef, Chunk, NodeStatus, ResultEnvelope, UploadGrant
from manta_mqtt.protocol.rejections import Rejections
from manta_mqtt.transport.blobs import UploadReceiver

CHUNK = 1024
A, B, C = "aa" * 32, "bb" * 32, "cc" * 32


class FakeLink:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, payload))


def engine(parked: dict[str, tuple[ResultEnvelope, set[str]]], outcomes: dict[str, Any], lost: set[str]) -> Any:
    step = SimpleNamespace(
        parked={n: SimpleNamespace(envelope=e, missing=m) for n, (e, m) in parked.items()},
        round=SimpleNamespace(outcomes=outcomes, lost=lost),
    )
    return SimpleNamespace(nodes=SimpleNamespace(step=step), next_timer=lambda: None)


def envelope(node: str, **refs: BlobRef) -> ResultEnvelope:
    return ResultEnvelope("sw", 0, "worker", node, 0, "ok", dict(refs))


def test_only_missing_uploads_of_results_still_awaited_are_wanted() -> None:
    fake = engine(
        {
            "n1": (envelope("n1", model=BlobRef(A, 5 * CHUNK), other=BlobRef(B, CHUNK)), {A}),  # B is stored
            "n2": (envelope("n2", model=BlobRef(C, 3 * CHUNK)), {C}),  # its outcome came: past the deadline
            "n3": (envelope("n3", model=BlobRef(B, 10**12)), {B}),  # larger than the receiver takes
        },
        outcomes={"n2": object()},
        lost=set(),
    )
    assert awaited_uploads(fake, max_size=1 << 30) == {("n1", A): 5 * CHUNK}
    assert awaited_uploads(SimpleNamespace(nodes=SimpleNamespace(step=None)), 1 << 30) == {}  # type: ignore[arg-type]


def test_grants_go_out_on_each_nodes_topic_and_follow_statuses_and_arrivals() -> None:
    link = FakeLink()
    puller = UploadPuller(link, "sw", GrantScheduler(window=4 * CHUNK, chunk_size=CHUNK), 1 << 30)  # type: ignore[arg-type]
    fake = engine({"n1": (envelope("n1", m=BlobRef(A, 8 * CHUNK)), {A})}, {}, set())
    puller.sync(fake, now=0)
    puller.send(now=0)
    ((topic, payload),) = link.published
    assert topic == topics.upload_grant("sw", "n1")
    assert UploadGrant.parse(payload) == UploadGrant("sw", "n1", A, 8 * CHUNK, CHUNK, 0, 4)
    assert puller.observe(ChunksArrived((("n1", A, 0), ("n1", A, 1))), fake, now=1) is False  # ours alone
    puller.send(now=1)
    assert UploadGrant.parse(link.published[-1][1]).indexes == range(4, 6)
    offline = NodeStatus("n1", "offline", [], session=1)
    assert puller.observe(eng.StatusChanged(offline), fake, now=2) is True  # the engine needs it too
    assert puller.scheduler.in_flight == 0  # what n1 had in flight is freed
    puller.send(now=2)
    assert len(link.published) == 2  # nothing for an offline node
    puller.observe(eng.StatusChanged(NodeStatus("n1", "online", [], session=1)), fake, now=3)
    puller.send(now=3)
    assert UploadGrant.parse(link.published[-1][1]).indexes == range(2, 6)  # asked again, at once
    puller.observe(eng.UploadCompleted(A), fake, now=4)
    assert len(puller.scheduler) == 0


def test_only_chunks_of_uploads_asked_for_reach_the_main_thread(tmp_path: Path) -> None:
    """A flood of chunks nobody asked for must not wake the pump once per chunk (it starved the
    network thread of the GIL): the intake reports only the uploads the puller expects."""
    intake = Intake(Rejections(logging.getLogger("test")), UploadReceiver(BlobStore(tmp_path / "blobs")))
    expected: list[frozenset[tuple[str, str]]] = []
    puller = UploadPuller(
        FakeLink(), "sw", GrantScheduler(window=4 * CHUNK, chunk_size=CHUNK), 1 << 30, expected.append
    )  # type: ignore[arg-type]
    data = bytes(range(256)) * 8  # two chunks of 1 KiB
    info = BlobInfo(sha256(data), len(data), CHUNK)

    def send(node: str, index: int) -> None:
        chunk = Chunk(info, index, data[index * CHUNK : (index + 1) * CHUNK]).to_bytes()
        intake.on_upload(topics.upload_chunk("sw", node, info.sha, index), chunk, False)

    send("stranger", 0)
    with pytest.raises(queue.Empty):
        intake.next(timeout=0)  # nothing for the main thread
    puller.sync(engine({"n1": (envelope("n1", m=BlobRef(info.sha, len(data))), {info.sha})}, {}, set()), now=0)
    assert expected == [frozenset({("n1", info.sha)})]
    intake.expect(expected[-1])
    send("n1", 0)
    assert intake.next(timeout=0) == ChunksArrived((("n1", info.sha, 0),))
    puller.sync(engine({"n1": (envelope("n1", m=BlobRef(info.sha, len(data))), {info.sha})}, {}, set()), now=1)
    assert len(expected) == 1  # unchanged: not told again
