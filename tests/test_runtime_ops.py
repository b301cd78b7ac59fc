"""The channel's operations, defined once in runtime/ops.py: the bytes on the wire are the literal
strings tasks and hosts have always exchanged, and serve() answers anything else with an error.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from manta_mqtt.protocol import codec
from manta_mqtt.runtime.channel import Buffer, Channel, Frame
from manta_mqtt.runtime.client import TaskClient
from manta_mqtt.runtime.host import serve
from manta_mqtt.runtime.ops import ErrorKind, Op
from manta_mqtt.runtime.world import World

from .payloads import CannedPayload
from .test_runtime_executor import MemoryHost

WIRE_OPS = [
    "hello",
    "global_get",
    "global_set",
    "result_add",
    "result_select",
    "result_nodes",
    "result_get",
    "schedule",
    "stop",
    "done",
    "failed",
    "run",
]


def test_op_values_are_the_wire_strings() -> None:
    assert [op.value for op in Op] == WIRE_OPS
    assert [kind.value for kind in ErrorKind] == ["KeyError", "RuntimeError"]
    assert [op for op in Op if op.final] == [Op.DONE, Op.FAILED]


@pytest.mark.parametrize("value", ["nope", "", "DONE", "Op.DONE", None, 3, ["done"], {"op": "done"}, b"done"])
def test_parse_refuses_anything_else(value: Any) -> None:
    assert Op.parse(value) is None


def test_parse_accepts_every_wire_string() -> None:
    assert [Op.parse(text) for text in WIRE_OPS] == list(Op)


class RecordingChannel(Channel):
    """Records what the task side sends (message, payload); answers every request with a canned
    reply and the value 1 as its payload."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, bytes]] = []

    def send(self, message: Any, payload: Sequence[Buffer] = ()) -> None:
        self.sent.append((message, b"".join(payload)))

    def recv(self) -> Frame:
        reply = {"ok": True, "context": {"iteration": 1}, "values": {}, "nodes": ["n"]}
        return Frame(reply, CannedPayload(codec.encode(1)))


def test_task_side_frames_are_unchanged() -> None:
    """Every request the manta_light API sends encodes to the same bytes as the literal dicts."""
    channel = RecordingChannel()
    client = TaskClient(channel)
    world = World(client)
    assert world.iteration == 1
    world.globals["g"]
    world.globals["g"] = 2
    world.results.add("r", 3)
    world.results.select("r")
    world.schedule_next_iter(["a"], "worker")
    world.stop_swarm()
    client.finish(Op.FAILED, traceback="tb")
    client.finish(Op.DONE)
    expected = [
        ({"op": "hello"}, b""),
        ({"op": "global_get", "tag": "g"}, b""),
        ({"op": "global_set", "tag": "g"}, codec.encode(2)),  # the value is the frame's payload
        ({"op": "result_add", "tag": "r"}, codec.encode(3)),
        ({"op": "result_nodes", "tag": "r"}, b""),  # select() reads one node per request
        ({"op": "result_get", "tag": "r", "node": "n"}, b""),
        ({"op": "schedule", "node_ids": ["a"], "alias": "worker"}, b""),
        ({"op": "stop"}, b""),
        ({"op": "failed", "traceback": "tb"}, b""),
        ({"op": "done"}, b""),
    ]
    assert [(codec.encode(m), p) for m, p in channel.sent] == [(codec.encode(m), p) for m, p in expected]
    assert all(type(message["op"]) is str for message, _ in channel.sent)


class BuggyHost(MemoryHost):
    def stop_swarm(self) -> None:
        raise ZeroDivisionError("host bug")


Served = tuple[socket.socket, threading.Thread, list[Any]]


@pytest.fixture
def served() -> Iterator[Served]:
    """A socket speaking to serve() on a thread; the list gets serve()'s return value."""
    task_end, host_end = socket.socketpair()
    returned: list[Any] = []
    thread = threading.Thread(target=lambda: returned.append(serve(Channel(host_end), BuggyHost())), daemon=True)
    thread.start()
    yield task_end, thread, returned
    task_end.close()
    thread.join(5)
    host_end.close()


def _exchange(sock: socket.socket, request: Any, payload: bytes = b"") -> tuple[bytes, bytes]:
    """Send one frame; the raw bytes of the reply's message and of its payload."""
    data = codec.encode(request)
    sock.sendall(struct.pack(">II", len(data), len(payload)) + data + payload)
    size, payload_size = struct.unpack(">II", sock.recv(8, socket.MSG_WAITALL))
    return sock.recv(size, socket.MSG_WAITALL), sock.recv(payload_size, socket.MSG_WAITALL) if payload_size else b""


