"""The main thread's rules for assignments, as plain code: no MQTT, no threads, no clock.

:class:`JobBook` takes one inbox event at a time and answers with the actions the agent must
carry out. It alone knows which jobs are queued or running and which swarms are over, so the
checks that once raced across threads are single steps of one thread: an assignment stays known
(and its repeats are duplicates) from the moment it is accepted until the worker is done with
it, and a swarm's end cancels exactly the jobs of that swarm, whether queued or running. It also
bounds the worker's queue: only jobs it dispatched enter it, and it holds at most
``MAX_QUEUED_JOBS`` behind the running one (a flood of assignments is refused, not queued).
"""

from __future__ import annotations

from dataclasses import dataclass

from manta_mqtt.ownership import Owner
from manta_mqtt.protocol.limits import MAX_FINISHED_SWARMS, MAX_QUEUED_JOBS
from manta_mqtt.protocol.messages import Assignment, SwarmState

from .events import AssignmentArrived, BookEvent, Connected, Job, JobFinished, JobStarted, SwarmEnded, key_of
from .outbox import Key


@dataclass(frozen=True)
class Reject:
    """Count and log a refused assignment (reasons of :mod:`manta_mqtt.protocol.rejections`)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Dispatch:
    """Hand a new job to the worker."""

    job: Job


@dataclass(frozen=True)
class Cancel:
    """Set the job's cancel event: the worker skips it, or the executor kills its task."""

    job: Job
    why: str


@dataclass(frozen=True)
class Announce:
    """Publish the retained status: what is running changed, or we (re)connected."""


@dataclass(frozen=True)
class DeliverPending:
    """Ask the worker to deliver the outbox's pending results."""


Action = Reject | Dispatch | Cancel | Announce | DeliverPending


class JobBook:
    """Jobs queued or running, by key; finished swarms; the running job. Main thread only."""

    def __init__(self, max_queued: int = MAX_QUEUED_JOBS) -> None:
        self.owner = Owner("job book")
        self.max_queued = max_queued  # accepted jobs not running yet (each waits in the worker's queue)
        self._jobs: dict[Key, Job] = {}  # accepted and not yet finished by the worker
        self._running: Job | None = None  # between the worker's JobStarted and JobFinished
        self._finished: dict[str, None] = {}  # swarms whose state was terminal, oldest first: refuse their work
        self._again: dict[Key, Assignment] = {}  # asked again while its cancelled job winds down (one per job)

    def handle(self, event: BookEvent) -> list[Action]:
        self.owner.check()
        if isinstance(event, AssignmentArrived):
            return self._arrived(event.assignment)
        if isinstance(event, SwarmEnded):
            return self._ended(event.swarm, event.state)
        if isinstance(event, Connected):
            return [Announce(), DeliverPending()]
        if isinstance(event, JobStarted):
            self._running = self._jobs.get(event.key)
            return [Announce()]
        return self._done(event)

    @property
    def running(self) -> Job | None:
        self.owner.check()
        return self._running

    def jobs(self) -> list[Job]:
        """Every job queued or running."""
        self.owner.check()
        return list(self._jobs.values())

    def queued(self) -> int:
        """Jobs accepted and not running: dispatched to the worker, or cancelled and not yet skipped."""
        self.owner.check()
        return len(self._jobs) - (self._running is not None)

    def is_finished(self, swarm: str) -> bool:
        self.owner.check()
        return swarm in self._finished

    def _arrived(self, a: Assignment) -> list[Action]:
        key = key_of(a)
        if a.swarm in self._finished:
            return [Reject("late", f"assignment for finished swarm {a.swarm}")]
        if key in self._jobs:
            if self._jobs[key].cancel.is_set():  # dropped (its coordinator was lost), not ended yet:
                self._again[key] = a  # a resumed coordinator asks again; run it once that one ends
                return []
            return [Reject("duplicate", f"assignment {key} is already queued or running")]
        if self.queued() >= self.max_queued:
            return [Reject("overflow", f"assignment {key}: {self.max_queued} jobs are queued already")]
        job = Job(a)
        self._jobs[key] = job
        return [Dispatch(job)]

    def _done(self, event: JobFinished) -> list[Action]:
        job = self._jobs.pop(event.key, None)
        actions: list[Action] = []
        if job is not None and job is self._running:
            self._running = None
            actions.append(Announce())  # (skipped or answered from the outbox: the status did not change)
        again = self._again.pop(event.key, None)
        return actions + (self._arrived(again) if again is not None else [])

    def _ended(self, swarm: str, state: str) -> list[Action]:
        if swarm in self._finished:
            return []  # the retained state again (a reconnection): its jobs were cancelled already
        if state not in SwarmState.RESUMABLE:  # interrupted or lost: a resumed coordinator may ask again
            self._finished[swarm] = None
        if len(self._finished) > MAX_FINISHED_SWARMS:  # forged terminal states must not grow it forever
            del self._finished[next(iter(self._finished))]
        why = f"swarm {swarm} is {state}"
        return [Cancel(job, why) for job in self._jobs.values() if job.assignment.swarm == swarm]
