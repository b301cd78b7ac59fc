"""Typed messages of protocol v1: round-trips and a parse that raises only ProtocolError."""

from __future__ import annotations

import copy
import json
import math
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manta_mqtt.protocol import codec
from manta_mqtt.protocol.chunking import MIN_CHUNK_SIZE, BlobInfo, split
from manta_mqtt.protocol.messages import (
    Assignment,
    BlobMeta,
    BlobRef,
    Chunk,
    CodeRef,
    NodeStatus,
    ProtocolError,
    ResultEnvelope,
    SwarmState,
)

SHA = "0123456789abcdef" * 4
SHA2 = "a" * 64
SHA3 = "b" * 64
DELETE = object()

_ALNUM = string.ascii_letters + string.digits
valid_ids = st.builds(str.__add__, st.sampled_from(_ALNUM), st.text(_ALNUM + "_.-", max_size=63))
shas = st.text("0123456789abcdef", min_size=64, max_size=64)
nonneg = st.integers(min_value=0, max_value=2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)


def strict_json(payload: bytes):
    """Parse as RFC 8259 JSON text: UTF-8, and no NaN/Infinity tokens."""

    def refuse(token: str):
        raise ValueError(f"not JSON: {token}")

    return json.loads(payload.decode("utf-8"), parse_constant=refuse)


def parse_or_protocol_error(cls, payload: bytes):
    """Parse; a ProtocolError is fine, any other exception fails the test."""
    try:
        message = cls.parse(payload)
    except ProtocolError:
        return None
    assert isinstance(message, cls)
    return message


# --- valid messages ----------------------------------------------------------------------------

NODE_STATUS = NodeStatus(
    node="edge-01",
    state="busy",
    datasets=["mnist", "cifar10"],
    session=1_700_000_000_000,
    running="fl/3/worker",
    rejected={"bad_sha": 2, "too_big": 1},
    agent="edge-node/0.1",
)
SWARM_STATE = SwarmState(
    swarm="fl-mnist",
    name="FL on MNIST",
    state="running",
    iteration=3,
    step="aggregate",
    done=4,
    expected=5,
    metrics={"loss": 0.25, "acc": 0.9},
    reason="",
)
INFO = BlobInfo(SHA, 3 * MIN_CHUNK_SIZE + 5, MIN_CHUNK_SIZE)
ASSIGNMENT = Assignment(
    swarm="fl-mnist",
    iteration=3,
    task="worker",
    attempt=1,
    code=CodeRef(SHA2, "worker_task"),
    global_refs={"weights": SHA3, "config": SHA},
    datasets=["mnist"],
    timeout=600.0,
)
RESULT = ResultEnvelope(
    swarm="fl-mnist",
    iteration=3,
    task="worker",
    node="edge-01",
    attempt=1,
    status="ok",
    results={"weights": BlobRef(SHA2, 10_000_000), "n": codec.encode(600), "empty": b""},
    global_writes={"lr": codec.encode(0.01), "big": BlobRef(SHA3, 0)},
    schedule=[("worker", ["edge-01", "edge-02"]), ("scheduler", [])],
    stop=False,
    error="",
    duration=12.5,
)

# The same messages as wire maps, used as the base for the invalid-field cases below.
WIRE = {
    NodeStatus: {"v": 1, **json.loads(NODE_STATUS.to_bytes())},
    SwarmState: {"v": 1, **json.loads(SWARM_STATE.to_bytes())},
    BlobMeta: {"v": 1, "sha": SHA, "size": 4, "chunk_size": MIN_CHUNK_SIZE, "inline": b"abcd"},
    Chunk: {"v": 1, "sha": SHA, "size": INFO.size, "chunk_size": INFO.chunk_size, "index": 3, "data": b"12345"},
    Assignment: codec.decode(ASSIGNMENT.to_bytes()),
    ResultEnvelope: codec.decode(RESULT.to_bytes()),
}
JSON_MESSAGES = (NodeStatus, SwarmState)
ALL_MESSAGES = (NodeStatus, SwarmState, BlobMeta, Chunk, Assignment, ResultEnvelope)


