"""The agent's side of paho's network thread: check, count what is refused, queue the rest.

These handlers decide nothing that depends on the agent's state (whether an assignment is a
duplicate, whether its swarm is over): they see only the node id, the thread-safe rejection
counter and the main thread's inbox. Whatever they accept reaches the main thread as an event.
"""

from __future__ import annotations

import queue
import threading

from manta_mqtt.protocol import topics
from manta_mqtt.protocol.limits import MAX_ASSIGNMENT_BYTES
from manta_mqtt.protocol.messages import Assignment, Discover, NodeStatus, ProtocolError, SwarmState
from manta_mqtt.protocol.rejections import Rejections

from .events import AssignmentArrived, Connected, DiscoverRequested, Event, SwarmEnded


class Intake:
    """The handlers paho calls; everything they keep is immutable or thread-safe."""

    def __init__(self, node_id: str, reject: Rejections, inbox: queue.Queue[Event], session: int = 0) -> None:
        self.node_id = node_id
        self.session = session  # the agent's: tells our own statuses from an earlier run's
        self.reject = reject
        self.inbox = inbox
        self.discover_pending = threading.Event()  # set here, cleared by the main thread: one queued at most

    def on_assignment(self, topic: str, payload: bytes, _retained: bool) -> None:
        if not payload:
            return
        if len(payload) > MAX_ASSIGNMENT_BYTES:
            self.reject("oversized", f"assignment of {len(payload)} bytes on {topic}")
            return
        try:
            parsed = topics.parse(topic)
            assignment = Assignment.parse(payload)
        except (topics.TopicError, ProtocolError) as exc:
            self.reject("malformed", f"assignment on {topic}: {exc}")
            return
        if parsed.node != self.node_id or assignment.swarm != parsed.swarm:
            self.reject("forged", f"assignment on {topic} names swarm {assignment.swarm!r}")
            return
        self.inbox.put(AssignmentArrived(assignment))

    def on_swarm_state(self, topic: str, payload: bytes, _retained: bool) -> None:
        if not payload:
            return
        try:
            state = SwarmState.parse(payload)
        except ProtocolError as exc:
            self.reject("malformed", f"swarm state on {topic}: {exc}")
            return
        if state.terminal:
            self.inbox.put(SwarmEnded(state.swarm, state.state))

    def on_discover(self, topic: str, payload: bytes, retained: bool) -> None:
        """Answered by the main thread with a status, at most once per second however many come."""
        try:
            Discover.parse(payload)
        except ProtocolError as exc:
            self.reject("malformed", f"discover request on {topic}: {exc}")
            return
        if not retained:  # a stale request: our status goes out on connecting anyway
            self._status_wanted()

    def on_own_status(self, topic: str, payload: bytes, retained: bool) -> None:
        """Our status as the broker has it: an ``offline`` one of this session while we run (a will
        a cluster member published although we are connected) is answered like a discover."""
        try:
            status = NodeStatus.parse(payload) if payload else None
        except ProtocolError as exc:
            self.reject("malformed", f"status on {topic}: {exc}")
            return
        if status is not None and not retained and status.state == "offline" and status.session == self.session:
            self._status_wanted()

    def _status_wanted(self) -> None:
        """Ask the main thread for our status, once: it answers at most once a second anyway."""
        if not self.discover_pending.is_set():
            self.discover_pending.set()
            self.inbox.put(DiscoverRequested())

    def on_connect(self) -> None:
        self.inbox.put(Connected())
