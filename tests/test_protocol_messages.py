"""Typed messages of protocol v2: round-trips (the base messages and wire maps here are shared with
test_protocol_messages_invalid.py, which checks that parse raises only ProtocolError)."""

from __future__ import annotations

import copy
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manta_mqtt.protocol import codec
from manta_mqtt.protocol.chunking import MIN_CHUNK_SIZE, BlobInfo, split
from manta_mqtt.protocol.limits import MAX_CHUNK_INDEX
from manta_mqtt.protocol.messages import (
    Assignment,
    BlobRef,
    BlobRequest,
    Chunk,
    CodeRef,
    Discover,
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
valid_ids = st.builds(str.__add__, st.sampled_from(_ALNUM), st.text(_ALNUM + "_-", max_size=63))
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
    NodeStatus: {"v": 2, **json.loads(NODE_STATUS.to_bytes())},
    SwarmState: {"v": 2, **json.loads(SWARM_STATE.to_bytes())},
    Discover: {"v": 2, "from": "coordinator-fl-mnist"},
    BlobRequest: {"v": 2, "swarm": "fl-mnist", "node": "edge-01", "sha": SHA, "first": 8, "count": 8},
    Chunk: {"v": 2, "sha": SHA, "size": INFO.size, "chunk_size": INFO.chunk_size, "index": 3, "data": b"12345"},
    Assignment: codec.decode(ASSIGNMENT.to_bytes()),
    ResultEnvelope: codec.decode(RESULT.to_bytes()),
}
JSON_MESSAGES = (NodeStatus, SwarmState, Discover)
ALL_MESSAGES = (NodeStatus, SwarmState, Discover, BlobRequest, Chunk, Assignment, ResultEnvelope)


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
        NodeStatus("n", "online", link=3, server="[::1]:1883"),
        Discover("coordinator-fl-mnist"),
        Discover(""),
        BlobRequest("fl-mnist", "edge-01", SHA, 8, 8),
        BlobRequest("s", "n", SHA, 0, 1),
        BlobRequest("s", "n", SHA, MAX_CHUNK_INDEX, 1),
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
    assert NodeStatus.parse(b'{"v": 2, "node": "n", "state": "online"}') == NodeStatus("n", "online")
    assert SwarmState.parse(b'{"v": 2, "swarm": "s", "state": "stopped"}') == SwarmState("s", "", "stopped")
    assert Discover.parse(b'{"v": 2}') == Discover("")
    minimal = {k: WIRE[ResultEnvelope][k] for k in ("v", "swarm", "iteration", "task", "node", "status")}
    parsed = ResultEnvelope.parse(codec.encode(minimal))
    assert (parsed.results, parsed.global_writes, parsed.schedule, parsed.stop, parsed.attempt) == (
        {},
        {},
        [],
        False,
        0,
    )


@pytest.mark.parametrize("message", [NODE_STATUS, NodeStatus("n", "offline"), SWARM_STATE, Discover("c")], ids=repr)
def test_status_messages_are_json_text(message):
    """Status messages (and requests for them) are plain UTF-8 JSON objects carrying "v": 2
    (readable by mosquitto_sub)."""
    payload = message.to_bytes()
    data = strict_json(payload)
    assert isinstance(data, dict)
    assert data["v"] == 2
    assert payload.isascii()
    assert "\n" not in payload.decode()


def test_data_messages_are_msgpack_maps_with_version():
    """Data messages are msgpack maps carrying "v": 2."""
    for message in (BlobRequest("s", "n", SHA, 0, 8), Chunk(INFO, 3, b"12345"), ASSIGNMENT, RESULT):
        data = codec.decode(message.to_bytes())
        assert isinstance(data, dict)
        assert data["v"] == 2


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
@given(ids=st.tuples(valid_ids, valid_ids), sha=shas, chunk_size=st.integers(MIN_CHUNK_SIZE, 2**32), data=st.data())
def test_blob_messages_round_trip_property(ids, sha, chunk_size, data):
    """Any valid BlobRequest and Chunk round-trip."""
    first = data.draw(st.integers(0, MAX_CHUNK_INDEX))
    request = BlobRequest(ids[0], ids[1], sha, first, data.draw(st.integers(1, MAX_CHUNK_INDEX + 1 - first)))
    assert BlobRequest.parse(request.to_bytes()) == request
    info = BlobInfo(sha, data.draw(st.integers(0, 2**40)), chunk_size)
    index = data.draw(st.integers(0, info.count - 1))
    chunk = Chunk(info, index, data.draw(st.binary(max_size=16)))
    assert Chunk.parse(chunk.to_bytes()) == chunk