def encode_for(cls, data) -> bytes:
    if cls in JSON_MESSAGES:
        return json.dumps(data).encode()
    return codec.encode(data)


def mutated(cls, path: tuple, value):
    """The base wire map of ``cls`` with the field at ``path`` set to ``value`` (or deleted)."""
    data = copy.deepcopy(WIRE[cls])
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "message",
    [
        NODE_STATUS,
        NodeStatus(node="n", state="offline"),
        SWARM_STATE,
        SwarmState(swarm="s", name="", state="failed", reason="boom \u2603"),
        BlobMeta(INFO),
        BlobMeta(BlobInfo(SHA, 4, MIN_CHUNK_SIZE), b"abcd"),
        BlobMeta(BlobInfo(SHA, 0, MIN_CHUNK_SIZE), b""),
        Chunk(INFO, 0, b"x" * MIN_CHUNK_SIZE),
        Chunk(INFO, 3, b"12345"),
        ASSIGNMENT,
        Assignment("s", 0, "t", 0, CodeRef(SHA, "main"), {}, [], 1.0),
        RESULT,
        ResultEnvelope("s", 0, "t", "n", 0, "failed", error="Traceback ...", stop=True),
    ],
    ids=lambda m: type(m).__name__,
)
def test_round_trip(message):
    """to_bytes then parse gives back an equal message."""
    parsed = type(message).parse(message.to_bytes())
    assert parsed == message
    assert parsed.to_bytes() == message.to_bytes()


def test_result_values_keep_their_kind():
    """Inline result values come back as bytes, referenced ones as BlobRef, schedule as tuples."""
    parsed = ResultEnvelope.parse(RESULT.to_bytes())
    assert parsed.results["weights"] == BlobRef(SHA2, 10_000_000)
    assert type(parsed.results["n"]) is bytes
    assert codec.decode(parsed.results["n"]) == 600
    assert parsed.global_writes["big"] == BlobRef(SHA3, 0)
    assert parsed.schedule == [("worker", ["edge-01", "edge-02"]), ("scheduler", [])]
    assert parsed.key == ("fl-mnist", 3, "worker", "edge-01")


def test_chunk_from_split_round_trips():
    """A Chunk built from split()'s memoryview travels as bytes and compares equal."""
    data = bytes(range(256)) * 10
    info, chunks = split(data, MIN_CHUNK_SIZE)
    for index, part in enumerate(chunks):
        parsed = Chunk.parse(Chunk(info, index, part).to_bytes())
        assert parsed.info == info
        assert parsed.index == index
        assert parsed.data == bytes(part)
        assert type(parsed.data) is bytes


def test_assignment_key_and_int_timeout():
    """An integer timeout on the wire is accepted and becomes a float."""
    parsed = Assignment.parse(codec.encode({**WIRE[Assignment], "timeout": 30}))
    assert parsed.timeout == 30.0
    assert type(parsed.timeout) is float
    assert parsed.key == ("fl-mnist", 3, "worker")


def test_optional_fields_default():
    """Fields with defaults may be omitted on the wire."""
    assert NodeStatus.parse(b'{"v": 1, "node": "n", "state": "online"}') == NodeStatus("n", "online")
    assert SwarmState.parse(b'{"v": 1, "swarm": "s", "state": "stopped"}') == SwarmState("s", "", "stopped")
    minimal = {k: WIRE[ResultEnvelope][k] for k in ("v", "swarm", "iteration", "task", "node", "status")}
    parsed = ResultEnvelope.parse(codec.encode(minimal))
    assert (parsed.results, parsed.global_writes, parsed.schedule, parsed.stop, parsed.attempt) == (
        {},
        {},
        [],
        False,
        0,
    )


