"""The bytes on the wire, pinned: every message type, encoded from fixed values, hashes to what
protocol v1 sent when it was first released (recorded with commit 141ba79), or to what a
deliberate, documented addition made of it (marked). A refactor that changes one byte of any
message fails here; a change that older peers cannot read is protocol v2."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from manta_mqtt.protocol import codec
from manta_mqtt.protocol.chunking import BlobInfo
from manta_mqtt.protocol.messages import (
    Assignment,
    BlobMeta,
    BlobRef,
    Chunk,
    CodeRef,
    NodeStatus,
    ResultEnvelope,
    SwarmState,
)

SHA = "ab" * 32
SHA2 = "cd" * 32

MESSAGES = {
    "node_status": NodeStatus(
        "n1", "busy", ["a.npz", "b"], 1795000000000, "sw/3/worker", {"malformed": 2}, "manta-mqtt 0.1.0"
    ),
    "node_status_offline": NodeStatus("n1", "offline", [], 0),
    "node_status_health": NodeStatus(
        "n1",
        "busy",
        [],
        1795000000000,
        "sw/3/worker",
        {},
        "manta-mqtt 0.1.0",
        1795000123.5,
        interval=30.0,
        uptime=3600.5,
        cpu=12.5,
        load1=0.25,
        mem_used=300,
        mem_total=1000,
        rss=50,
        disk_free=2000,
        disk_total=30000,
        temp=-3.5,
        task_started=1795000100.0,
        last_error="ValueError: x",
    ),
    "swarm_state": SwarmState("sw", "name", "running", 3, "worker", 2, 3, {"val_acc": 0.96, "loss": 0.12}, ""),
    "blob_meta_inline": BlobMeta(BlobInfo(SHA, 3, 1024), b"abc"),
    "blob_meta": BlobMeta(BlobInfo(SHA, 4096, 1024)),
    "chunk": Chunk(BlobInfo(SHA, 2048, 1024), 1, b"\x01" * 1024),
    "assignment": Assignment(
        "sw", 3, "worker", 1, CodeRef(SHA, "worker"), {"model": SHA2, "hp": SHA}, ["a.npz"], 300.0
    ),
    "envelope": ResultEnvelope(
        "sw",
        3,
        "worker",
        "n1",
        1,
        "ok",
        {"metrics": codec.encode({"acc": 0.5}), "model": BlobRef(SHA2, 9999)},
        {"lr": codec.encode(0.1)},
        [("worker", ["n1", "n2"])],
        True,
        "",
        1.83,
    ),
    "envelope_failed": ResultEnvelope("sw", 0, "worker", "n2", 0, "failed", error="Traceback", duration=0.5),
}

PINNED = {
    "node_status": "1a8c010670bf5121cc09843b5e0b51082fe55c7873fa1357fc74b95ac6357bcb",  # + heartbeat
    "node_status_offline": "745d89dd58118e333dda51f22c337a985c57da4f78302d9f080200b5984ec702",  # + heartbeat
    "node_status_health": "8a09842ab29449a8e02fd22e515cbcbae7f09457d558b23ced9c14fa3cf0b115",  # + health fields
    "swarm_state": "a67398245779fcd281fa516864fe421bccd07b565fd2514375f17c5bb9755e88",  # + updated
    "blob_meta_inline": "536456ab5655d6a049a5004258b0729c0b2c97928cf790a5848f5aeb4e1311e7",
    "blob_meta": "202ff965dbb8acc34d0cf3c2ff9993da6553d81d5fe5227a7ad56d304a84dcbf",
    "chunk": "aa565775ec818fc9b8ec69cab81231610d0899d8cc264c46eff7349113d1b1e8",
    "assignment": "6c2cdfe8cbd68db758efa41cf4b47b7a49b0e9090dcb3ed840340493152b7eef",
    "envelope": "7934079580454b5581c47b881697d4dc70540c89af63a9df873e34c6c9a80cb9",
    "envelope_failed": "03e08821ed6c86d6c8817fc89ffaa4b6f25d5179971d954a8025b719af80d66b",
    "codec_values": "2ebb7f35bbf210f67b372f68cfbd2d221ef7e2430688185c9faa4de236577380",
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_message_bytes_are_pinned(name: str) -> None:
    assert hashlib.sha256(MESSAGES[name].to_bytes()).hexdigest() == PINNED[name]


def test_codec_bytes_are_pinned() -> None:
    value = {"a": np.arange(6, dtype="<f4").reshape(2, 3), "b": [1, 2.5, "x", None, True, b"\x00"]}
    assert hashlib.sha256(codec.encode(value)).hexdigest() == PINNED["codec_values"]


def test_a_status_from_a_0_1_0_node_still_parses() -> None:
    """Before the heartbeat field, a node's status had no "heartbeat": it reads as 0."""
    old = b'{"agent": "manta-mqtt 0.1.0", "datasets": [], "node": "n1", "rejected": {}, "running": null, '
    old += b'"session": 5, "state": "online", "v": 1}'
    status = NodeStatus.parse(old)
    assert (status.node, status.state, status.heartbeat) == ("n1", "online", 0.0)
