"""What a task can ask of the process that runs it, and the loop that answers it.

The edge agent and the coordinator each implement :class:`TaskHost`; :func:`serve` turns the
task's channel requests (:class:`~.ops.Op`) into calls on it. Values cross as encoded bytes: the host stores and
forwards them without decoding user data.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

from ..protocol import codec
from .channel import Channel, ChannelClosed
from .ops import ErrorKind, Op, error_reply

log = logging.getLogger("manta_mqtt.runtime")


class TaskHostError(Exception):
    """A request the host refuses; the message is shown to the task as an exception."""


class TaskHost(Protocol):
    def context(self) -> dict[str, Any]:
        """``node``, ``swarm``, ``iteration``, ``task`` and ``datasets`` ({name: path})."""
        ...

    def get_global(self, tag: str) -> bytes: ...

    def set_global(self, tag: str, value: bytes) -> None: ...

    def add_result(self, tag: str, value: bytes) -> None: ...

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

    def get_result(self, tag: str, node: str) -> bytes:
        """``node``'s encoded value for ``tag``; KeyError if it has none."""
        ...


def _result_nodes(host: TaskHost, tag: str) -> list[str]:
    if isinstance(host, ResultsByNode):
        return host.result_nodes(tag)
    return sorted(host.select_results(tag))


def _get_result(host: TaskHost, tag: str, node: str) -> bytes:
    if isinstance(host, ResultsByNode):
        return host.get_result(tag, node)
    return host.select_results(tag)[node]


def _str(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise TaskHostError(f"{key!r} must be a non-empty string")
    return value


def _bytes(request: dict[str, Any], key: str) -> bytes:
    value = request.get(key)
    if not isinstance(value, bytes):
        raise TaskHostError(f"{key!r} must be bytes")
    return value


def _handle(host: TaskHost, op: Op | None, request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one request; raises :class:`TaskHostError` for a request the host refuses."""
    match op:
        case Op.HELLO:
            return {"ok": True, "context": host.context()}
        case Op.GLOBAL_GET:
            try:
                return {"ok": True, "value": host.get_global(_str(request, "tag"))}
            except KeyError as exc:
                return error_reply(f"unknown global {exc.args[0]!r}", ErrorKind.KEY_ERROR)
        case Op.GLOBAL_SET:
            host.set_global(_str(request, "tag"), _bytes(request, "value"))
        case Op.RESULT_ADD:
            host.add_result(_str(request, "tag"), _bytes(request, "value"))
        case Op.RESULT_SELECT:
            return {"ok": True, "values": host.select_results(_str(request, "tag"))}
        case Op.RESULT_NODES:
            return {"ok": True, "nodes": _result_nodes(host, _str(request, "tag"))}
        case Op.RESULT_GET:
            tag, node = _str(request, "tag"), _str(request, "node")
            try:
                return {"ok": True, "value": _get_result(host, tag, node)}
            except KeyError:
                return error_reply(f"no result {tag!r} from node {node!r}", ErrorKind.KEY_ERROR)
        case Op.SCHEDULE:
            ids = request.get("node_ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise TaskHostError("node_ids must be a list of strings")
            host.schedule_next_iter(ids, _str(request, "alias"))
        case Op.STOP:
            host.stop_swarm()
        case Op.DONE | Op.FAILED | Op.RUN | None:  # no request of a task (serve() never passes a final op)
            raise TaskHostError(f"unknown request {request.get('op')!r}")
    return {"ok": True}


def serve(channel: Channel, host: TaskHost) -> dict[str, Any] | None:
    """Answer requests until the task reports its end; return that final message (or None).

    Runs on the executor's server thread, which only uses ``channel`` to receive and reply: the
    thread that called run_task owns the channel and closes it after this returns.
    """
    while True:
        try:
            request = channel.recv()
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
        try:
            reply = _handle(host, op, request)
        except TaskHostError as exc:
            reply = error_reply(str(exc))
        except Exception as exc:  # a host bug must not hang the task: report it
            log.exception("host failed on %s", request.get("op"))
            reply = error_reply(f"{type(exc).__name__}: {exc}")
        try:
            channel.send(reply)
        except OSError:
            return None
