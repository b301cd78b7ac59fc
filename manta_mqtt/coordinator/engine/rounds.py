"""The state of one node step, with no I/O: who must answer, who did, and whether it can end.

A :class:`StepRound` is one task run on a set of nodes for one iteration. It is idempotent on
(swarm, iteration, task, node): a duplicate changes nothing, a result for another step is
"late", one from a node that was not asked is "unexpected". No step waits forever: past its
deadline it proceeds with a quorum, and past its hard deadline it gives up on missing nodes.

It is judged after every result, so every per-result question (is this node asked, how many
answered, how many succeeded, is it complete) is answered from sets and counts kept as outcomes
are recorded, never by a scan of the nodes: a step of 1,000 nodes costs per result what one of 10
does. Only what is asked once per step (:attr:`StepRound.missing`, the lists) walks the nodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from ...protocol.messages import ResultEnvelope


class StepState(Enum):
    PROCEED = "proceed"  # the quorum is met and nothing more is worth waiting for
    WAITING = "waiting"  # nodes are still working, or lost nodes may come back
    SHORT = "short"  # the quorum cannot be met any more (or not in time)


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
    """One task run on ``nodes`` for one iteration.

    ``deadline``: past it, the step proceeds as soon as ``quorum`` nodes succeeded.
    ``hard_deadline``: past it, nodes still missing are failed and nothing more is awaited.
    A node that went offline is *lost*: its result is still welcome while the step is open.
    """

    swarm: str
    iteration: int
    task: str
    nodes: list[str]
    deadline: float
    hard_deadline: float | None = None  # default: the deadline
    quorum: int = 1
    attempt: int = 0
    outcomes: dict[str, NodeOutcome] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    reconnect_grace: float = 0.0  # how long a lost node may take to come back and report
    lost_since: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.give_up = self.deadline if self.hard_deadline is None else max(self.hard_deadline, self.deadline)
        self._position = {n: i for i, n in reversed(list(enumerate(self.nodes)))}  # a node's first place
        self.outcomes = {n: o for n, o in self.outcomes.items() if n in self._position}
        self._ok = {n for n, o in self.outcomes.items() if o.ok}  # kept with outcomes: succeeded, counted

    def asked(self, node: str) -> bool:
        """Whether ``node`` is one of the step's nodes (a set lookup, not a scan)."""
        return node in self._position

    def is_missing(self, node: str) -> bool:
        """Whether ``node`` was asked and has no outcome yet."""
        return node in self._position and node not in self.outcomes

    def in_order(self, nodes: Iterable[str]) -> list[str]:
        """Those of ``nodes`` that the step asked, in the step's order (as :attr:`missing` lists them)."""
        return sorted((n for n in set(nodes) if n in self._position), key=self._position.__getitem__)

    def _set(self, node: str, outcome: NodeOutcome) -> None:
        self.outcomes[node] = outcome
        if outcome.ok:
            self._ok.add(node)
        else:
            self._ok.discard(node)

    def judge(self, envelope: ResultEnvelope, topic_node: str) -> Verdict:
        """Classify an envelope that arrived on ``results/{topic_node}``."""
        if envelope.node != topic_node or envelope.swarm != self.swarm:
            return Verdict.FORGED
        if (envelope.iteration, envelope.task) != (self.iteration, self.task):
            return Verdict.LATE
        if envelope.node not in self._position:
            return Verdict.UNEXPECTED
        if envelope.node in self.outcomes and envelope.node not in self.lost:
            return Verdict.DUPLICATE
        return Verdict.ACCEPTED

    def record(self, node: str, outcome: NodeOutcome) -> bool:
        """Record ``node``'s outcome once (a lost node may still report); False if refused."""
        if node not in self._position or (node in self.outcomes and node not in self.lost):
            return False
        self._set(node, outcome)
        self.lost.discard(node)
        return True

    def node_lost(self, node: str, now: float = 0.0) -> bool:
        """The node went offline before reporting: failed for now, welcome back while open.

        For ``reconnect_grace`` seconds the step does not count it as settled: a broker restart
        or a Wi-Fi hiccup looks the same as a death at first.
        """
        if node not in self._position or node in self.outcomes:
            return False
        self._set(node, NodeOutcome(False, "node went offline during the step"))
        self.lost.add(node)
        self.lost_since[node] = now
        return True

    def expire(self, now: float) -> list[str]:
        """Past the hard deadline, fail every node still missing; return them."""
        if now < self.give_up or self.complete:
            return []
        missing = self.missing
        for node in missing:
            self.record(node, NodeOutcome(False, "no result before the step deadline"))
        return missing

    def state(self, now: float, wait_for_lost: bool = True) -> StepState:
        """``PROCEED`` (quorum met, and every node settled or the deadline passed), ``WAITING``
        (nodes still working, lost nodes still in their grace, or waited for), or ``SHORT``
        (past the hard deadline, or nothing left to wait for, without the quorum).
        Running nodes are waited for even when the quorum is already out of reach, so that
        their successes count before a retry."""
        ok = self.succeeded_count
        returning = [n for n in self.lost if now < self.lost_since.get(n, 0.0) + self.reconnect_grace]
        settled = self.complete and not returning
        if ok >= self.quorum and (settled or now >= self.deadline):
            return StepState.PROCEED
        if now >= self.give_up:
            return StepState.SHORT
        if not self.complete or returning or (wait_for_lost and self.lost):
            return StepState.WAITING
        return StepState.SHORT

    def next_change(self, now: float) -> float | None:
        """The earliest time after ``now`` when :meth:`state` or :meth:`expire` may change
        with no new event: the deadline, a lost node's grace running out, or giving up."""
        times = [self.deadline, self.give_up, *(since + self.reconnect_grace for since in self.lost_since.values())]
        future = [t for t in times if t > now]
        return min(future) if future else None

    @property
    def missing(self) -> list[str]:
        """The nodes without an outcome, in the step's order: a scan, for what happens once per step."""
        return [n for n in self.nodes if n not in self.outcomes]

    @property
    def complete(self) -> bool:
        return len(self.outcomes) == len(self._position)  # outcomes only ever holds asked nodes

    @property
    def succeeded(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o.ok]

    @property
    def succeeded_count(self) -> int:
        return len(self._ok)

    @property
    def stragglers(self) -> list[str]:
        """Nodes without a success: a result they send after the step closed is late."""
        return [n for n in self.nodes if not (n in self.outcomes and self.outcomes[n].ok)]


def quorum_size(quorum: int | float | None, assigned: int) -> int:
    """How many successes a step needs: all (None), a count, or a fraction of those assigned."""
    if quorum is None:
        return assigned
    if isinstance(quorum, float):
        return max(1, math.ceil(quorum * assigned))
    return max(1, min(quorum, assigned))
