"""What the engine is told: typed events, built by the coordinator from the network and its tasks.

Time is not an event field: every event is handed over with the current time
(``Engine.handle(event, now)``), so the engine never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...protocol.messages import GlobalRefs, NodeStatus, ResultEnvelope


@dataclass(frozen=True)
class StatusChanged:
    """A node's retained status arrived (online, busy, or offline by its will)."""

    status: NodeStatus


@dataclass(frozen=True)
class EnvelopeArrived:
    """A result envelope arrived on ``results/{node}``.

    ``missing``: blobs it refers to that the run store does not hold yet (their uploads are
    still under way); the coordinator looks them up when it hands the event over.
    """

    node: str
    envelope: ResultEnvelope
    missing: frozenset[str] = frozenset()
    size: int = 0  # its bytes as received: what holding it costs


@dataclass(frozen=True)
class UploadCompleted:
    """A node's upload was reassembled, verified and stored under ``sha``."""

    sha: str


@dataclass(frozen=True)
class TaskWrites:
    """What a coordinator-placed task wrote: values are already in the store, by sha."""

    results: dict[str, str] = field(default_factory=dict)
    global_refs: GlobalRefs = field(default_factory=dict)
    schedule: list[tuple[str, list[str]]] = field(default_factory=list)  # (alias, node ids)
    stop: bool = False


@dataclass(frozen=True)
class TaskFinished:
    """A coordinator-placed task (a :class:`~.actions.RunLocal`) ended."""

    task: str
    ok: bool
    error: str = ""
    duration: float = 0.0
    writes: TaskWrites = field(default_factory=TaskWrites)


@dataclass(frozen=True)
class Tick:
    """Nothing arrived; time passed (deadlines may have run out)."""


@dataclass(frozen=True)
class StopRequested:
    """An operator asked (a ``SwarmControl`` "stop" on the swarm's control topic) to end the swarm."""

    by: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Reconnected:
    """The coordinator's connection broke and came back: its will may have told nodes it was lost."""


Event = StatusChanged | EnvelopeArrived | UploadCompleted | TaskFinished | Tick | StopRequested | Reconnected
