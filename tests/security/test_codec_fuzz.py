"""Fuzzing every entry point for bytes off the network: ``codec.decode`` and each message's ``parse``.

Random bytes, mutations of valid messages, and valid shapes with hostile field values: each call
returns or raises ``CodecError`` / ``ProtocolError``, nothing else, and what it returns is no larger
than its input allows (a decoded array never holds more elements or bytes than the input has).
"""

from __future__ import annotations

import json
import struct
import tracemalloc
from typing import Any

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manta_mqtt.protocol import codec
from manta_mqtt.protocol.chunking import BlobInfo
from manta_mqtt.protocol.codec import NDARRAY_EXT, CodecError
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
PARSERS = (NodeStatus, SwarmState, Discover, BlobRequest, Chunk, Assignment, ResultEnvelope)
JSON_PARSERS = (NodeStatus, SwarmState, Discover)
VALID = {
    NodeStatus: NodeStatus(
        "n1", "busy", ["d.npz"], 17, "sw/1/worker", {"malformed": 2}, "agent", link=2, server="h:1883"
    ).to_bytes(),
    SwarmState: SwarmState("sw", "fl", "running", 3, "worker", 2, 3, {"acc": 0.9}, "").to_bytes(),
    Discover: Discover("coordinator-sw").to_bytes(),
    BlobRequest: BlobRequest("sw", "n1", SHA, 8, 8).to_bytes(),
    Chunk: Chunk(BlobInfo(SHA, 3000, 1024), 2, b"x" * 952).to_bytes(),
    Assignment: Assignment("sw", 3, "worker", 1, CodeRef(SHA, "worker"), {"hp": SHA}, ["d"], 300.0).to_bytes(),
    ResultEnvelope: ResultEnvelope(
        "sw",
        3,
        "worker",
        "n1",
        0,
        "ok",
        {"m": codec.encode(np.arange(4)), "big": BlobRef(SHA, 9)},
        {"g": b"\x01"},
        [("worker", ["n1"])],
        False,
        "",
        1.5,
    ).to_bytes(),
}
FIELDS = {cls: sorted(json.loads(raw) if cls in JSON_PARSERS else msgpack.unpackb(raw)) for cls, raw in VALID.items()}

ARRAY_DESCRS = [b"|S0", b"<U0", b"|V0", b"<f8", b"|u1", b"|S3", b"<U2", b"|b1", b"<M8[s]", b"O", b"(2,)<i4", b"<i4,<f4"]


def walk(value: Any) -> list[Any]:
    """Every value nested in ``value`` (lists, maps, dataclass fields), itself included."""
    out, todo = [], [value]
    while todo:
        item = todo.pop()
        out.append(item)
        if isinstance(item, dict):
            todo += list(item.keys()) + list(item.values())
        elif isinstance(item, (list, tuple)):
            todo += list(item)
        elif hasattr(item, "__dataclass_fields__"):
            todo += [getattr(item, name) for name in item.__dataclass_fields__]
    return out


def check_bounded(result: Any, size: int) -> None:
    for item in walk(result):
        if isinstance(item, np.ndarray):
            assert item.size <= size and item.nbytes <= size, (item.dtype, item.shape)
        elif isinstance(item, (bytes, str)):
            assert len(item) <= size


def decode_checked(data: bytes) -> None:
    try:
        result = codec.decode(data)
    except CodecError:
        return
    check_bounded(result, len(data))


def parse_checked(cls: Any, data: bytes) -> None:
    try:
        message = cls.parse(data)
    except ProtocolError:
        return
    assert isinstance(message, cls)
    check_bounded(message, len(data))


# --- strategies ----------------------------------------------------------------------------------

shapes = st.lists(
    st.one_of(st.integers(0, 4), st.sampled_from([2**15, 2**30, 2**32, 2**62, 2**63, 2**64 - 1])), max_size=4
)


@st.composite
def ndarray_exts(draw: st.DrawFn) -> msgpack.ExtType:
    """Array extensions with a plausible header and a raw part of any length."""
    descr = draw(st.sampled_from(ARRAY_DESCRS) | st.binary(max_size=8))
    shape = draw(shapes)
    ndim = draw(st.sampled_from([len(shape), len(shape), 33, 255])) if shape else len(shape)
    header = struct.pack(f"<B{len(descr)}sB", len(descr), descr, ndim & 0xFF) + b"".join(
        struct.pack("<Q", d) for d in shape
    )
    return msgpack.ExtType(NDARRAY_EXT, header + draw(st.binary(max_size=24)))


hostile = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=80)
    | st.binary(max_size=64)
    | st.sampled_from([SHA, "sw", "n1", "worker", "ok", "online", "running", 1024, 2**40, -1, 1, 0])
    | ndarray_exts(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.sampled_from([SHA]), inner, max_size=4)
    ),
    max_leaves=12,
)


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(buf) - 1)))
        if kind == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and buf:
            buf[pos] = draw(st.sampled_from([0x00, 0xFF, 0xC1, 0xC7, 0xC8, 0xC9, 0xDC, 0xDD, 0xDE, 0xDF, 0xD4, 0x7F]))
        elif kind == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete" and buf:
            del buf[pos : pos + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del buf[pos:]
    return bytes(buf)


# --- the fuzz ------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    decode_checked(data)
    for cls in PARSERS:
        parse_checked(cls, data)


@settings(max_examples=500, deadline=None)
@given(cls=st.sampled_from(PARSERS), data=st.data())
def test_mutated_valid_messages(cls: Any, data: st.DataObject) -> None:
    payload = mutate(VALID[cls], data.draw)
    decode_checked(payload)
    parse_checked(cls, payload)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from(PARSERS), data=st.data())
def test_well_formed_messages_with_hostile_fields(cls: Any, data: st.DataObject) -> None:
    """Every field present, any of them replaced by anything msgpack (or JSON) can carry."""
    if cls in JSON_PARSERS:
        fields = json.loads(VALID[cls])
        for name in data.draw(st.lists(st.sampled_from(FIELDS[cls]), max_size=3)):
            fields[name] = data.draw(
                hostile.filter(lambda v: not isinstance(v, (bytes, msgpack.ExtType))) | st.just({})
            )
        try:
            payload = json.dumps(fields).encode()
        except (TypeError, ValueError):
            return
    else:
        fields = msgpack.unpackb(VALID[cls])
        for name in data.draw(st.lists(st.sampled_from(FIELDS[cls]), max_size=3)):
            fields[name] = data.draw(hostile)
        try:
            payload = msgpack.packb(fields)
        except (TypeError, ValueError, OverflowError):
            return
    parse_checked(cls, payload)


@settings(max_examples=300, deadline=None)
@given(ext=ndarray_exts())
def test_array_extensions_never_allocate_beyond_their_bytes(ext: msgpack.ExtType) -> None:
    """The decode bomb, generalized: memory kept by a decoded array is bounded by its input."""
    payload = msgpack.packb([ext])
    tracemalloc.start()
    try:
        try:
            result = codec.decode(payload)
        except CodecError:
            result = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 + 16 * len(payload)
    check_bounded(result, len(payload))
