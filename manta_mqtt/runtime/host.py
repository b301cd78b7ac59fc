"""What a task can ask of the process that runs it, and the loop that answers it.

The edge agent and the coordinator each implement :class:`TaskHost`; :func:`serve` turns the
task's channel requests (:class:`~.ops.Op`) into calls on it. Values cross as encoded bytes, as
the frames' payloads: the host stores and forwards them without decoding user data, and a host
may stream a value to disk as it arrives (:class:`~.channel.Payload`) and send one from a file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..protocol import codec
from .channel import Channel, ChannelClosed, Payload
from .ops import ErrorKind, Op, error_reply

log = logging.getLogger("manta_mqtt.runtime")


class TaskHostError(Exception):
    """A request the host refuses; the message is shown to the task as an exception."""


#: An encoded value a host sends a task: bytes, or the file that holds them (sent by sendfile).
Value = bytes | bytearray | Path


class TaskHost(Protocol):
    """Values written by the task arrive as a :class:`Payload` still in the channel: the host
    reads (or streams) it before it returns, and keeps no reference to it."""

    def context(self) -> dict[str, Any]:
        """``node``, ``swarm``, ``iteration``, ``task`` and ``datasets`` ({name: path})."""
        ...

    def get_global(self, tag: str) -> Value: ...

    def set_global(self, tag: str, value: Payload) -> None: ...

    def add_result(self, tag: str, value: Payload) -> None: ...

    def select_results(self, tag: str) -> dict[str, bytes]: ...

    def schedule_next_iter(self, node_ids: list[str], alias: str) -> None: ...

    def stop_swarm(self) -> None: ...


@runtime_checkable
class ResultsByNode(Protocol):
    """What a host offers so a task reads results one node per request (``results.iter``,
    ``results.select``): no frame then holds more than one node's value. A host without it
    (the edge agent, which refuses every select) is served from :meth:`TaskHost.select_results`."""

    def result_nodes(self, tag: str) -> list[str]:
        """The nodes that added ``tag``, sorted."""
        ...

    def get_result(self, tag: str, node: str) -> Value:
        """``node``'s encoded value for ``tag``; KeyError if it has none."""
        ...


def _result_nodes(host: TaskHost, tag: str) -> list[str]:
    if isinstance(host, ResultsByNode):
        return host.result_nodes(tag)
    return sorted(host.select_results(tag))


def _get_result(host: TaskHost, tag: str, node: str) -> Value:
    if isinstance(host, ResultsByNode):
        return host.get_result(tag, node)
    return host.select_results(tag)[node]


def _str(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise TaskHostError(f"{key!r} must be a non-empty string")
    return value


def _value(payload: Payload) -> Payload:
    if not payload.size:  # an encoded value is never empty
        raise TaskHostError("the value must come as the frame's payload")
    return payload


Reply = tuple[dict[str, Any], Value | None]
_OK: dict[str, Any] = {"ok": True}


def _handle(host: TaskHost, op: Op | None, request: dict[str, Any], payload: Payload) -> Reply:
    """The reply to one request and the value sent with it; raises :class:`TaskHostError` for a
    request the host refuses."""
    match op:
        case Op.HELLO:
            return {"ok": True, "context": host.context()}, None
        case Op.GLOBAL_GET:
            try:
                return _OK, host.get_global(_str(request, "tag"))
            except KeyError as exc:
                return error_reply(f"unknown global {exc.args[0]!r}", ErrorKind.KEY_ERROR), None
        case Op.GLOBAL_SET:
            host.set_global(_str(request, "tag"), _value(payload))
        case Op.RESULT_ADD:
            host.add_result(_str(request, "tag"), _value(payload))
        case Op.RESULT_SELECT:
            return {"ok": True, "values": host.select_results(_str(request, "tag"))}, None
        case Op.RESULT_NODES:
            return {"ok": True, "nodes": _result_nodes(host, _str(request, "tag"))}, None
        case Op.RESULT_GET:
            tag, node = _str(request, "tag"), _str(request, "node")
            try:
                return _OK, _get_result(host, tag, node)
            except KeyError:
                return error_reply(f"no result {tag!r} from node {node!r}", ErrorKind.KEY_ERROR), None
        case Op.SCHEDULE:
            ids = request.get("node_ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise TaskHostError("node_ids must be a list of strings")
            host.schedule_next_iter(ids, _str(request, "alias"))
        case Op.STOP:
            host.stop_swarm()
        case Op.DONE | Op.FAILED | Op.RUN | None:  # no request of a task (serve() never passes a final op)
            raise TaskHostError(f"unknown request {request.get('op')!r}")
    return _OK, None


def serve(channel: Channel, host: TaskHost) -> dict[str, Any] | None:
    """Answer requests until the task reports its end; return that final message (or None).

    Runs on the executor's server thread, which only uses ``channel`` to receive and reply: the
    thread that called run_task owns the channel and closes it after this returns.
    """
    while True:
        try:
            request, payload = channel.recv()
        except (ChannelClosed, OSError):
            return None
        except codec.CodecError as exc:
            log.warning("task sent a malformed frame: %s", exc)
            return None
        if not isinstance(request, dict):
            log.warning("task sent a non-map request")
            return None
        op = Op.parse(request.get("op"))
        if op is not None and op.final:
            return request
        value: Value | None = None
        try:
            reply, value = _handle(host, op, request, payload)
        except TaskHostError as exc:
            reply = error_reply(str(exc))
        except Exception as exc:  # a host bug must not hang the task: report it
            log.exception("host failed on %s", request.get("op"))
            reply = error_reply(f"{type(exc).__name__}: {exc}")
        try:
            _send(channel, reply, value)
        except OSError:
            return None


def _send(channel: Channel, reply: dict[str, Any], value: Value | None) -> None:
    if not isinstance(value, Path):
        channel.send(reply, () if value is None else (value,))
        return
    try:
        channel.send_file(reply, value)  # opens the file before it sends anything
    except FileNotFoundError:  # the value's file went between the lookup and the send
        log.error("a value's file is gone: %s", value)
        channel.send(error_reply(f"the value's file is gone ({value.name[:12]})"))
