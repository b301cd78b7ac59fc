"""One node step across its attempts: its round, its assignment, and results waiting for uploads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ...protocol.messages import Assignment, GlobalRefs, ResultEnvelope
from ...swarm.graph import Task
from .actions import PublishState
from .checkpoint import OpenStep
from .decisions import RunState
from .plan import Plan
from .rounds import NodeOutcome, StepRound, Verdict


@dataclass
class Parked:
    """A result that passed judgement but whose uploads are still arriving."""

    envelope: ResultEnvelope
    missing: set[str]


@dataclass
class NodeStep:
    """A task's run on a set of nodes for one iteration; a retry reopens it with attempt + 1.

    ``quorum`` is fixed when the step first opens and kept across retries; ``parked`` results
    survive a retry too (their node may be asked again, and its result still counts).
    """

    task: Task
    round: StepRound
    assignment: Assignment
    quorum: int
    parked: dict[str, Parked] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        plan: Plan,
        iteration: int,
        task: Task,
        nodes: list[str],
        *,
        attempt: int,
        quorum: int,
        global_refs: GlobalRefs,
        successes: Mapping[str, NodeOutcome],
        parked: dict[str, Parked],
        now: float,
    ) -> NodeStep:
        """Its deadlines run from ``now``: proceed with a quorum at ``task.deadline`` (default:
        wait for all), give up at ``timeout`` + grace (+ ``max_wait`` when waiting for lost nodes)."""
        hard = now + task.timeout + plan.timing.grace
        soft = now + task.deadline if task.deadline is not None else hard
        if task.on_short == "wait":
            hard += task.max_wait
        grace = plan.timing.reconnect_grace
        round_ = StepRound(plan.swarm, iteration, task.name, nodes, soft, hard, quorum, attempt, reconnect_grace=grace)
        for node, outcome in successes.items():
            round_.record(node, outcome)  # ignored for nodes not in this step
        code, refs, datasets = plan.code[task.name], dict(global_refs), list(task.module.datasets)
        assignment = Assignment(plan.swarm, iteration, task.name, attempt, code, refs, datasets, task.timeout)
        return cls(task, round_, assignment, quorum, parked)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def attempt(self) -> int:
        return self.assignment.attempt

    @property
    def waits_for_lost(self) -> bool:
        return self.task.on_short == "wait"

    @property
    def may_retry(self) -> bool:
        return self.task.on_short == "retry" and self.attempt < self.task.retries

    def record(self) -> OpenStep:
        return OpenStep(self.name, list(self.round.nodes), self.attempt)

    def progress(self) -> PublishState:
        r = self.round
        return PublishState(RunState.RUNNING, r.iteration, step=r.task, done=len(r.outcomes), expected=len(r.nodes))

    def successes(self) -> dict[str, NodeOutcome]:
        return {n: self.round.outcomes[n] for n in self.round.succeeded}

    def uploaded(self, sha: str) -> list[tuple[str, ResultEnvelope, Verdict]]:
        """A blob arrived: the parked results it completes, judged again (the step may have
        moved on to another attempt, or the node may have answered meanwhile)."""
        ready = []
        for node, parked in list(self.parked.items()):
            parked.missing.discard(sha)
            if not parked.missing:
                del self.parked[node]
                ready.append((node, parked.envelope, self.round.judge(parked.envelope, node)))
        return ready

    def shortfall(self) -> str:
        """Why the step failed, for the person running the swarm."""
        failed = [o.error for o in self.round.outcomes.values() if not o.ok]
        first = failed[0] if failed else "no node answered"
        succeeded, assigned = len(self.round.succeeded), len(self.round.nodes)
        counts = f"{succeeded} of {assigned} node(s) succeeded, {self.quorum} needed"
        return f"task {self.name}: {counts}; first error:\n{first}"
