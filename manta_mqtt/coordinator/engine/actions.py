"""What the engine asks for: typed actions, carried out in order by the coordinator."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...protocol.messages import Assignment, GlobalRefs
from .checkpoint import Checkpoint
from .decisions import RunState

# --- the broker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishBlob:
    """Make sure the broker holds this blob (code or a global value), published once."""

    sha: str


@dataclass(frozen=True)
class ClearBlobs:
    """Remove every blob this run published from the broker, except ``keep``."""

    keep: frozenset[str]


@dataclass(frozen=True)
class Assign:
    """Send ``assignment`` to ``node`` (again, when a node came back without its result)."""

    node: str
    assignment: Assignment


@dataclass(frozen=True)
class PublishState:
    """Publish the retained swarm state: where the run is and how far the open step got."""

    state: RunState
    iteration: int
    step: str = ""
    done: int = 0
    expected: int = 0
    reason: str = ""


# --- the run store ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepValue:
    """Store an inline value (the engine already knows its sha256)."""

    data: bytes


@dataclass(frozen=True)
class RecordResult:
    iteration: int
    task: str
    node: str
    tag: str
    sha: str


@dataclass(frozen=True)
class RecordLateResult:
    """A straggler's result for a step that closed without it: kept apart, never selected."""

    iteration: int
    task: str
    node: str
    tag: str
    sha: str


@dataclass(frozen=True)
class RecordRun:
    """How one task run went (a later record for the same node and step replaces it)."""

    iteration: int
    task: str
    node: str
    ok: bool
    error: str
    duration: float


@dataclass(frozen=True)
class RecordGlobals:
    """The global refs an iteration ended with."""

    iteration: int
    global_refs: GlobalRefs


@dataclass(frozen=True)
class SaveCheckpoint:
    checkpoint: Checkpoint


# --- tasks placed on the coordinator ---------------------------------------------------------


@dataclass(frozen=True)
class RunLocal:
    """Run a coordinator-placed task for ``iteration``, reading ``global_refs``; answer with
    a :class:`~.events.TaskFinished`. Nothing else happens until it comes.

    ``results.select()`` leaves out the results of ``exclude`` (quarantined nodes) and, for a
    probe run of a quarantine search, of every node not in ``only``.
    """

    task: str
    iteration: int
    global_refs: GlobalRefs
    only: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Quarantine:
    """``node``'s results alone made ``task`` fail: its results are left out from now on."""

    iteration: int
    task: str
    node: str
    error: str


# --- the person watching -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reject:
    """Count and log a refused message (``reason`` is one of ``rejections.REASONS``)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Info:
    text: str


@dataclass(frozen=True)
class TaskError:
    """A task failed on a node: the display groups the same error across a step's nodes."""

    task: str
    node: str
    error: str


@dataclass(frozen=True)
class Warn:
    text: str
    # set when the warning is a node's task error (not compared: the text says it all)
    task_error: TaskError | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Log:
    """A detail for the log only (not the progress display)."""

    text: str


@dataclass(frozen=True)
class StepStarted:
    iteration: int
    task: str
    nodes: list[str]


@dataclass(frozen=True)
class NodeDone:
    node: str
    ok: bool


@dataclass(frozen=True)
class StepDone:
    """A step completed: ``ok`` of ``total`` nodes succeeded (``total == 0``: on the coordinator)."""

    iteration: int
    task: str
    ok: int
    total: int


@dataclass(frozen=True)
class SwarmEnded:
    """The run is over; the engine takes no more events."""

    state: RunState
    reason: str


Action = (
    PublishBlob
    | ClearBlobs
    | Assign
    | PublishState
    | KeepValue
    | RecordResult
    | RecordLateResult
    | RecordRun
    | RecordGlobals
    | SaveCheckpoint
    | RunLocal
    | Quarantine
    | Reject
    | Info
    | Warn
    | Log
    | StepStarted
    | NodeDone
    | StepDone
    | SwarmEnded
)
