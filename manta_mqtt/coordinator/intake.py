"""The coordinator's side of paho's network thread: parse, bound and queue; decide nothing.

Threads: paho's network thread runs every method here and owns the :class:`UploadReceiver`
(upload chunks are reassembled right here, a memory copy each, and stalled uploads are swept
here too). The main thread only takes items from :attr:`Intake.events`.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass

from ..protocol import topics
from ..protocol.limits import MAX_ENVELOPE_BYTES
from ..protocol.messages import NodeStatus, ProtocolError, ResultEnvelope
from ..protocol.rejections import Rejections
from ..transport.blobs import UploadReceiver
from ..transport.mqtt import MqttLink
from .engine import StatusChanged, UploadCompleted

SWEEP_EVERY = 1.0  # seconds between looks for stalled uploads


@dataclass(frozen=True)
class ReceivedEnvelope:
    """A parsed result envelope and the node whose topic it came on."""

    node: str
    envelope: ResultEnvelope


Received = StatusChanged | ReceivedEnvelope | UploadCompleted


class Intake:
    def __init__(self, reject: Rejections, uploads: UploadReceiver) -> None:
        self.reject = reject  # thread-safe
        self.events: queue.Queue[Received] = queue.Queue()  # the hand-off to the main thread
        self._uploads = uploads  # owned by the network thread
        self._swept = time.monotonic()

    def attach(self, link: MqttLink, swarm: str) -> list[str]:
        """Route this swarm's topics to us; return the filters to subscribe to."""
        link.route(topics.all_node_status(), self.on_status)
        link.route(topics.swarm_results(swarm), self.on_results)
        link.route(topics.swarm_uploads(swarm), self.on_upload)
        return [topics.all_node_status(), topics.swarm_results(swarm), topics.swarm_uploads(swarm)]

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
        self.events.put(StatusChanged(status))

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
        self.events.put(ReceivedEnvelope(node, envelope))

    def on_upload(self, topic: str, payload: bytes, _retained: bool) -> None:
        self._sweep()
        try:
            parsed = topics.parse(topic)
        except topics.TopicError as exc:
            self.reject("malformed", f"upload topic: {exc}")
            return
        assert parsed.node and parsed.sha and parsed.index is not None
        sha = self._uploads.receive(parsed.node, parsed.sha, parsed.index, payload)
        if sha is not None:
            self.events.put(UploadCompleted(sha))