@pytest.mark.parametrize("message", [NODE_STATUS, NodeStatus("n", "offline"), SWARM_STATE], ids=repr)
def test_status_messages_are_json_text(message):
    """Retained status messages are plain UTF-8 JSON objects carrying "v": 1 (readable by mosquitto_sub)."""
    payload = message.to_bytes()
    data = strict_json(payload)
    assert isinstance(data, dict)
    assert data["v"] == 1
    assert payload.isascii()
    assert "\n" not in payload.decode()


def test_data_messages_are_msgpack_maps_with_version():
    """Data messages are msgpack maps carrying "v": 1."""
    for message in (BlobMeta(INFO), Chunk(INFO, 3, b"12345"), ASSIGNMENT, RESULT):
        data = codec.decode(message.to_bytes())
        assert isinstance(data, dict)
        assert data["v"] == 1


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
def test_base_wire_maps_parse(cls):
    """Sanity check: the unmodified base maps used below are valid, so each case tests one change."""
    assert isinstance(cls.parse(encode_for(cls, WIRE[cls])), cls)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    node=valid_ids,
    state=st.sampled_from(NodeStatus.STATES),
    datasets=st.lists(st.text(max_size=10), max_size=3),
    session=nonneg,
    running=st.none() | st.text(max_size=20),
    rejected=st.dictionaries(st.text(max_size=8), st.integers(-(2**40), 2**40), max_size=3),
    agent=st.text(max_size=20),
)
def test_node_status_round_trip_property(node, state, datasets, session, running, rejected, agent):
    """Any valid NodeStatus round-trips through its JSON form."""
    message = NodeStatus(node, state, datasets, session, running, rejected, agent)
    payload = message.to_bytes()
    strict_json(payload)
    assert NodeStatus.parse(payload) == message


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    swarm=valid_ids,
    state=st.sampled_from(SwarmState.STATES),
    nums=st.tuples(nonneg, nonneg, nonneg),
    metrics=st.dictionaries(st.text(max_size=8), finite, max_size=3),
    texts=st.tuples(st.text(max_size=10), st.text(max_size=10), st.text(max_size=10)),
)
def test_swarm_state_round_trip_property(swarm, state, nums, metrics, texts):
    """Any valid SwarmState with finite metrics round-trips through its JSON form."""
    message = SwarmState(swarm, texts[0], state, nums[0], texts[1], nums[1], nums[2], metrics, texts[2])
    payload = message.to_bytes()
    strict_json(payload)
    assert SwarmState.parse(payload) == message


values = st.binary(max_size=20) | st.builds(BlobRef, shas, nonneg)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=st.tuples(valid_ids, valid_ids, valid_ids),
    nums=st.tuples(nonneg, nonneg),
    status=st.sampled_from(ResultEnvelope.STATUSES),
    results=st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=3),
    globals_=st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=3),
    schedule=st.lists(st.tuples(st.text(max_size=8), st.lists(valid_ids, max_size=3)), max_size=3),
    stop=st.booleans(),
    error=st.text(max_size=20),
    duration=st.floats(min_value=0, max_value=1e9),
)
def test_result_envelope_round_trip_property(ids, nums, status, results, globals_, schedule, stop, error, duration):
    """Any valid ResultEnvelope (inline and referenced values, schedule entries) round-trips."""
    message = ResultEnvelope(
        ids[0], nums[0], ids[1], ids[2], nums[1], status, results, globals_, schedule, stop, error, duration
    )
    assert ResultEnvelope.parse(message.to_bytes()) == message


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=st.tuples(valid_ids, valid_ids),
    nums=st.tuples(nonneg, nonneg),
    code=st.builds(CodeRef, shas, st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)),
    globals_=st.dictionaries(st.text(max_size=8), shas, max_size=3),
    datasets=st.lists(st.text(max_size=8), max_size=3),
    timeout=st.floats(min_value=0.001, max_value=7 * 24 * 3600),
)
def test_assignment_round_trip_property(ids, nums, code, globals_, datasets, timeout):
    """Any valid Assignment round-trips."""
    message = Assignment(ids[0], nums[0], ids[1], nums[1], code, globals_, datasets, timeout)
    assert Assignment.parse(message.to_bytes()) == message


