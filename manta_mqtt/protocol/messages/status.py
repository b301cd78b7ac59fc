"""The two retained status messages, JSON so that ``mosquitto_sub`` and MQTT Explorer show them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, cast, get_args

from ..limits import MAX_STATUS_ERROR_LENGTH
from .fields import VERSION, ProtocolError, _choice, _finite, _get, _id, _load_json, _metrics, _nonneg, _str_list

T = TypeVar("T")

NodeState = Literal["online", "busy", "offline"]  # busy: running a task


@dataclass
class NodeStatus:
    """A node's retained status; its will message is the same with ``state="offline"``."""

    node: str
    state: NodeState
    datasets: list[str] = field(default_factory=list)
    session: int = 0  # start time in ms: tells a restart from a reconnect
    running: str | None = None  # "swarm/iteration/task" while busy
    rejected: dict[str, int] = field(default_factory=dict)
    agent: str = ""  # "manta-mqtt {version}"
    heartbeat: float = 0.0  # the node's clock (unix s) when it sent this; it re-sends every `interval` s
    link: int = 0  # connections to the broker this session made: a new one may have lost messages
    server: str = ""  # "host:port" of the broker (cluster member) the node is connected to
    # health, optional (None: not known, left out of the JSON; nodes before them send none)
    interval: float | None = None  # seconds between heartbeats: silent for 3 of them, the node is stale
    uptime: float | None = None  # seconds since the agent started
    cpu: float | None = None  # % of the whole machine busy since the previous status, 0-100
    load1: float | None = None  # the 1-minute load average
    mem_used: int | None = None  # bytes of the machine's memory in use (total - available)
    mem_total: int | None = None
    rss: int | None = None  # bytes of memory the agent process holds
    disk_free: int | None = None  # bytes free for the agent on its data_dir's filesystem
    disk_total: int | None = None
    temp: float | None = None  # SoC temperature, degrees C (None: the machine has no sensor)
    task_started: float | None = None  # the node's clock (unix s) when the running task started
    last_error: str | None = None  # the agent's last warning or error (at most MAX_STATUS_ERROR_LENGTH)

    STATES: ClassVar[tuple[NodeState, ...]] = get_args(NodeState)
    HEALTH: ClassVar[tuple[str, ...]] = (
        "interval", "uptime", "cpu", "load1", "mem_used", "mem_total", "rss", "disk_free", "disk_total", "temp",
        "task_started", "last_error",
    )  # fmt: skip

    def connection(self) -> tuple[int, int]:
        """Which run of the agent (``session``) and which of its broker connections (``link``)."""
        return self.session, self.link

    def superseded_by(self, later: NodeStatus) -> bool:
        """Sent on an earlier connection of the same run than ``later``: a will the broker delivered
        late, after the node's next connection announced itself."""
        return self.session == later.session and self.link < later.link

    @property
    def version(self) -> str:
        """The agent's package version, from ``agent`` ("manta-mqtt 0.1.0" -> "0.1.0"; "" if unknown)."""
        return self.agent.rpartition(" ")[2]

    def to_bytes(self) -> bytes:
        fields = {k: v for k, v in asdict(self).items() if v is not None or k not in self.HEALTH}
        return json.dumps({"v": VERSION, **fields}, sort_keys=True, allow_nan=False).encode()

    @classmethod
    def parse(cls, payload: bytes) -> NodeStatus:
        data = _load_json(payload)
        state = cast(NodeState, _choice(data, "state", cls.STATES))
        rejected = _get(data, "rejected", dict, {})
        return cls(
            node=_id(data, "node"),
            state=state,
            datasets=_str_list(data, "datasets", []),
            session=_nonneg(data, "session", 0),
            running=_get(data, "running", (str, type(None)), None),
            rejected={str(k): int(v) for k, v in rejected.items() if isinstance(v, int)},
            agent=_get(data, "agent", str, ""),
            heartbeat=_finite(data, "heartbeat", 0.0),
            link=_nonneg(data, "link", 0),
            server=_get(data, "server", str, "")[:255],
            interval=_optional(_finite, data, "interval"),
            uptime=_optional(_finite, data, "uptime"),
            cpu=_percent(_optional(_finite, data, "cpu")),
            load1=_optional(_finite, data, "load1"),
            mem_used=_optional(_nonneg, data, "mem_used"),
            mem_total=_optional(_nonneg, data, "mem_total"),
            rss=_optional(_nonneg, data, "rss"),
            disk_free=_optional(_nonneg, data, "disk_free"),
            disk_total=_optional(_nonneg, data, "disk_total"),
            temp=_optional(_celsius, data, "temp"),
            task_started=_optional(_finite, data, "task_started"),
            last_error=_cut(_optional(_get, data, "last_error", str)),
        )


