"""The channel's operations, defined once in runtime/ops.py: the bytes on the wire are the literal
strings tasks and hosts have always exchanged, and serve() answers anything else with an error.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from manta_mqtt.protocol import codec
from manta_mqtt.runtime.channel import Channel
from manta_mqtt.runtime.client import TaskClient
from manta_mqtt.runtime.host import serve
from manta_mqtt.runtime.ops import ErrorKind, Op
from manta_mqtt.runtime.world import World

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
    """Records what the task side sends; answers every request with a canned reply."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, message: Any) -> None:
        self.sent.append(message)

    def recv(self) -> Any:
        return {"ok": True, "context": {"iteration": 1}, "value": codec.encode(1), "values": {}, "nodes": ["n"]}


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
        {"op": "hello"},
        {"op": "global_get", "tag": "g"},
        {"op": "global_set", "tag": "g", "value": codec.encode(2)},
        {"op": "result_add", "tag": "r", "value": codec.encode(3)},
        {"op": "result_nodes", "tag": "r"},  # select() reads one node per request
        {"op": "result_get", "tag": "r", "node": "n"},
        {"op": "schedule", "node_ids": ["a"], "alias": "worker"},
        {"op": "stop"},
        {"op": "failed", "traceback": "tb"},
        {"op": "done"},
    ]
    assert [codec.encode(message) for message in channel.sent] == [codec.encode(message) for message in expected]
    assert all(type(message["op"]) is str for message in channel.sent)


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


def _exchange(sock: socket.socket, request: Any) -> bytes:
    """Send one frame, return the raw bytes of the reply frame (its header stripped)."""
    data = codec.encode(request)
    sock.sendall(struct.pack(">I", len(data)) + data)
    (size,) = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))
    return sock.recv(size, socket.MSG_WAITALL)


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        ({"op": "hello"}, {"ok": True, "context": MemoryHost().context()}),
        ({"op": "global_get", "tag": "x"}, {"ok": True, "value": codec.encode(41)}),
        ({"op": "global_get", "tag": "nope"}, {"ok": False, "error": "unknown global 'nope'", "kind": "KeyError"}),
        ({"op": "global_set", "tag": "x", "value": b"v"}, {"ok": True}),
        (
            {"op": "global_set", "tag": "x", "value": "v"},
            {"ok": False, "error": "'value' must be bytes", "kind": "RuntimeError"},
        ),
        ({"op": "result_select", "tag": "m"}, {"ok": True, "values": {"peer": codec.encode({"acc": 0.5})}}),
        ({"op": "result_nodes", "tag": "m"}, {"ok": True, "nodes": ["peer"]}),
        ({"op": "result_get", "tag": "m", "node": "peer"}, {"ok": True, "value": codec.encode({"acc": 0.5})}),
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
    assert _exchange(sock, request_) == codec.encode(reply)
    assert codec.decode(_exchange(sock, {"op": "hello"}))["ok"] is True
    assert thread.is_alive()


@pytest.mark.parametrize("final", [{"op": "done"}, {"op": "failed", "traceback": "tb"}])
def test_final_frame_ends_serve(served: Served, final: dict[str, Any]) -> None:
    """The final frame gets no reply: serve() returns it as it came."""
    sock, thread, returned = served
    data = codec.encode(final)
    sock.sendall(struct.pack(">I", len(data)) + data)
    thread.join(5)
    assert returned == [final]


def test_client_raises_the_kind_it_is_told() -> None:
    """A KeyError reply raises KeyError in the task; every other refusal raises RuntimeError."""

    class Replying(RecordingChannel):
        def recv(self) -> Any:
            tag = self.sent[-1]["tag"]
            return {"ok": False, "error": f"no {tag}", "kind": tag}

    client = TaskClient(Replying())
    with pytest.raises(KeyError, match="no KeyError"):
        client.request(Op.GLOBAL_GET, tag=ErrorKind.KEY_ERROR.value)
    with pytest.raises(RuntimeError, match="no RuntimeError"):
        client.request(Op.GLOBAL_GET, tag=ErrorKind.RUNTIME_ERROR.value)
    with pytest.raises(RuntimeError, match="no other"):
        client.request(Op.GLOBAL_GET, tag="other")
