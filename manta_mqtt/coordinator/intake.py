"""The coordinator's side of paho's network thread: classify, bound and queue; decide nothing.

Status and result envelopes go to the main thread as events; upload chunks are reassembled
right here (a memory copy each), and only a verified blob becomes an event.
"""

from __future__ import annotations

import queue
from typing import Any

from ..protocol import topics
from ..protocol.messages import NodeStatus, ProtocolError
from ..protocol.rejections import Rejections
from ..transport.blobs import UploadReceiver
from ..transport.mqtt import MqttLink

MAX_ENVELOPE_BYTES = 64 * 1024 * 1024

Event = tuple[str, Any, Any]  # ("status", NodeStatus, None) | ("results", node, payload) | ("blob", sha, None)


class Intake:
    def __init__(self, reject: Rejections) -> None:
        self.reject = reject
        self.events: queue.Queue[Event] = queue.Queue()
        self.uploads: UploadReceiver | None = None

    def attach(self, link: MqttLink, swarm: str, uploads: UploadReceiver) -> list[str]:
        """Route this swarm's topics to us; return the filters to subscribe to."""
        self.uploads = uploads
        link.route(topics.all_node_status(), self.on_status)
        link.route(topics.swarm_results(swarm), self.on_results)
        link.route(topics.swarm_uploads(swarm), self.on_upload)
        return [topics.all_node_status(), topics.swarm_results(swarm), topics.swarm_uploads(swarm)]

    def on_status(self, topic: str, payload: bytes, _retained: bool) -> None:
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
        self.events.put(("status", status, None))

    def on_results(self, topic: str, payload: bytes, _retained: bool) -> None:
        try:
            node = topics.parse(topic).node
        except topics.TopicError as exc:
            self.reject("malformed", f"results topic: {exc}")
            return
        if len(payload) > MAX_ENVELOPE_BYTES:
            self.reject("oversized", f"envelope of {len(payload)} bytes from {node}")
            return
        self.events.put(("results", node, payload))

    def on_upload(self, topic: str, payload: bytes, _retained: bool) -> None:
        try:
            parsed = topics.parse(topic)
        except topics.TopicError as exc:
            self.reject("malformed", f"upload topic: {exc}")
            return
        assert self.uploads is not None and parsed.node and parsed.sha and parsed.index is not None
        sha = self.uploads.receive(parsed.node, parsed.sha, parsed.index, payload)
        if sha is not None:
            self.events.put(("blob", sha, None))
