"""``manta-mqtt watch``: every protocol message on the broker, decoded to one readable line.

Status topics are JSON already; msgpack messages are summarised (sizes, ids, tags), never
dumped, so a 100 MB model chunk prints as one short line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from ..protocol import topics
from ..protocol.messages import (
    Assignment,
    BlobRequest,
    Chunk,
    Discover,
    NodeLog,
    NodeStatus,
    ProtocolError,
    ResultEnvelope,
    SwarmControl,
    SwarmState,
    UploadGrant,
)
from ..transport.mqtt import BrokerAddress
from . import fleet


def describe(topic: str, payload: bytes) -> str:
    """One line for one message; never raises."""
    if not payload:
        return f"{topic} (cleared)"
    try:
        kind = topics.parse(topic).kind
    except topics.TopicError:
        return f"{topic} ({len(payload)} bytes, not a protocol v2 topic)"
    try:
        if kind is topics.Kind.NODE_STATUS:
            s = NodeStatus.parse(payload)
            running = f" running={s.running}" if s.running else ""
            return f"{topic} {s.state} datasets={s.datasets}{running}"
        if kind is topics.Kind.NODE_LOG:
            g = NodeLog.parse(payload)
            tail = f" (+{g.tail.count(chr(10)) + 1} line(s) of stderr)" if g.tail else ""
            return f"{topic} {g.level.upper()} {g.logger}: {g.message}{tail}"
        if kind is topics.Kind.SWARM_CONTROL:
            request = SwarmControl.parse(payload)
            return f"{topic} {request.command} by={request.by!r} reason={request.reason!r}"
        if kind is topics.Kind.SWARM_STATE:
            w = SwarmState.parse(payload)
            return (
                f"{topic} {w.state} iteration={w.iteration} step={w.step} {w.done}/{w.expected} {json.dumps(w.metrics)}"
            )
        if kind is topics.Kind.ASSIGNMENT:
            a = Assignment.parse(payload)
            return f"{topic} run {a.task} iteration={a.iteration} globals={sorted(a.global_refs)}"
        if kind is topics.Kind.RESULTS:
            e = ResultEnvelope.parse(payload)
            return f"{topic} {e.status} {e.task} iteration={e.iteration} tags={sorted(e.results)} {e.duration:.1f}s"
        if kind is topics.Kind.BLOB_REQUEST:
            r = BlobRequest.parse(payload)
            return f"{topic} wants chunks {r.first + 1}-{r.first + r.count} of blob {r.sha[:12]}"
        if kind is topics.Kind.DISCOVER:
            return f"{topic} every node: send your status (asked by {Discover.parse(payload).sender!r})"
        if kind is topics.Kind.UPLOAD_GRANT:
            grant = UploadGrant.parse(payload)
            last = grant.first + grant.count
            return f"{topic} send chunks {grant.first + 1}-{last} of {grant.info.count} of blob {grant.sha[:12]}"
        if kind is not topics.Kind.BLOB_CHUNK and kind is not topics.Kind.UPLOAD_CHUNK:
            return f"{topic} ({len(payload)} bytes)"
        c = Chunk.parse(payload)
        return f"{topic} chunk {c.index + 1}/{c.info.count} ({len(c.data)} bytes)"
    except ProtocolError as exc:
        return f"{topic} INVALID ({len(payload)} bytes): {exc}"


def watch(
    address: BrokerAddress, *, version: str, topic_filter: str, emit: Callable[[str], None], stop: threading.Event
) -> None:
    def on_message(topic: str, payload: bytes, retained: bool) -> None:
        emit(("[retained] " if retained else "") + describe(topic, payload))

    with fleet.connected(address, version, "watch") as link:
        link.route("#", on_message)
        link.subscribe(topic_filter, qos=0)
        stop.wait()


def node_table(address: BrokerAddress, *, version: str, wait: float = fleet.SETTLE) -> list[dict[str, Any]]:
    """The retained status of every node the broker knows (``wait``: seconds for them to arrive)."""
    with fleet.connected(address, version, "nodes") as link:
        statuses = fleet.node_statuses(link, settle=wait)
    return [
        {"node": s.node, "state": s.state, "datasets": s.datasets, "running": s.running, "rejected": s.rejected}
        for s in statuses
    ]
