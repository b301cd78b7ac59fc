"""`manta-mqtt watch` prints every kind of protocol message as one readable line, never INVALID
for a valid message (a kind without its own branch once read node logs as blob chunks)."""

from __future__ import annotations

from manta_mqtt.protocol import topics
from manta_mqtt.protocol.chunking import BlobInfo
from manta_mqtt.protocol.messages import (
    Assignment,
    BlobMeta,
    Chunk,
    CodeRef,
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
    topics.Kind.BLOB_META: (topics.blob_meta("sw", SHA), BlobMeta(INFO).to_bytes()),
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
    assert describe(topics.node_log("n1"), b"{}").startswith(f"{topics.node_log('n1')} INVALID")
