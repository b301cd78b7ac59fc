"""The coordinator's side of paho's network thread: parse, bound and queue; decide nothing.

Threads: paho's network thread runs every method here but :meth:`Intake.next` and owns the
:class:`UploadReceiver` (upload chunks are reassembled right here, a memory copy each, and
stalled uploads are swept here too); it tells the main thread of the chunks that came of the
uploads it asked for (:class:`ChunksArrived`, in batches: the grant scheduler's window frees), and
of no others, so a flood of chunks nobody asked for never wakes the main thread. The main thread
only calls :meth:`Intake.next` and :meth:`Intake.expect`. The queue
between them is bounded in bytes of envelopes, per node and in total (the main thread may be
busy for minutes running an aggregator); that budget is the one thing both threads touch, under
a lock.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

from ..protocol import topics
from ..protocol.budget import SenderBudget
from ..protocol.limits import MAX_ENVELOPE_BYTES, MAX_NODE_RESULT_BYTES, MAX_TOTAL_RESULT_BYTES
from ..protocol.messages import NodeStatus, ProtocolError, ResultEnvelope, SwarmControl
from ..protocol.rejections import Rejections
from ..transport.blobs import UploadReceiver
from ..transport.mqtt import MqttLink
from .engine import Reconnected, StatusChanged, StopRequested, UploadCompleted

SWEEP_EVERY = 1.0  # seconds between looks for stalled uploads
#: Chunk arrivals held for the main thread at most (busy running an aggregator, or a flood of
#: chunks): past it one is dropped, and the grant scheduler grants that chunk again after its retry
#: time, which costs a duplicate at worst.
MAX_QUEUED_NOTICES = 4096


@dataclass(frozen=True)
class ReceivedEnvelope:
    """A parsed result envelope and the node whose topic it came on."""

    node: str
    envelope: ResultEnvelope
    size: int  # bytes, as received


@dataclass(frozen=True)
class ChunksArrived:
    """Upload chunks that came on ``uploads/{node}/{sha}/{index}`` (whether the receiver kept them
    or not), as (node, sha, index), oldest first: every one since the previous batch."""

    chunks: tuple[tuple[str, str, int], ...]


Received = StatusChanged | ReceivedEnvelope | UploadCompleted | StopRequested | Reconnected | ChunksArrived


class _Doorbell:
    """Queued when the first chunk of a new batch arrives: the batch is taken when it is read."""


class Intake:
    def __init__(
        self,
        reject: Rejections,
        uploads: UploadReceiver,
        *,
        bytes_per_node: int = MAX_NODE_RESULT_BYTES,
        bytes_total: int = MAX_TOTAL_RESULT_BYTES,
    ) -> None:
        self.reject = reject  # thread-safe
        self._events: queue.Queue[Received | _Doorbell] = queue.Queue()  # the hand-off to the main thread
        self._queued = SenderBudget(per_sender=bytes_per_node, total=bytes_total)  # envelopes in _events
        self._arrivals: list[tuple[str, str, int]] = []  # chunks not yet handed over; a _Doorbell is queued
        self._expected: frozenset[tuple[str, str]] = frozenset()  # (node, sha) asked for, set by the main thread
        self._lock = threading.Lock()  # guards _queued and _arrivals
        self._uploads = uploads  # owned by the network thread
        self._swept = time.monotonic()
        self._swarm = ""
        self._connections = 0  # owned by the network thread: the first is no reconnection

    def next(self, timeout: float) -> Received:
        """The next item, for the main thread; raises ``queue.Empty`` after ``timeout`` seconds."""
        item = self._events.get(timeout=timeout)
        if isinstance(item, ReceivedEnvelope):
            with self._lock:
                self._queued.give_back(item.node, item.size)
        elif isinstance(item, _Doorbell):
            with self._lock:
                batch, self._arrivals = self._arrivals, []
            return ChunksArrived(tuple(batch))
        return item

    def expect(self, uploads: frozenset[tuple[str, str]]) -> None:
        """The uploads (node, sha) the main thread asks for now: only their chunks are reported."""
        with self._lock:
            self._expected = uploads

    def attach(self, link: MqttLink, swarm: str) -> list[str]:
        """Route this swarm's topics to us; return the filters to subscribe to."""
        self._swarm = swarm
        link.route(topics.all_node_status(), self.on_status)
        link.route(topics.swarm_results(swarm), self.on_results)
        link.route(topics.swarm_uploads(swarm), self.on_upload)
        link.route(topics.swarm_control(swarm), self.on_control)
        link.on_connect(self.on_connect)
        return [
            topics.all_node_status(),
            topics.swarm_results(swarm),
            topics.swarm_uploads(swarm),
            topics.swarm_control(swarm),
        ]

    def on_connect(self) -> None:
        self._connections += 1
        if self._connections > 1:
            self._events.put(Reconnected())

    def on_control(self, topic: str, payload: bytes, retained: bool) -> None:
        """An operator's request; a retained one would stop every later resume: refused."""
        if not payload:
            return
        if retained:
            self.reject("unexpected", f"retained control message on {topic}")
            return
        try:
            control = SwarmControl.parse(payload)
        except ProtocolError as exc:
            self.reject("malformed", f"control message on {topic}: {exc}")
            return
        if control.swarm != self._swarm:
            self.reject("forged", f"control message on {topic} names swarm {control.swarm!r}")
            return
        self._events.put(StopRequested(control.by, control.reason))

    def _sweep(self) -> None:
        """Drop stalled uploads, at most once a second, on whatever message comes next."""
        now = time.monotonic()
        if now - self._swept >= SWEEP_EVERY:
            self._swept = now
            self._uploads.sweep()

    def on_status(self, topic: str, payload: bytes, _retained: bool) -> None:
        self._sweep()
        if not payload:
            return  # a cleared retained status
        try:
            parsed = topics.parse(topic)
            status = NodeStatus.parse(payload)
        except (topics.TopicError, ProtocolError) as exc:
            self.reject("malformed", f"status on {topic}: {exc}")
            return
        if status.node != parsed.node:
            self.reject("forged", f"status on {topic} claims node {status.node!r}")
            return
        self._events.put(StatusChanged(status))

    def on_results(self, topic: str, payload: bytes, _retained: bool) -> None:
        self._sweep()
        try:
            node = topics.parse(topic).node
        except topics.TopicError as exc:
            self.reject("malformed", f"results topic: {exc}")
            return
        assert node is not None
        if len(payload) > MAX_ENVELOPE_BYTES:
            self.reject("oversized", f"envelope of {len(payload)} bytes from {node}")
            return
        try:
            envelope = ResultEnvelope.parse(payload)
        except ProtocolError as exc:
            self.reject("malformed", f"results from {node}: {exc}")
            return
        with self._lock:
            why = self._queued.take(node, len(payload))
        if why:
            self.reject("overflow", f"results from {node} while the coordinator is busy: {why}")
            return
        self._events.put(ReceivedEnvelope(node, envelope, len(payload)))

    def on_upload(self, topic: str, payload: bytes, _retained: bool) -> None:
        self._sweep()
        try:
            parsed = topics.parse(topic)
        except topics.TopicError as exc:
            self.reject("malformed", f"upload topic: {exc}")
            return
        assert parsed.node and parsed.sha and parsed.index is not None
        sha = self._uploads.receive(parsed.node, parsed.sha, parsed.index, payload)
        with self._lock:
            asked = (parsed.node, parsed.sha) in self._expected
            ring = asked and not self._arrivals
            if asked and len(self._arrivals) < MAX_QUEUED_NOTICES:
                self._arrivals.append((parsed.node, parsed.sha, parsed.index))
        if ring:
            self._events.put(_Doorbell())
        if sha is not None:
            self._events.put(UploadCompleted(sha))
