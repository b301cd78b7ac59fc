"""The two retained status messages, JSON so that ``mosquitto_sub`` and MQTT Explorer show them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Literal, cast, get_args

from .fields import VERSION, _choice, _finite, _get, _id, _load_json, _metrics, _nonneg, _str_list

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
    agent: str = ""
    heartbeat: float = 0.0  # the node's clock (unix s) when it sent this; it re-sends at least every 30 s

    STATES: ClassVar[tuple[NodeState, ...]] = get_args(NodeState)

    def to_bytes(self) -> bytes:
        return json.dumps({"v": VERSION, **asdict(self)}, sort_keys=True).encode()

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
        )


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
