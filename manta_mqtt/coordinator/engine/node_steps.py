"""The rules of a step that runs on nodes: assign, judge every result, wait, retry or give up."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ...protocol.budget import SenderBudget
from ...protocol.messages import GlobalRefs, NodeStatus, ResultEnvelope
from ...swarm.graph import Task
from . import actions as act
from .decisions import Decisions
from .placement import eligible_nodes
from .plan import Plan
from .results import OK, EarlyResults, LateResults, take
from .rounds import NodeOutcome, StepState, Verdict
from .staleness import StaleClock
from .step import NodeStep, Parked


@dataclass
class RunData:
    """The run's mutable state that node steps read and change (owned by the engine's thread)."""

    plan: Plan
    iteration: int
    global_refs: GlobalRefs
    decisions: Decisions
    previous_nodes: dict[str, list[str]]
    fleet: dict[str, NodeStatus] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)  # node -> when its last status arrived
    lost_at: dict[str, float] = field(default_factory=dict)  # node -> when it went offline after being online
    clock: StaleClock = field(default_factory=StaleClock)  # when each node goes stale, earliest first
    contributors: set[str] = field(default_factory=set)  # nodes with results taken this iteration
    quarantined: set[str] = field(default_factory=set)  # for the rest of the run
    now: float = 0.0  # the time of the event being handled
    out: list[act.Action] = field(default_factory=list)  # actions of the event being handled

    def emit(self, action: act.Action) -> None:
        self.out.append(action)

    def heard(self, status: NodeStatus, now: float) -> None:
        """A status from its node: remember it, and when the node goes stale without another."""
        node = status.node
        before = self.fleet.get(node)
        if status.state != "offline":
            self.lost_at.pop(node, None)
        elif before is not None and before.state != "offline":
            self.lost_at[node] = now
        self.fleet[node] = status
        self.seen[node] = now
        self.clock.touch(node, now + self.stale_after(node))

    def stale(self, node: str) -> bool:
        """No status from ``node`` for :meth:`stale_after` seconds: dead, or a retained status of a
        node that is gone (or never was). Live nodes re-send theirs as a heartbeat."""
        return self.now >= self.seen.get(node, self.now) + self.stale_after(node)

    def stale_after(self, node: str) -> float:
        """``stale_after``, or 3 of the heartbeat intervals the node's status states if longer."""
        status = self.fleet.get(node)
        return max(self.plan.timing.stale_after, 3 * ((status.interval or 0.0) if status is not None else 0.0))

    def unavailable(self, node: str) -> str:
        """Why a node the coordinator heard of is not online for this run ("" if it is)."""
        if node in self.quarantined:
            return "quarantined"
        status = self.fleet.get(node)
        if status is None or status.state == "offline":
            return "offline"
        if self.stale(node):
            return f"stale: no status for {self.now - self.seen.get(node, self.now):.0f} s"
        return ""

    def returning(self, nodes: Iterable[str], now: float) -> dict[str, float]:
        """Those of ``nodes`` that went offline less than ``reconnect_grace`` ago, and until when
        they may come back: a node that moves to another cluster member may announce itself
        only after its result arrived."""
        grace = self.plan.timing.reconnect_grace
        lost = {n: t + grace for n in nodes if (t := self.lost_at.get(n)) is not None and n not in self.quarantined}
        return {n: t for n, t in lost.items() if t > now}

    def online(self) -> dict[str, list[str]]:
        return {
            n: s.datasets
            for n, s in self.fleet.items()
            if s.state != "offline" and not self.stale(n) and n not in self.quarantined
        }


@dataclass(frozen=True)
class Closed:
    task: str
    succeeded: int
    assigned: int


@dataclass(frozen=True)
class Failed:
    reason: str


