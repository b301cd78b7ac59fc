"""The site as ``top`` sees it, folded from the messages the broker delivers: every node's
latest status, every swarm's latest state, traffic by kind of topic, and the broker's ``$SYS``
figures. Plain data, no I/O and no clock (time is an argument), owned by one thread.

Bounded: ``MAX_NODES`` nodes and ``MAX_SWARMS`` swarms (the least recently heard is forgotten
past them), traffic kept per second for ``RATE_WINDOW`` seconds.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from ...protocol import topics
from ...protocol.messages import NodeStatus, ProtocolError, SwarmState

MAX_NODES = 10_000
MAX_SWARMS = 1_000
RATE_WINDOW = 10  # seconds of traffic averaged into a rate
DEFAULT_STALE = 90.0  # a status older than this (or 3 of its own intervals) is stale
SYS_FIGURES = {  # Mosquitto's $SYS topics that matter to an operator, by the label shown
    "clients": "$SYS/broker/clients/connected",
    "dropped": "$SYS/broker/publish/messages/dropped",
    "stored": "$SYS/broker/store/messages/count",
    "version": "$SYS/broker/version",
}


@dataclass
class NodeRow:
    status: NodeStatus
    seen: float  # our clock when its status last arrived

    def stale(self, now: float) -> bool:
        """Silent for longer than 3 of its heartbeat intervals (or 90 s if it does not say)."""
        interval = self.status.interval or 0.0
        limit = max(DEFAULT_STALE, 3 * interval)
        heard = self.status.heartbeat or self.seen
        return self.status.state != "offline" and now - max(heard, self.seen) > limit

    def shown_state(self, now: float) -> str:
        return "stale" if self.stale(now) else self.status.state


@dataclass
class Traffic:
    """Messages and bytes per kind of topic, per second, over the last ``RATE_WINDOW`` seconds."""

    seconds: deque[tuple[int, dict[str, tuple[int, int]]]] = field(
        default_factory=lambda: deque(maxlen=RATE_WINDOW + 1)
    )

    def add(self, kind: str, size: int, now: float) -> None:
        second = int(now)
        if not self.seconds or self.seconds[-1][0] != second:
            self.seconds.append((second, {}))
        counts = self.seconds[-1][1]
        messages, octets = counts.get(kind, (0, 0))
        counts[kind] = (messages + 1, octets + size)

    def rates(self, now: float) -> dict[str, tuple[float, float]]:
        """Kind -> (messages/s, bytes/s) over the full seconds of the window."""
        start = int(now) - RATE_WINDOW
        totals: dict[str, tuple[int, int]] = {}
        for second, counts in self.seconds:
            if start <= second < int(now):
                for kind, (m, b) in counts.items():
                    tm, tb = totals.get(kind, (0, 0))
                    totals[kind] = (tm + m, tb + b)
        return {kind: (m / RATE_WINDOW, b / RATE_WINDOW) for kind, (m, b) in totals.items()}


@dataclass
class SiteView:
    nodes: OrderedDict[str, NodeRow] = field(default_factory=OrderedDict)
    swarms: OrderedDict[str, SwarmState] = field(default_factory=OrderedDict)
    traffic: Traffic = field(default_factory=Traffic)
    broker: dict[str, str] = field(default_factory=dict)
    invalid: int = 0  # messages on our topics that did not parse

    def take(self, topic: str, payload: bytes | None, size: int, now: float) -> None:
        """Fold one message of ``size`` bytes in; ``payload`` only where its content matters
        (statuses, states, ``$SYS``), None for the rest (chunks are counted, not kept). Never raises."""
        if payload is None:
            payload = b""
        if topic.startswith("$SYS/"):
            for label, sys_topic in SYS_FIGURES.items():
                if topic == sys_topic:
                    self.broker[label] = payload[:64].decode("utf-8", "replace")
            return
        try:
            parsed = topics.parse(topic)
        except topics.TopicError:
            self.traffic.add("other", size, now)
            return
        self.traffic.add(parsed.kind.value, size, now)
        if not payload:
            return
        try:
            if parsed.kind is topics.Kind.NODE_STATUS:
                self._node(NodeStatus.parse(payload), now)
            elif parsed.kind is topics.Kind.SWARM_STATE:
                self._swarm(SwarmState.parse(payload))
        except ProtocolError:
            self.invalid += 1

    def _node(self, status: NodeStatus, now: float) -> None:
        self.nodes.pop(status.node, None)
        self.nodes[status.node] = NodeRow(status, now)
        while len(self.nodes) > MAX_NODES:
            self.nodes.popitem(last=False)

    def _swarm(self, state: SwarmState) -> None:
        self.swarms.pop(state.swarm, None)
        self.swarms[state.swarm] = state
        while len(self.swarms) > MAX_SWARMS:
            self.swarms.popitem(last=False)

    def counts(self, now: float) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.nodes.values():
            state = row.shown_state(now)
            out[state] = out.get(state, 0) + 1
        return out


SORTS = ("node", "state", "seen", "cpu", "temp")
FILTERS = ("all", "online", "busy", "offline", "stale")


def wanted(topic: str) -> bool:
    """Whether ``top`` needs a message's content (not just its size)."""
    return topic.startswith("$SYS/") or topic.endswith(("/status", "/state"))


def node_rows(view: SiteView, now: float, sort: str = "node", only: str = "all") -> list[NodeRow]:
    """The nodes to show: filtered by shown state, sorted (busiest or hottest first for figures)."""
    rows = [r for r in view.nodes.values() if only == "all" or r.shown_state(now) == only]
    keys = {
        "node": lambda r: (r.status.node,),
        "state": lambda r: (r.shown_state(now), r.status.node),
        "seen": lambda r: (-r.seen, r.status.node),
        "cpu": lambda r: (-(r.status.cpu or 0.0), r.status.node),
        "temp": lambda r: (-(r.status.temp or 0.0), r.status.node),
    }
    return sorted(rows, key=keys[sort])
