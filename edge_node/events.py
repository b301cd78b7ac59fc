"""What the agent's threads hand each other: jobs, and the events on the main thread's inbox.

Nothing here changes once made, so it can cross threads through a queue. The one exception is
a job's ``cancel`` event: a thread-safe flag, set by the main thread only, read by the worker
and by the task executor.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from manta_mqtt.protocol.messages import Assignment

from .outbox import Key


def key_of(a: Assignment) -> Key:
    """An assignment's identity: the same key twice is the same work (a duplicate, or a repeat)."""
    return (a.swarm, a.iteration, a.task, a.attempt)


@dataclass(frozen=True, eq=False)
class Job:
    """One accepted assignment, from the job book through the worker's queue to its result."""

    assignment: Assignment
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> Key:
        return key_of(self.assignment)

    @property
    def label(self) -> str:
        """What the retained status says is running."""
        a = self.assignment
        return f"{a.swarm}/{a.iteration}/{a.task}"


# --- from paho's network thread ----------------------------------------------------------------


@dataclass(frozen=True)
class AssignmentArrived:
    """A well-formed assignment addressed to us (size, topic and swarm already checked)."""

    assignment: Assignment


@dataclass(frozen=True)
class SwarmEnded:
    """A swarm's retained state became terminal: its work is not wanted any more."""

    swarm: str
    state: str


@dataclass(frozen=True)
class Connected:
    """The link (re)connected: time to announce ourselves and deliver the outbox."""


@dataclass(frozen=True)
class DiscoverRequested:
    """A coordinator asked every node for its status (one pending at a time: see ``Intake``)."""


# --- from the worker thread ----------------------------------------------------------------------


@dataclass(frozen=True)
class JobStarted:
    """The worker began running a job (not sent for jobs skipped or answered from the outbox)."""

    key: Key


@dataclass(frozen=True)
class JobFinished:
    """The worker is done with a job it took: ran it, skipped it, or answered it from the outbox."""

    key: Key


@dataclass(frozen=True)
class WorkerCrashed:
    """The worker thread died of a bug or a broken disk: the agent must not go on without it."""

    error: str


BookEvent = AssignmentArrived | SwarmEnded | Connected | JobStarted | JobFinished
Event = BookEvent | WorkerCrashed | DiscoverRequested