NO_VALUE = {"ok": False, "error": "the value must come as the frame's payload", "kind": "RuntimeError"}


@pytest.mark.parametrize(
    ("request_", "payload", "reply", "value"),
    [
        ({"op": "global_get", "tag": "x"}, b"", {"ok": True}, codec.encode(41)),
        ({"op": "global_set", "tag": "x"}, b"v", {"ok": True}, b""),
        ({"op": "global_set", "tag": "x", "value": b"v"}, b"", NO_VALUE, b""),  # the old frame: refused
        ({"op": "result_add", "tag": "x"}, b"", NO_VALUE, b""),
        ({"op": "result_get", "tag": "m", "node": "peer"}, b"", {"ok": True}, codec.encode({"acc": 0.5})),
        ({"op": "hello"}, b"ignored", {"ok": True, "context": MemoryHost().context()}, b""),
    ],
)
def test_values_travel_as_payloads(
    served: Served, request_: Any, payload: bytes, reply: dict[str, Any], value: bytes
) -> None:
    """A value crosses beside the message, both ways; a payload where none is wanted is skipped."""
    sock, thread, _ = served
    assert _exchange(sock, request_, payload) == (codec.encode(reply), value)
    assert codec.decode(_exchange(sock, {"op": "hello"})[0])["ok"] is True
    assert thread.is_alive()


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        ({"op": "hello"}, {"ok": True, "context": MemoryHost().context()}),
        ({"op": "global_get", "tag": "nope"}, {"ok": False, "error": "unknown global 'nope'", "kind": "KeyError"}),
        ({"op": "result_select", "tag": "m"}, {"ok": True, "values": {"peer": codec.encode({"acc": 0.5})}}),
        ({"op": "result_nodes", "tag": "m"}, {"ok": True, "nodes": ["peer"]}),
        (
            {"op": "result_get", "tag": "m", "node": "ghost"},
            {"ok": False, "error": "no result 'm' from node 'ghost'", "kind": "KeyError"},
        ),
        (
            {"op": "schedule", "node_ids": "a", "alias": "w"},
            {"ok": False, "error": "node_ids must be a list of strings", "kind": "RuntimeError"},
        ),
        ({"op": "stop"}, {"ok": False, "error": "ZeroDivisionError: host bug", "kind": "RuntimeError"}),
        ({"op": "frobnicate"}, {"ok": False, "error": "unknown request 'frobnicate'", "kind": "RuntimeError"}),
        ({"op": ["done"]}, {"ok": False, "error": "unknown request ['done']", "kind": "RuntimeError"}),
        ({"tag": "x"}, {"ok": False, "error": "unknown request None", "kind": "RuntimeError"}),
    ],
)
def test_replies_on_the_wire(served: Served, request_: Any, reply: dict[str, Any]) -> None:
    """Each reply is byte for byte the one hosts have always sent; a bad request never ends serve()."""
    sock, thread, _ = served
    assert _exchange(sock, request_) == (codec.encode(reply), b"")
    assert codec.decode(_exchange(sock, {"op": "hello"})[0])["ok"] is True
    assert thread.is_alive()


@pytest.mark.parametrize("final", [{"op": "done"}, {"op": "failed", "traceback": "tb"}])
def test_final_frame_ends_serve(served: Served, final: dict[str, Any]) -> None:
    """The final frame gets no reply: serve() returns it as it came."""
    sock, thread, returned = served
    data = codec.encode(final)
    sock.sendall(struct.pack(">II", len(data), 0) + data)
    thread.join(5)
    assert returned == [final]


def test_client_raises_the_kind_it_is_told() -> None:
    """A KeyError reply raises KeyError in the task; every other refusal raises RuntimeError."""

    class Replying(RecordingChannel):
        def recv(self) -> Frame:
            tag = self.sent[-1][0]["tag"]
            return Frame({"ok": False, "error": f"no {tag}", "kind": tag}, CannedPayload(b""))

    client = TaskClient(Replying())
    with pytest.raises(KeyError, match="no KeyError"):
        client.request(Op.GLOBAL_GET, tag=ErrorKind.KEY_ERROR.value)
    with pytest.raises(RuntimeError, match="no RuntimeError"):
        client.request(Op.GLOBAL_GET, tag=ErrorKind.RUNTIME_ERROR.value)
    with pytest.raises(RuntimeError, match="no other"):
        client.request(Op.GLOBAL_GET, tag="other")
