"""Typed messages of protocol v2 that are not exactly v2: every parse raises ProtocolError and
nothing else, for a wrong field, a wrong format, truncation, garbage or confused types."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manta_mqtt.protocol import codec
from manta_mqtt.protocol.chunking import MIN_CHUNK_SIZE
from manta_mqtt.protocol.limits import MAX_CHUNK_INDEX
from manta_mqtt.protocol.messages import (
    Assignment,
    BlobRequest,
    Chunk,
    Discover,
    NodeStatus,
    ProtocolError,
    ResultEnvelope,
    SwarmState,
)

from .test_protocol_messages import (
    ALL_MESSAGES,
    DELETE,
    JSON_MESSAGES,
    SHA,
    SHA2,
    SHA3,
    WIRE,
    encode_for,
    mutated,
    parse_or_protocol_error,
    strict_json,
)


def at(path: str | tuple[object, ...], *values: object) -> list[tuple[tuple[object, ...], object]]:
    """Cases setting the field at ``path`` (a key, or keys into nested maps) to each of ``values``."""
    keys = (path,) if isinstance(path, str) else path
    return [(keys, value) for value in values]


INVALID_COMMON = at("v", 1, 3, 0, "2", None, [2], DELETE)  # v1 peers included: nothing in v1 parses as v2

INVALID = {
    NodeStatus: [
        *at("node", DELETE, "a/b", "+", "", "x" * 65, "n\u00f6de", 5, None, "edge.01"),
        *at("state", DELETE, "sleeping", "ONLINE", 1),
        *at("datasets", "mnist", [1], {"a": 1}),
        *at("session", -1, "5", True, 1.5),
        *at("running", 5, ["x"]),
        *at("rejected", [1], "x"),
        *at("agent", 5, None),
        *at("link", -1, "3", True, 1.5, None),
        *at("server", 5, None, ["h:1"]),
    ],
    SwarmState: [
        *at("swarm", DELETE, "a#b", "", "fl.mnist"),
        *at("state", DELETE, "paused", None),
        *at("iteration", "3", True, False, -1, 1.0),
        *at("done", -1, "1"),
        *at("expected", -5, None),
        *at("name", 5),
        *at("step", 5),
        *at("reason", []),
        *at("metrics", [], "loss"),
    ],
    Discover: at("from", 5, None, ["coordinator"], {"a": 1}),
    BlobRequest: [
        *at("swarm", DELETE, "a/b", "", "fl.mnist", 7),
        *at("node", DELETE, "+", "#", "x" * 65, "edge.01", None),
        *at("sha", DELETE, SHA.upper(), SHA[:-1], SHA + "0", "g" * 64, SHA.encode(), 5),
        *at("first", DELETE, -1, "8", True, 8.0, MAX_CHUNK_INDEX),  # the last index: 8 chunks from it are too many
        *at("count", DELETE, 0, -1, "8", True, 8.0, MAX_CHUNK_INDEX),  # from 8, past the last index
    ],
    Chunk: [
        *at("sha", DELETE, "z" * 64),
        *at("size", DELETE, -1),
        *at("chunk_size", MIN_CHUNK_SIZE - 1, False),
        *at("index", DELETE, -1, 4, 10**6, "0", True, 1.0),  # count is 4
        *at("data", DELETE, "12345", None, [1, 2]),
    ],
    Assignment: [
        *at("swarm", DELETE, "a/b", 7, "fl.mnist"),
        *at("iteration", DELETE, "3", True, -1, 3.0),
        *at("task", DELETE, "a b", "#", "work.er"),
        *at("attempt", -1, "1"),
        *at("code", DELETE, "worker_task", [SHA2, "worker_task"]),
        *at(("code", "sha"), DELETE, "nope"),
        *at(("code", "entry"), DELETE, "not-an-identifier", "os.system", "", 5),
        *at("globals", DELETE, [SHA]),
        *at(("globals", "weights"), "not-a-sha", None),
        *at(("globals", 7), SHA),
        *at("datasets", "mnist", [None]),
        *at("timeout", DELETE, 0, -1.0, 7 * 24 * 3600 + 1, math.nan, math.inf, "60", None),
    ],
    ResultEnvelope: [
        *at("swarm", DELETE, ".x"),
        *at("node", DELETE, "a+b", "edge.01"),
        *at("task", "t/u"),
        *at("iteration", DELETE, "3", True, -2),
        *at("attempt", -1, False),
        *at("status", DELETE, "maybe", "OK", 1),
        *at("results", [], b"x"),
        *at(("results", "n"), 5, "inline as str", None),
        *at(("results", "weights", "blob"), DELETE, "bad"),
        *at(("results", "weights", "size"), DELETE, -1, "10", True),
        *at(("results", ""), b"x"),
        *at(("results", 5), b"x"),
        *at("globals", "x"),
        *at(("globals", "lr"), 0.01),
        *at(("globals", "big", "blob"), SHA3.upper()),
        *at("schedule", "worker", {"worker": []}),
        *at(("schedule", 0), "worker", ["worker"], ["worker", ["a"], "extra"], [5, ["a"]], ["worker", "edge-01"]),
        *at(("schedule", 0), ["worker", [1]]),
        *at("stop", 1, "yes", None),
        *at("error", 5, None),
        *at("duration", "1.5", None),
    ],
}

INVALID_CASES = [
    pytest.param(cls, path, value, id=f"{cls.__name__}-{'.'.join(map(str, path))}={value!r:.30}".replace(" ", ""))
    for cls in ALL_MESSAGES
    for path, value in INVALID_COMMON + INVALID[cls]
    if not (cls in JSON_MESSAGES and isinstance(value, bytes))
]


@pytest.mark.parametrize(("cls", "path", "value"), INVALID_CASES)
def test_invalid_field_raises_protocol_error(cls, path, value):
    """Wrong version, missing fields, wrong types, bad ids/shas, negatives, unknown states: ProtocolError."""
    payload = encode_for(cls, mutated(cls, path, value))
    with pytest.raises(ProtocolError):
        cls.parse(payload)


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
def test_wrong_format_raises_protocol_error(cls):
    """A JSON message sent as msgpack or vice versa is refused."""
    other = codec.encode(WIRE[cls]) if cls in JSON_MESSAGES else json.dumps(WIRE[cls], default=repr).encode()
    with pytest.raises(ProtocolError):
        cls.parse(other)


NON_MAPS_MSGPACK = [codec.encode(v) for v in ([], [1, 2], 1, -1, 1.5, "x", b"x", None, True, np.arange(3))] + [b""]
NON_MAPS_JSON = [b"[]", b"[1]", b"1", b"1.5", b'"x"', b"null", b"true", b"", b" ", b"{", b"\xff\xfe", b"{'v': 1}"]


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
def test_non_map_payloads_raise_protocol_error(cls):
    """Payloads whose top level is not a map (or not even valid) raise ProtocolError."""
    for payload in NON_MAPS_JSON if cls in JSON_MESSAGES else NON_MAPS_MSGPACK:
        with pytest.raises(ProtocolError):
            cls.parse(payload)


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
def test_truncated_payloads_raise_protocol_error(cls):
    """Every strict prefix of a valid payload raises ProtocolError."""
    payload = encode_for(cls, WIRE[cls])
    for end in range(len(payload)):
        with pytest.raises(ProtocolError):
            cls.parse(payload[:end])


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=200))
def test_garbage_bytes_raise_only_protocol_error(cls, payload):
    """Random bytes either parse to a message or raise ProtocolError, never anything else."""
    parse_or_protocol_error(cls, payload)


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_corrupted_payloads_raise_only_protocol_error(cls, data):
    """A valid payload with a few bytes changed parses or raises ProtocolError, nothing else."""
    payload = bytearray(encode_for(cls, WIRE[cls]))
    for _ in range(data.draw(st.integers(1, 3))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    parse_or_protocol_error(cls, bytes(payload))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=70),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=70)
    | st.binary(max_size=70)
    | st.just(SHA)
    | st.builds(np.zeros, st.integers(0, 3)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_type_confused_fields_raise_only_protocol_error(cls, data):
    """Maps with the right keys (some kept, some dropped) but random values never raise anything but
    ProtocolError."""
    base = WIRE[cls]
    random_value = json_values if cls in JSON_MESSAGES else wire_values
    fields = st.fixed_dictionaries(
        {"v": st.just(2)},
        optional={k: st.just(v) | random_value for k, v in base.items() if k != "v"},
    )
    parse_or_protocol_error(cls, encode_for(cls, data.draw(fields)))


# --- bugs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
def test_version_true_is_refused(cls):
    """A boolean is not schema version 2 (nor 1)."""
    with pytest.raises(ProtocolError):
        cls.parse(encode_for(cls, {**WIRE[cls], "v": True}))


@pytest.mark.parametrize("cls", [BlobRequest, Chunk, Assignment, ResultEnvelope], ids=lambda c: c.__name__)
def test_version_array_raises_protocol_error(cls):
    """An ndarray as schema version is refused with ProtocolError."""
    with pytest.raises(ProtocolError):
        cls.parse(codec.encode({**WIRE[cls], "v": np.array([2, 2])}))


@pytest.mark.parametrize(
    ("cls", "key"), [(Assignment, "timeout"), (ResultEnvelope, "duration")], ids=["timeout", "duration"]
)
def test_bool_is_not_a_number(cls, key):
    """True/False where a number is expected raise ProtocolError."""
    with pytest.raises(ProtocolError):
        cls.parse(codec.encode({**WIRE[cls], key: True}))


def test_negative_duration_is_refused():
    """A task cannot have run for a negative time."""
    with pytest.raises(ProtocolError):
        ResultEnvelope.parse(codec.encode({**WIRE[ResultEnvelope], "duration": -1.0}))


@pytest.mark.parametrize("cls", JSON_MESSAGES, ids=lambda c: c.__name__)
def test_deeply_nested_json_raises_protocol_error(cls):
    """A status payload of 100k nested arrays is refused with ProtocolError."""
    with pytest.raises(ProtocolError):
        cls.parse(b"[" * 100_000)


def test_deeply_nested_msgpack_raises_protocol_error():
    """The msgpack side does refuse deep nesting with ProtocolError (for contrast with JSON)."""
    for cls in (BlobRequest, Chunk, Assignment, ResultEnvelope):
        with pytest.raises(ProtocolError):
            cls.parse(b"\x91" * 100_000)


def test_huge_integer_metric_is_dropped():
    """A metric beyond float range (valid JSON) is left out; the rest of the state is kept."""
    payload = json.dumps({**WIRE[SwarmState], "metrics": {"loss": 10**400, "acc": 0.5}}).encode()
    assert SwarmState.parse(payload).metrics == {"acc": 0.5}


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_non_finite_metric_still_gives_valid_json(bad):
    """A retained status message must stay valid JSON whatever the metrics hold."""
    strict_json(SwarmState("s", "n", "running", metrics={"loss": bad}).to_bytes())
