"""`manta-mqtt watch` prints every kind of protocol message as one readable line, never INVALID
for a valid message (a kind without its own branch once read node logs as blob chunks)."""

from __future__ import annotations

from manta_mqtt.protocol import topics
from manta_mqtt.protocol.chunking import BlobInfo
from manta_mqtt.protocol.messages import (
    Assignment,
    BlobRequest,
    Chunk,
    CodeRef,
    Discover,
    NodeLog,
    NodeStatus,
    ResultEnvelope,
    SwarmControl,
    SwarmState,
    UploadGrant,
)
from manta_mqtt.tools.watch import describe

SHA = "ab" * 32
INFO = BlobInfo(SHA, 2048, 1024)
SAMPLES = {
    topics.Kind.NODE_STATUS: (topics.node_status("n1"), NodeStatus("n1", "online").to_bytes()),
    topics.Kind.NODE_LOG: (
        topics.node_log("n1"),
        NodeLog.make("n1", 1.0, "error", "edge_node", "task failed", "line 1\nline 2").to_bytes(),
    ),
    topics.Kind.SWARM_STATE: (topics.swarm_state("sw"), SwarmState("sw", "x", "running").to_bytes()),
    topics.Kind.SWARM_CONTROL: (topics.swarm_control("sw"), SwarmControl("sw", "stop", "enough", "ops").to_bytes()),
    topics.Kind.DISCOVER: (topics.discover(), Discover("coordinator-sw").to_bytes()),
    topics.Kind.BLOB_REQUEST: (topics.blob_request("sw", "n1"), BlobRequest("sw", "n1", SHA, 8, 8).to_bytes()),
    topics.Kind.BLOB_CHUNK: (topics.blob_chunk("sw", SHA, 1), Chunk(INFO, 1, b"\0" * 1024).to_bytes()),
    topics.Kind.ASSIGNMENT: (
        topics.assignment("sw", "n1"),
        Assignment("sw", 0, "w", 0, CodeRef(SHA, "w"), {}, [], 60.0).to_bytes(),
    ),
    topics.Kind.RESULTS: (topics.results("sw", "n1"), ResultEnvelope("sw", 0, "w", "n1", 0, "ok").to_bytes()),
    topics.Kind.UPLOAD_CHUNK: (topics.upload_chunk("sw", "n1", SHA, 0), Chunk(INFO, 0, b"\0" * 1024).to_bytes()),
    topics.Kind.UPLOAD_GRANT: (
        topics.upload_grant("sw", "n1"),
        UploadGrant("sw", "n1", SHA, 2048, 1024, 0, 2).to_bytes(),
    ),
}


def test_every_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(topics.Kind)


def test_every_valid_message_reads_as_one_line() -> None:
    for kind, (topic, payload) in SAMPLES.items():
        line = describe(topic, payload)
        assert "INVALID" not in line and "\n" not in line, (kind, line)


def test_what_the_operator_sees() -> None:
    assert describe(*SAMPLES[topics.Kind.NODE_LOG]).endswith("ERROR edge_node: task failed (+2 line(s) of stderr)")
    assert describe(*SAMPLES[topics.Kind.SWARM_CONTROL]).endswith("stop by='ops' reason='enough'")
    want = f"{topics.blob_request('sw', 'n1')} wants chunks 9-16 of blob {SHA[:12]}"
    assert describe(*SAMPLES[topics.Kind.BLOB_REQUEST]) == want
    asked = f"{topics.discover()} every node: send your status (asked by 'coordinator-sw')"
    assert describe(*SAMPLES[topics.Kind.DISCOVER]) == asked
    assert describe(topics.discover(), b"[]").startswith(f"{topics.discover()} INVALID")
    assert describe(topics.blob_request("sw", "n1"), b"{}").startswith(f"{topics.blob_request('sw', 'n1')} INVALID")
    assert describe("manta/v1/swarms/sw/blobs/" + SHA, b"x").endswith("not a protocol v2 topic)")
    assert describe(topics.node_log("n1"), b"{}").startswith(f"{topics.node_log('n1')} INVALID")