@settings(max_examples=30, deadline=None)
@given(sha=shas, chunk_size=st.integers(MIN_CHUNK_SIZE, 2**32), data=st.data())
def test_blob_messages_round_trip_property(sha, chunk_size, data):
    """Any valid BlobMeta and Chunk round-trip."""
    size = data.draw(st.integers(0, 2**40))
    info = BlobInfo(sha, size, chunk_size)
    inline = data.draw(st.none() | st.binary(min_size=size, max_size=size)) if size <= 64 else None
    assert BlobMeta.parse(BlobMeta(info, inline).to_bytes()) == BlobMeta(info, inline)
    index = data.draw(st.integers(0, info.count - 1))
    chunk = Chunk(info, index, data.draw(st.binary(max_size=16)))
    assert Chunk.parse(chunk.to_bytes()) == chunk


# --- invalid messages --------------------------------------------------------------------------

INVALID_COMMON = [
    (("v",), 2),
    (("v",), 0),
    (("v",), "1"),
    (("v",), None),
    (("v",), [1]),
    (("v",), DELETE),
]

INVALID = {
    NodeStatus: [
        (("node",), DELETE),
        (("node",), "a/b"),
        (("node",), "+"),
        (("node",), ""),
        (("node",), "x" * 65),
        (("node",), "n\u00f6de"),
        (("node",), 5),
        (("node",), None),
        (("state",), DELETE),
        (("state",), "sleeping"),
        (("state",), "ONLINE"),
        (("state",), 1),
        (("datasets",), "mnist"),
        (("datasets",), [1]),
        (("datasets",), {"a": 1}),
        (("session",), -1),
        (("session",), "5"),
        (("session",), True),
        (("session",), 1.5),
        (("running",), 5),
        (("running",), ["x"]),
        (("rejected",), [1]),
        (("rejected",), "x"),
        (("agent",), 5),
        (("agent",), None),
    ],
    SwarmState: [
        (("swarm",), DELETE),
        (("swarm",), "a#b"),
        (("swarm",), ""),
        (("state",), DELETE),
        (("state",), "paused"),
        (("state",), None),
        (("iteration",), "3"),
        (("iteration",), True),
        (("iteration",), False),
        (("iteration",), -1),
        (("iteration",), 1.0),
        (("done",), -1),
        (("done",), "1"),
        (("expected",), -5),
        (("expected",), None),
        (("name",), 5),
        (("step",), 5),
        (("reason",), []),
        (("metrics",), []),
        (("metrics",), "loss"),
    ],
    BlobMeta: [
        (("sha",), DELETE),
        (("sha",), SHA.upper()),
        (("sha",), SHA[:-1]),
        (("sha",), SHA + "0"),
        (("sha",), "g" * 64),
        (("sha",), SHA.encode()),
        (("sha",), 5),
        (("size",), DELETE),
        (("size",), -1),
        (("size",), "4"),
        (("size",), True),
        (("size",), 4.0),
        (("size",), 5),  # does not match the inline bytes
        (("chunk_size",), DELETE),
        (("chunk_size",), 0),
        (("chunk_size",), -MIN_CHUNK_SIZE),
        (("chunk_size",), MIN_CHUNK_SIZE - 1),
        (("chunk_size",), "1024"),
        (("inline",), "abcd"),
        (("inline",), [97, 98, 99, 100]),
        (("inline",), b"abc"),
        (("inline",), 4),
    ],
    Chunk: [
        (("sha",), DELETE),
        (("sha",), "z" * 64),
        (("size",), DELETE),
        (("size",), -1),
        (("chunk_size",), MIN_CHUNK_SIZE - 1),
        (("chunk_size",), False),
        (("index",), DELETE),
        (("index",), -1),
        (("index",), 4),  # count is 4
        (("index",), 10**6),
        (("index",), "0"),
        (("index",), True),
        (("index",), 1.0),
        (("data",), DELETE),
        (("data",), "12345"),
        (("data",), None),
        (("data",), [1, 2]),
    ],
    Assignment: [
        (("swarm",), DELETE),
        (("swarm",), "a/b"),
        (("swarm",), 7),
        (("iteration",), DELETE),
        (("iteration",), "3"),
        (("iteration",), True),
        (("iteration",), -1),
        (("iteration",), 3.0),
        (("task",), DELETE),
        (("task",), "a b"),
        (("task",), "#"),
        (("attempt",), -1),
        (("attempt",), "1"),
        (("code",), DELETE),
        (("code",), "worker_task"),
        (("code",), [SHA2, "worker_task"]),
        (("code", "sha"), DELETE),
        (("code", "sha"), "nope"),
        (("code", "entry"), DELETE),
        (("code", "entry"), "not-an-identifier"),
        (("code", "entry"), "os.system"),
        (("code", "entry"), ""),
        (("code", "entry"), 5),
        (("globals",), DELETE),
        (("globals",), [SHA]),
        (("globals", "weights"), "not-a-sha"),
        (("globals", "weights"), None),
        (("globals", 7), SHA),
        (("datasets",), "mnist"),
        (("datasets",), [None]),
        (("timeout",), DELETE),
        (("timeout",), 0),
        (("timeout",), -1.0),
        (("timeout",), 7 * 24 * 3600 + 1),
        (("timeout",), math.nan),
        (("timeout",), math.inf),
        (("timeout",), "60"),
        (("timeout",), None),
    ],
    ResultEnvelope: [
        (("swarm",), DELETE),
        (("swarm",), ".x"),
        (("node",), DELETE),
        (("node",), "a+b"),
        (("task",), "t/u"),
        (("iteration",), DELETE),
        (("iteration",), "3"),
        (("iteration",), True),
        (("iteration",), -2),
        (("attempt",), -1),
        (("attempt",), False),
        (("status",), DELETE),
        (("status",), "maybe"),
        (("status",), "OK"),
        (("status",), 1),
        (("results",), []),
        (("results",), b"x"),
        (("results", "n"), 5),
        (("results", "n"), "inline as str"),
        (("results", "n"), None),
        (("results", "weights", "blob"), DELETE),
        (("results", "weights", "blob"), "bad"),
        (("results", "weights", "size"), DELETE),
        (("results", "weights", "size"), -1),
        (("results", "weights", "size"), "10"),
        (("results", "weights", "size"), True),
        (("results", ""), b"x"),
        (("results", 5), b"x"),
        (("globals",), "x"),
        (("globals", "lr"), 0.01),
        (("globals", "big", "blob"), SHA3.upper()),
        (("schedule",), "worker"),
        (("schedule",), {"worker": []}),
        (("schedule", 0), "worker"),
        (("schedule", 0), ["worker"]),
        (("schedule", 0), ["worker", ["a"], "extra"]),
        (("schedule", 0), [5, ["a"]]),
        (("schedule", 0), ["worker", "edge-01"]),
        (("schedule", 0), ["worker", [1]]),
        (("stop",), 1),
        (("stop",), "yes"),
        (("stop",), None),
        (("error",), 5),
        (("error",), None),
        (("duration",), "1.5"),
        (("duration",), None),
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
        {"v": st.just(1)},
        optional={k: st.just(v) | random_value for k, v in base.items() if k != "v"},
    )
    parse_or_protocol_error(cls, encode_for(cls, data.draw(fields)))


# --- bugs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
def test_version_true_is_refused(cls):
    """A boolean is not schema version 1."""
    with pytest.raises(ProtocolError):
        cls.parse(encode_for(cls, {**WIRE[cls], "v": True}))


@pytest.mark.parametrize("cls", [BlobMeta, Chunk, Assignment, ResultEnvelope], ids=lambda c: c.__name__)
def test_version_array_raises_protocol_error(cls):
    """An ndarray as schema version is refused with ProtocolError."""
    with pytest.raises(ProtocolError):
        cls.parse(codec.encode({**WIRE[cls], "v": np.array([1, 1])}))


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
    for cls in (BlobMeta, Chunk, Assignment, ResultEnvelope):
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