def _optional(read: Callable[..., T], data: dict[str, Any], key: str, *args: Any) -> T | None:
    """A health field: absent or null is None; anything else must be what ``read`` accepts."""
    if data.get(key) is None:
        return None
    return read(data, key, *args)


def _cut(text: str | None) -> str | None:
    return text[:MAX_STATUS_ERROR_LENGTH] if text is not None else None


def _percent(value: float | None) -> float | None:
    if value is not None and value > 100:
        raise ProtocolError(f"field 'cpu' must be a percentage, not {value}")
    return value


def _celsius(data: dict[str, Any], key: str) -> float:
    """A temperature: finite, below zero allowed (a Pi outdoors in winter)."""
    value = _get(data, key, (int, float))
    if not -1000 <= value <= 1000:  # NaN and infinities too
        raise ProtocolError(f"field {key!r} must be a temperature in degrees C, not {value}")
    return float(value)


@dataclass(frozen=True)
class Discover:
    """Every node: publish your status now (``manta/v2/discover``; QoS 1, not retained).

    A coordinator sends it on each connection: a node's retained status may not reach it (RabbitMQ
    delivers none to wildcard subscriptions, nor across cluster members)."""

    sender: str  # who asks, for people watching

    def to_bytes(self) -> bytes:
        return json.dumps({"v": VERSION, "from": self.sender}, sort_keys=True).encode()

    @classmethod
    def parse(cls, payload: bytes) -> Discover:
        if len(payload) > 1024:
            raise ProtocolError(f"discover request of {len(payload)} bytes (at most 1024)")
        data = _load_json(payload)
        return cls(_get(data, "from", str, "")[:255])


@dataclass
class SwarmState:
    """The coordinator's retained view of a swarm, for nodes and for people watching."""

    swarm: str
    name: str
    state: str  # one of STATES
    iteration: int = 0
    step: str = ""
    done: int = 0
    expected: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    updated: float = 0.0  # the coordinator's clock (unix s) when it published this; 0: unknown

    STATES = ("running", "stopped", "completed", "failed", "interrupted", "lost")
    # terminal: nodes drop the swarm's queued and running jobs. "interrupted" (the coordinator was
    # signalled) and "lost" (its MQTT will: it died or its connection broke) are resumable: a
    # coordinator started with --resume publishes "running" again, so nodes must take its work.
    TERMINAL = ("stopped", "completed", "failed", "interrupted", "lost")
    RESUMABLE = ("interrupted", "lost")

    @property
    def terminal(self) -> bool:
        return self.state in self.TERMINAL

    @property
    def resumable(self) -> bool:
        return self.state in self.RESUMABLE

    def to_bytes(self) -> bytes:
        fields = asdict(self) | {"metrics": _metrics(self.metrics)}
        return json.dumps({"v": VERSION, **fields}, sort_keys=True, allow_nan=False).encode()

    @classmethod
    def parse(cls, payload: bytes) -> SwarmState:
        data = _load_json(payload)
        state = _choice(data, "state", cls.STATES)
        metrics = _get(data, "metrics", dict, {})
        return cls(
            swarm=_id(data, "swarm"),
            name=_get(data, "name", str, ""),
            state=state,
            iteration=_nonneg(data, "iteration", 0),
            step=_get(data, "step", str, ""),
            done=_nonneg(data, "done", 0),
            expected=_nonneg(data, "expected", 0),
            metrics=_metrics(metrics),
            reason=_get(data, "reason", str, ""),
            updated=_finite(data, "updated", 0.0),
        )
