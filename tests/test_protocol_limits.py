"""The protocol code enforces the limits of protocol/limits.py, at exactly those values."""

from __future__ import annotations

import inspect
import re

import pytest

from manta_mqtt.protocol import chunking, codec, limits, topics
from manta_mqtt.protocol.messages import Assignment, CodeRef, ProtocolError
from manta_mqtt.transport.mqtt import MqttLink

SHA = "0123456789abcdef" * 4


def test_protocol_modules_use_the_named_limits() -> None:
    assert chunking.MIN_CHUNK_SIZE == limits.MIN_CHUNK_SIZE == 1024
    assert chunking.DEFAULT_CHUNK_SIZE == limits.DEFAULT_CHUNK_SIZE == 1 << 20
    assert codec.MAX_MESSAGE_BYTES == limits.MAX_MESSAGE_BYTES
    assert topics.MAX_INDEX == limits.MAX_CHUNK_INDEX
    assert inspect.signature(MqttLink).parameters["window"].default == limits.PUBLISH_WINDOW


def test_ids_up_to_64_characters() -> None:
    assert topics.check_id("a" * 64) == "a" * 64
    with pytest.raises(topics.TopicError):
        topics.check_id("a" * 65)
    assert re.fullmatch(limits.ID_PATTERN, "pi-kitchen_2-local")
    assert not re.fullmatch(limits.ID_PATTERN, "pi-kitchen_2.local")  # NATS refuses a topic with "."


def test_chunk_index_limit_applies_to_every_chunk_topic() -> None:
    top = limits.MAX_CHUNK_INDEX
    assert topics.parse(topics.upload_chunk("s", "n", SHA, top)).index == top
    for bad in (top + 1, -1, True):
        with pytest.raises(topics.TopicError):
            topics.blob_chunk("s", SHA, bad)
        with pytest.raises(topics.TopicError):
            topics.upload_chunk("s", "n", SHA, bad)
    with pytest.raises(topics.TopicError):
        topics.parse(f"{topics.ROOT}/swarms/s/uploads/n/{SHA}/{top + 1}")


def assignment(timeout: float) -> bytes:
    return Assignment("s", 0, "worker", 0, CodeRef(SHA, "worker"), {}, [], timeout).to_bytes()


def test_assignment_timeout_up_to_the_limit() -> None:
    assert Assignment.parse(assignment(limits.MAX_TASK_TIMEOUT_SECONDS)).timeout == limits.MAX_TASK_TIMEOUT_SECONDS
    assert limits.MAX_TASK_TIMEOUT_SECONDS == 7 * 24 * 3600
    for bad in (0.0, limits.MAX_TASK_TIMEOUT_SECONDS + 0.5):
        with pytest.raises(ProtocolError, match="timeout"):
            Assignment.parse(assignment(bad))


def test_a_message_past_the_cap_is_refused_before_decoding() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return limits.MAX_MESSAGE_BYTES + 1

    with pytest.raises(codec.CodecError, match="exceeds"):
        codec.decode(Huge(b"\x80"))
