"""The bytes on the wire, pinned: every message type, encoded from fixed values, hashes to what
protocol v2 sends as released now (recorded when v2 replaced v1: "v": 2 in every message,
BlobRequest and Discover instead of the retained BlobMeta, NodeStatus's link and server, the
signature's v2 context). A refactor that changes one byte of any message fails here; a
deliberate, documented addition that v2 peers still read re-records its hash, marked with a
comment saying what it added; a change that v2 peers cannot read is protocol v3."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from manta_mqtt.protocol import codec
from manta_mqtt.protocol.chunking import BlobInfo
from manta_mqtt.protocol.messages import (
    Assignment,
    BlobRef,
    BlobRequest,
    Chunk,
    CodeRef,
    Discover,
    NodeLog,
    NodeStatus,
    ProtocolError,
    ResultEnvelope,
    SwarmControl,
    SwarmState,
    UploadGrant,
)
from manta_mqtt.protocol.signing import OwnerKey

SHA = "ab" * 32
SHA2 = "cd" * 32


def owner() -> OwnerKey:
    """A fixed owner key: Ed25519 signatures are deterministic, so a signed assignment is pinned too."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return OwnerKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


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
        link=2,
        server="broker-2:1883",
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
    "discover": Discover("coordinator-sw"),
    "blob_request": BlobRequest("sw", "n1", SHA, 8, 8),
    "chunk": Chunk(BlobInfo(SHA, 2048, 1024), 1, b"\x01" * 1024),
    "chunk_only": Chunk(BlobInfo(SHA, 3, 1024), 0, b"abc"),  # a blob of one chunk is just its chunk 0
    "upload_grant": UploadGrant("sw", "n1", SHA, 4096, 1024, 2, 2),
    "assignment": Assignment(
        "sw", 3, "worker", 1, CodeRef(SHA, "worker"), {"model": SHA2, "hp": SHA}, ["a.npz"], 300.0
    ),
    "assignment_signed": owner().sign(
        "n1",
        Assignment(
            "sw", 3, "worker", 1, CodeRef(SHA, "worker"), {"model": SHA2}, [], 300.0, sizes={SHA: 5000, SHA2: 12}
        ),
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
    "swarm_control": SwarmControl("sw", "stop", "enough", "ops"),
    "node_log": NodeLog.make("n1", 1795000000.25, "error", "edge_node", "task failed", "line 1\nline 2", 3),
}

PINNED = {  # recorded with protocol v2 as released
    "node_status": "3aa22801215d6b15c042dac20e7a7d2bdc13f503f84c06df6ee10fc3ec6634e0",
    "node_status_offline": "e6b6106ec2d192d989f6c4f368018188c1fdae89901244e891cdfba49685e1b4",
    "node_status_health": "e5079e74d496120a1260250a1258f6a433dad118b032fd22c11cbbbff30bdaea",
    "swarm_state": "46634f911d6bd1a8862521f160eac3e83fd4162e7f124e7b80b4a0bae030375c",
    "discover": "96d65a317bf8309d8903221d2f7c74ece0038ec761afbcfdc62a6ee19945cac2",
    "blob_request": "08680558164cb4488b245b10dbda7bb8c30a3e6467e940f50c6ed4ca8ffd6a77",
    "chunk": "934ee1b13373ce7cdbbd76740c562cc60bf53ee5636a9b26a3605e54b699e520",
    "chunk_only": "00c5af776e9675f1fd08a890341e9a735bd1868f68fa7f0303518d2f71b5f44d",
    "upload_grant": "a6aa4bb898569b9709866a32c8ea94ebe8bb6ac094561a452217dddb51f9e928",
    "assignment": "f88b67a96b4959396d26d4dfa676578731e027b1e813996050377082c043cb93",
    "assignment_signed": "fdb11fa9b3e3852ac395f376f2dd2d9392d2db4a658d4c6b29b1319e6b581b9c",
    "envelope": "7dd30b0f4836c7fd768687fcbcdb8b7926540bebc8948d793b7cd39ff2a822c0",
    "envelope_failed": "aff60f43f3fae992b9b40b508a17b227c6f79722700328c1ebfbb2af4da1c704",
    "swarm_control": "edbb011e61dbf126d415e3eef73c65e83ce460fe01fa534465b77b3a0c5cb321",
    "node_log": "3ccb2d356ab163c3060b47b35d795523426e1e6b29dd8aecdf0fc90ff81b70f0",
    "codec_values": "2ebb7f35bbf210f67b372f68cfbd2d221ef7e2430688185c9faa4de236577380",
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_message_bytes_are_pinned(name: str) -> None:
    assert hashlib.sha256(MESSAGES[name].to_bytes()).hexdigest() == PINNED[name]


def test_codec_bytes_are_pinned() -> None:
    value = {"a": np.arange(6, dtype="<f4").reshape(2, 3), "b": [1, 2.5, "x", None, True, b"\x00"]}
    assert hashlib.sha256(codec.encode(value)).hexdigest() == PINNED["codec_values"]


def test_a_v1_message_is_refused_and_a_minimal_v2_status_parses() -> None:
    """A v1 peer's status ("v": 1) is not half understood as v2: it is refused. A v2 status with
    only the required fields reads with the defaults (no heartbeat, link 0, no server)."""
    v1 = b'{"agent": "manta-mqtt 0.1.0", "datasets": [], "node": "n1", "rejected": {}, "running": null, '
    v1 += b'"session": 5, "state": "online", "v": 1}'
    with pytest.raises(ProtocolError, match="version 1"):
        NodeStatus.parse(v1)
    status = NodeStatus.parse(v1.replace(b'"v": 1', b'"v": 2'))
    assert (status.node, status.state, status.heartbeat, status.link, status.server) == ("n1", "online", 0.0, 0, "")
