"""The task-host channel: values cross as payloads beside the message, sent from pieces or files
and received whole or streamed, so a large model is never copied into an encoded frame."""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import threading
import tracemalloc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_node.host import EdgeHost
from manta_mqtt.blobstore import PARTIAL_DIR, BlobStore
from manta_mqtt.protocol import codec
from manta_mqtt.protocol.messages import Assignment, CodeRef
from manta_mqtt.runtime.channel import Channel

MIB = 1 << 20


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    a, b = socket.socketpair()
    yield Channel(a), Channel(b)
    a.close()
    b.close()


def _in_thread(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


VALUES: list[Any] = [
    5,
    None,
    {"w": np.arange(100_000, dtype=np.float32), "b": np.float32(3), "n": [1, (2, np.zeros((300, 300)))]},
    [np.ones(20_000), b"x" * 10, "text", {"deep": {"er": {"still": np.ones((2, 70_000), np.int8)[:, ::2]}}}],
    {"small": np.arange(3), "empty": np.zeros(0), "bool": np.ones(100_000, bool)},
    np.ones((64, 64, 64), np.float64).T,  # not contiguous: copied once, still the same bytes
]


@pytest.mark.parametrize("value", VALUES)
def test_encode_parts_joined_are_the_encoding(value: Any) -> None:
    assert b"".join(codec.encode_parts(value)) == codec.encode(value)


def test_encode_parts_holds_large_arrays_as_views() -> None:
    """A 32 MiB model costs pieces of a few bytes each, plus views of its arrays' own memory."""
    model = {f"layer{i}": np.full(2 * MIB, i, np.float32) for i in range(4)}
    tracemalloc.start()
    try:
        parts = codec.encode_parts(model)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MIB  # the packer's own buffer; a copy of the model would be 32 MiB
    views = [part for part in parts if isinstance(part, memoryview)]
    assert [view.nbytes for view in views] == [8 * MIB] * 4
    assert codec.decode(b"".join(parts))["layer3"][7] == 3


def test_encode_parts_lets_the_model_go_at_once() -> None:
    """No reference cycle holds the pieces: a model sent is freed when the caller drops it, not
    when the garbage collector next runs (a recursive closure once kept every global an
    aggregator set alive, 100 MiB a round)."""
    model: dict[str, Any] = {"layer": np.ones(MIB, np.float32), "nested": [{"deep": np.ones(MIB, np.float32)}]}
    refs = [weakref.ref(model["layer"]), weakref.ref(model["nested"][0]["deep"])]
    gc.disable()
    try:
        parts = codec.encode_parts(model)
        del parts, model
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


def test_encode_parts_refuses_what_encode_refuses() -> None:
    with pytest.raises(codec.CodecError):
        codec.encode_parts({"a": [object()]})
    with pytest.raises(codec.CodecError):
        codec.encode_parts({"a": np.ones(100_000, dtype=[("x", "f4")])})


def test_message_and_payload_round_trip(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    value = {"model": np.arange(MIB, dtype=np.float32)}
    sender = _in_thread(lambda: left.send({"op": "global_set", "tag": "m"}, codec.encode_parts(value)))
    message, payload = right.recv()
    assert message == {"op": "global_set", "tag": "m"}
    data = payload.read()
    sender.join(5)
    assert data == codec.encode(value)
    assert (codec.decode(data)["model"] == value["model"]).all()


def test_a_payload_streams_in_pieces(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    data = os.urandom(3 * MIB + 5)
    sender = _in_thread(lambda: left.send({"op": "x"}, [data[:10], memoryview(data)[10:]]))
    _, payload = right.recv()
    sizes, digest = [], hashlib.sha256()
    for piece in payload.chunks():
        sizes.append(len(piece))
        digest.update(piece)
    sender.join(5)
    assert sizes == [MIB, MIB, MIB, 5]
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_an_unread_payload_is_skipped_by_the_next_recv(pair: tuple[Channel, Channel]) -> None:
    left, right = pair

    def send() -> None:
        left.send({"n": 1}, [os.urandom(2 * MIB)])
        left.send({"n": 2}, [b"second"])

    sender = _in_thread(send)
    assert right.recv().message == {"n": 1}
    second = right.recv()
    sender.join(5)
    assert second.message == {"n": 2}
    assert second.payload.read() == b"second"


def test_a_file_is_sent_as_the_payload(pair: tuple[Channel, Channel], tmp_path: Path) -> None:
    left, right = pair
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(MIB + 1))
    sender = _in_thread(lambda: left.send_file({"ok": True}, path))
    message, payload = right.recv()
    assert message == {"ok": True}
    assert payload.read() == path.read_bytes()
    sender.join(5)


@pytest.mark.parametrize("sizes", [(100, 0), (10, 100)])
def test_oversized_lengths_are_refused_before_reading(sizes: tuple[int, int]) -> None:
    """A task is untrusted: a header declaring more than the bound is an error, not an allocation."""
    a, b = socket.socketpair()
    with a, b:
        a.sendall(sizes[0].to_bytes(4, "big") + sizes[1].to_bytes(4, "big"))
        with pytest.raises(codec.CodecError, match="exceeds 50"):
            Channel(b, max_frame=50, max_payload=50).recv()


def test_a_streamed_payload_reaches_the_store_without_a_whole_copy(
    pair: tuple[Channel, Channel], tmp_path: Path
) -> None:
    """What the coordinator does with a 40 MiB global: chunks to a spool file, hashed on the way."""
    left, right = pair
    store = BlobStore(tmp_path / "blobs")
    data = os.urandom(40 * MIB)
    sender = _in_thread(lambda: left.send({"op": "global_set"}, [memoryview(data)]))
    tracemalloc.start()
    try:
        sha = store.put_stream(right.recv().payload.chunks())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    sender.join(5)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.path(sha).read_bytes() == data
    assert peak < 4 * MIB


def test_a_stream_that_breaks_leaves_no_partial_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")

    def pieces() -> Iterator[bytes]:
        yield os.urandom(MIB)  # past the spool's memory: a temp file exists now
        raise ConnectionError("the task died")

    with pytest.raises(ConnectionError):
        store.put_stream(pieces())
    assert list((tmp_path / "blobs" / PARTIAL_DIR).iterdir()) == []


def test_the_edge_host_streams_a_large_value_into_its_cache(pair: tuple[Channel, Channel], tmp_path: Path) -> None:
    """On a node, a result past the inline limit goes to the blob cache as it arrives (to be
    uploaded from there); a small one stays bytes, to travel inside the envelope."""
    left, right = pair
    cache = BlobStore(tmp_path / "cache")
    assignment = Assignment("sw", 0, "worker", 0, CodeRef("ab" * 32, "worker"), {}, [], 60.0)
    host = EdgeHost("n1", assignment, cache, {}, inline_limit=1024)
    big, small = os.urandom(24 * MIB), b"\x01" * 1024
    sender = _in_thread(lambda: [left.send({}, [data]) for data in (big, small)])
    tracemalloc.start()
    try:
        host.add_result("model", right.recv().payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    host.add_result("metrics", right.recv().payload)
    sender.join(5)
    stored = host.results["model"]
    assert isinstance(stored, Path) and stored.read_bytes() == big
    assert stored == cache.path(hashlib.sha256(big).hexdigest())
    assert host.results["metrics"] == small
    assert peak < 4 * MIB