class NodeSteps:
    """At most one node step open at a time; results for no open step are early or late."""

    def __init__(self, run: RunData, save: Callable[[], act.SaveCheckpoint]) -> None:
        self.run = run
        self._save = save  # the engine's checkpoint, taken once the step is open
        self.step: NodeStep | None = None
        self._recheck: set[str] = set()  # nodes to look at for staleness at the next settle
        plan = run.plan
        self._early = EarlyResults(SenderBudget(per_sender=plan.result_bytes_per_node, total=plan.result_bytes_total))
        self._late = LateResults()

    def open(
        self,
        task: Task,
        nodes: list[str],
        attempt: int,
        quorum: int,
        successes: Mapping[str, NodeOutcome],
        now: float,
        parked: dict[str, Parked] | None = None,
    ) -> None:
        """Assign ``task`` to ``nodes``; earlier successes (a retry, a resumed step) count."""
        run = self.run
        run.previous_nodes[task.name] = list(nodes)
        for sha in run.global_refs.values():
            run.emit(act.PublishBlob(sha))
        step = self.step = NodeStep.open(
            run.plan,
            run.iteration,
            task,
            nodes,
            attempt=attempt,
            quorum=quorum,
            global_refs=run.global_refs,
            successes=successes,
            parked=parked or {},
            now=now,
        )
        self._recheck = set(nodes)  # once per step; after that, the stale clock says who to look at
        run.emit(self._save())
        run.emit(act.StepStarted(run.iteration, task.name, list(nodes)))
        run.emit(step.progress())
        for node in step.round.missing:
            run.emit(act.Assign(node, step.assignment))
        for early in self._early.drain():
            self.envelope(early.node, early.envelope, early.missing, early.size)

    def settle(self, now: float) -> Closed | Failed | None:
        """End the open step when its rules say so: proceed, retry, or fail (None: it goes on)."""
        step = self.step
        if step is None:
            return None
        for node in step.round.expire(now):
            self._node_failed(step, node, "no result before the step deadline")
        for node in self._gone_stale(step, now):
            if step.round.node_lost(node, now):
                self._node_failed(step, node, f"no status from the node for {self.run.stale_after(node):.0f} s")
        state = step.round.state(now, wait_for_lost=step.waits_for_lost)
        if state is StepState.PROCEED:
            return self._close(step)
        if state is StepState.SHORT and step.may_retry:
            self._retry(step, now)
            return self.settle(now)
        if state is StepState.SHORT:
            self.step = None
            return Failed(step.shortfall())
        return None

    def _gone_stale(self, step: NodeStep, now: float) -> list[str]:
        """The step's missing nodes that are stale, in the step's order: only those the stale clock
        fired for (and, once per step, every node) are looked at, not all missing nodes per event."""
        candidates = self.run.clock.fired(now) | self._recheck
        self._recheck = set()
        return [n for n in step.round.in_order(candidates) if step.round.is_missing(n) and self.run.stale(n)]

    def _retry(self, step: NodeStep, now: float) -> None:
        """Run the step again on every eligible online node without a success (attempt + 1)."""
        done = step.round.succeeded
        nodes = sorted(set(done) | set(eligible_nodes(step.task, self.run.online())))
        again = len(nodes) - len(done)
        warning = f"{step.name}: {len(done)} of {step.quorum} needed succeeded; retrying on {again} node(s)"
        self.run.emit(act.Warn(warning))
        self.open(step.task, nodes, step.attempt + 1, step.quorum, step.successes(), now, step.parked)

    def _close(self, step: NodeStep) -> Closed:
        round_, it = step.round, self.run.iteration
        self.step = None
        self._late.closed(it, step.name, round_.stragglers)
        for node in round_.missing:  # past the deadline: their results will be late
            self.run.emit(act.RecordRun(it, step.name, node, False, "missed the step deadline (straggler)", 0.0))
        return Closed(step.name, len(round_.succeeded), len(round_.nodes))

    def _node_failed(self, step: NodeStep, node: str, error: str) -> None:
        """Report a node the round already marked failed (offline, or past the deadline)."""
        self.run.emit(act.RecordRun(self.run.iteration, step.name, node, False, error, 0.0))
        self.run.emit(act.Warn(f"{step.name} on {node}: {error}"))
        self.run.emit(act.NodeDone(node, False))
        self.run.emit(step.progress())

    def status_changed(self, before: NodeStatus | None, status: NodeStatus, now: float) -> None:
        step, node = self.step, status.node
        if step is None or not step.round.asked(node):
            return
        if status.state == "offline":
            if step.round.node_lost(node, now):
                self._node_failed(step, node, "node went offline during the step")
            return
        restarted = before is not None and before.session != status.session
        relinked = before is not None and before.link != status.link  # what we sent it may be lost
        if (node in step.round.lost or restarted or relinked) and node not in step.round.succeeded:
            # back (restarted, having lost its task; or reconnected, maybe to another cluster
            # member that never had its session): ask again; a node that has the result in its
            # outbox sends it, one that is still working ignores the duplicate
            self.run.emit(act.Assign(node, step.assignment))

    def envelope(self, node: str, e: ResultEnvelope, missing: set[str], size: int) -> None:
        """Judge a result that came on ``results/{node}``; ``missing``: its uploads not yet here;
        ``size``: its bytes as received."""
        run, step = self.run, self.step
        if e.swarm != run.plan.swarm:
            return run.emit(act.Reject("unknown_swarm", f"results from {node} for swarm {e.swarm!r}"))
        if step is None and e.iteration == run.iteration and e.node == node and not self._late.closed_step(e):
            return self._early.keep(node, e, missing, size, run.out)  # judged when its step opens
        verdict = step.round.judge(e, node) if step is not None else Verdict.LATE
        if verdict is Verdict.LATE and e.node == node:
            return self._late.take(e, missing, run.out)
        if verdict is not Verdict.ACCEPTED or step is None:
            return self._reject(verdict, node, e)
        if missing:
            before = step.parked.get(node)
            if before is not None and before.envelope == e:  # again while its uploads come: changes nothing
                return self._reject(Verdict.DUPLICATE, node, e)
            step.parked[node] = Parked(e, missing)
        else:
            self._accept(step, e)

    def uploaded(self, sha: str) -> None:
        self._early.uploaded(sha)
        step = self.step
        if step is None:
            return
        for node, e, verdict in step.uploaded(sha):
            if verdict is Verdict.ACCEPTED:
                self._accept(step, e)
            else:
                self._reject(verdict, node, e)

    def _reject(self, verdict: Verdict, node: str, e: ResultEnvelope) -> None:
        self.run.emit(act.Reject(verdict.value, f"results from {node} for {e.task}@{e.iteration}"))

    def _accept(self, step: NodeStep, e: ResultEnvelope) -> None:
        run = self.run
        take(e, step.task, run.global_refs, run.decisions, run.out)
        ok = e.status == OK
        if ok:
            run.contributors.add(e.node)
        step.round.record(e.node, NodeOutcome(ok, e.error, e.duration))
        if not ok:
            failure = act.TaskError(e.task, e.node, e.error)
            run.emit(act.Warn(f"{e.task} failed on {e.node}:\n{e.error}", task_error=failure))
        run.emit(act.NodeDone(e.node, ok))
        run.emit(step.progress())
