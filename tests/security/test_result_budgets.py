"""Result envelopes held before they are judged are bounded in bytes, per node and in total.

The attack: 60 envelopes of 8 MB sent before their step opened took the coordinator to 536 MB;
nothing bounded them but a count of 10,000. Two places hold envelopes unjudged: the queue from
the network thread to the main thread (busy for minutes while an aggregator runs), and the
engine's early results. Each now has a byte budget per node and in total; past it an envelope is
refused (``overflow``) and the other nodes' go on.
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path

import pytest

from manta_mqtt.blobstore import BlobStore
from manta_mqtt.coordinator.engine import Timing
from manta_mqtt.coordinator.engine import actions as act
from manta_mqtt.coordinator.intake import Intake, ReceivedEnvelope
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.limits import MAX_ENVELOPE_BYTES, MAX_NODE_RESULT_BYTES, MiB
from manta_mqtt.protocol.messages import ResultEnvelope
from manta_mqtt.protocol.rejections import Rejections
from manta_mqtt.transport.blobs import UploadReceiver
from tests.engine_world import World, fl_graph, only

EIGHT_MB = 8 * 1000 * 1000


def envelope(node: str, size: int) -> bytes:
    return ResultEnvelope("sw", 0, "worker", node, 0, "ok", {"model": b"\0" * size}).to_bytes()


def intake(tmp_path: Path, per_node: int, total: int) -> tuple[Intake, Rejections]:
    rejections = Rejections(logging.getLogger("test"))
    uploads = UploadReceiver(BlobStore(tmp_path / "blobs"), on_reject=rejections)
    return Intake(rejections, uploads, bytes_per_node=per_node, bytes_total=total), rejections


def drain(source: Intake) -> list[str]:
    nodes = []
    while True:
        try:
            item = source.next(timeout=0)
        except queue.Empty:
            return nodes
        assert isinstance(item, ReceivedEnvelope)
        nodes.append(item.node)


def test_the_default_per_node_budget_holds_two_full_envelopes() -> None:
    assert MAX_NODE_RESULT_BYTES >= 2 * MAX_ENVELOPE_BYTES


def test_a_flooding_node_fills_its_share_of_the_queue_and_no_more(tmp_path: Path) -> None:
    """60 envelopes of 8 MB while the main thread is busy: the queue holds 16 MiB of them."""
    source, rejections = intake(tmp_path, per_node=16 * MiB, total=64 * MiB)
    for _ in range(60):
        source.on_results(topics.results("sw", "evil"), envelope("evil", EIGHT_MB), False)
    source.on_results(topics.results("sw", "n2"), envelope("n2", 1000), False)
    assert rejections.as_dict() == {"overflow": 58}
    assert drain(source) == ["evil", "evil", "n2"]
    source.on_results(topics.results("sw", "evil"), envelope("evil", EIGHT_MB), False)
    assert drain(source) == ["evil"]  # room again once the main thread took them


def test_forged_node_ids_are_stopped_by_the_total(tmp_path: Path) -> None:
    source, rejections = intake(tmp_path, per_node=16 * MiB, total=20 * MiB)
    for i in range(10):
        source.on_results(topics.results("sw", f"fake{i}"), envelope(f"fake{i}", EIGHT_MB), False)
    assert rejections.as_dict() == {"overflow": 8}
    assert len(drain(source)) == 2


def test_early_results_are_bounded_in_bytes_per_node_and_in_total() -> None:
    timing = Timing(grace=10.0, reconnect_grace=5.0, wait_nodes=30.0, min_nodes=2)
    world = World(fl_graph(), timing, result_bytes=(16 * MiB, 36 * MiB))
    world.start()
    out = []
    for _ in range(60):  # before any step opened: kept to be judged later
        out += world.result("n1", size=EIGHT_MB)
    refused = only(out, act.Reject)
    assert len(refused) == 58 and {r.reason for r in refused} == {"overflow"}
    assert "n1 would hold more than 16777216 bytes" in refused[0].detail
    assert world.result("n2", size=EIGHT_MB) == []  # another node is not affected
    assert world.result("n3", size=EIGHT_MB) == []
    assert [r.reason for r in only(world.result("n4", size=EIGHT_MB), act.Reject)] == ["overflow"]  # the total
    out = world.online("n1", "n2")  # the step opens: what was kept is judged, and the room freed
    assert act.RecordRun(0, "worker", "n1", True, "", 1.5) in out
    assert act.RecordRun(0, "worker", "n2", True, "", 1.5) in out


@pytest.mark.parametrize("size", [0, MAX_ENVELOPE_BYTES])
def test_any_envelope_the_intake_accepts_fits_an_empty_budget(tmp_path: Path, size: int) -> None:
    source, rejections = intake(tmp_path, per_node=MAX_NODE_RESULT_BYTES, total=MAX_NODE_RESULT_BYTES)
    payload = envelope("n1", max(0, size - 200))  # just under the envelope limit
    assert len(payload) <= MAX_ENVELOPE_BYTES
    source.on_results(topics.results("sw", "n1"), payload, False)
    assert rejections.as_dict() == {} and drain(source) == ["n1"]
