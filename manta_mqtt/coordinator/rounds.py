"""Round state, with no I/O: who must answer a step, who did, and what the swarm does next.

A :class:`StepRound` is one task run on a set of nodes for one iteration. It is idempotent on
(swarm, iteration, task, node): a duplicate changes nothing, a result for another step is
"late", one from a node that was not asked is "unexpected". No step waits forever: a node
that goes offline or passes the deadline is marked failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..protocol.messages import ResultEnvelope
from ..swarm.graph import SwarmGraph


class Verdict(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"
    UNEXPECTED = "unexpected"
    FORGED = "forged"


@dataclass
class NodeOutcome:
    ok: bool
    error: str = ""
    duration: float = 0.0


@dataclass
class StepRound:
    swarm: str
    iteration: int
    task: str
    nodes: list[str]
    deadline: float
    attempt: int = 0
    outcomes: dict[str, NodeOutcome] = field(default_factory=dict)

    def judge(self, envelope: ResultEnvelope, topic_node: str) -> Verdict:
        """Classify an envelope that arrived on ``results/{topic_node}``."""
        if envelope.node != topic_node or envelope.swarm != self.swarm:
            return Verdict.FORGED
        if (envelope.iteration, envelope.task) != (self.iteration, self.task):
            return Verdict.LATE
        if envelope.node not in self.nodes:
            return Verdict.UNEXPECTED
        if envelope.node in self.outcomes:
            return Verdict.DUPLICATE
        return Verdict.ACCEPTED

    def record(self, node: str, outcome: NodeOutcome) -> bool:
        """Record ``node``'s outcome once; False when it already had one."""
        if node not in self.nodes or node in self.outcomes:
            return False
        self.outcomes[node] = outcome
        return True

    def node_lost(self, node: str) -> bool:
        return self.record(node, NodeOutcome(False, "node went offline during the step"))

    def expire(self, now: float) -> list[str]:
        """Fail every node still missing at the deadline; return them."""
        if now < self.deadline:
            return []
        missing = self.missing
        for node in missing:
            self.record(node, NodeOutcome(False, "no result before the step deadline"))
        return missing

    @property
    def missing(self) -> list[str]:
        return [n for n in self.nodes if n not in self.outcomes]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def succeeded(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o.ok]


@dataclass
class Decisions:
    """Control requests tasks made during one iteration."""

    schedule: dict[str, list[str]] = field(default_factory=dict)  # alias -> node ids
    stop_by: str = ""

    def add_schedule(self, alias: str, node_ids: list[str]) -> None:
        merged = self.schedule.setdefault(alias, [])
        merged.extend(n for n in node_ids if n not in merged)

    def stop(self, by: str) -> None:
        self.stop_by = self.stop_by or by


@dataclass
class NextIteration:
    """What follows an iteration: stop, complete, or run ``starts`` with forced nodes."""

    state: str  # "running" | "stopped" | "completed"
    starts: list[str] = field(default_factory=list)
    forced: dict[str, list[str]] = field(default_factory=dict)
    reason: str = ""


def decide(graph: SwarmGraph, decisions: Decisions) -> NextIteration:
    if decisions.stop_by:
        return NextIteration("stopped", reason=f"stopped by task {decisions.stop_by}")
    if decisions.schedule:
        unknown = [a for a in decisions.schedule if a not in graph.tasks]
        if unknown:
            return NextIteration("failed", reason=f"schedule_next_iter named unknown task {unknown[0]!r}")
        starts = [a for a in graph.order if a in decisions.schedule]
        return NextIteration("running", starts=starts, forced=dict(decisions.schedule))
    return NextIteration("completed", reason="no task scheduled another iteration")
