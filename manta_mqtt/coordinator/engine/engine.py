"""The coordinator's rules for a whole run, with no I/O, in the style of h11's ``Connection``.

Typed events go in (:mod:`.events`), each with the current time; typed actions come out
(:mod:`.actions`), for the coordinator to carry out in order. Every rule of a run lives in this
package: waiting for nodes and choosing them (here), the rules of a node step
(:mod:`.node_steps`: assignments, results early, parked, late, duplicate or forged, deadlines,
the quorum, ``on_short``), coordinator-placed tasks and the end of an iteration and of the run
(here). The engine reads no clock, touches no socket, file or store, and is owned by one
thread: the coordinator's main thread.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from enum import Enum

from ...ownership import Owner
from ...protocol.messages import NodeStatus
from ...swarm.graph import Task
from . import actions as act
from .checkpoint import Checkpoint, OpenStep, rng_state_from_json, rng_state_to_json
from .decisions import Decisions, RunState, decide
from .events import (
    EnvelopeArrived,
    Event,
    Reconnected,
    StatusChanged,
    StopRequested,
    TaskFinished,
    UploadCompleted,
)
from .local_steps import LocalSteps
from .node_steps import Closed, Failed, NodeSteps, RunData
from .placement import choose_nodes, eligible_nodes, ineligibility
from .plan import Plan
from .rounds import NodeOutcome, quorum_size


class Phase(Enum):
    GATHERING = "gathering"  # before the first step: waiting for the minimum of eligible nodes
    CHOOSING = "choosing"  # a node step waits for an eligible node
    ON_NODES = "on nodes"  # a node step is open
    LOCAL = "local"  # a coordinator-placed task runs
    ENDED = "ended"


class Engine:
    """One run of a swarm: ``start`` it once, then ``handle`` every event until ``ended``."""

    def __init__(
        self, plan: Plan, checkpoint: Checkpoint, *, seed: int = 0, resumed: Mapping[str, float] | None = None
    ) -> None:
        """``checkpoint``: where to begin (a fresh run's is iteration 0 at the graph's roots).
        ``resumed``: ``{node: duration}`` of successes the store already holds for the
        checkpoint's open step (the coordinator restarted in the middle of it)."""
        self._owner = Owner("the coordinator's engine")
        self.plan, self.graph, self.timing = plan, plan.graph, plan.timing
        self.phase = Phase.GATHERING
        cp = checkpoint
        self.run = RunData(
            plan,
            cp.iteration,
            dict(cp.global_refs),
            Decisions({k: list(v) for k, v in cp.schedule.items()}, cp.stop_by),
            {k: list(v) for k, v in cp.previous_nodes.items()},
        )
        self.run.quarantined = set(cp.quarantined)
        self.nodes = NodeSteps(self.run, self._save)
        self.local = LocalSteps(self.run)
        self.rng = random.Random(seed)
        if cp.rng:
            self.rng.setstate(rng_state_from_json(cp.rng))
        self._starts, self._done = list(cp.starts), list(cp.done_steps)
        self._forced = {k: list(v) for k, v in cp.forced.items()}
        self._resume: OpenStep | None = cp.current
        self._resumed = {n: NodeOutcome(True, "", d) for n, d in (resumed or {}).items()}
        self._todo: list[str] = []  # steps of this iteration still to run
        self._choosing: Task | None = None  # the node step waiting for an eligible node
        self._until = 0.0  # when waiting for nodes gives up
        self._gone: tuple[str, ...] = ()  # scheduled nodes last reported unavailable
        self._returning: float | None = None  # until when the choice waits for scheduled nodes lost moments ago
        self._now = 0.0
        self._stop: StopRequested | None = None  # an operator's stop, carried out after the step under way
        self.started = False  # the first iteration began (a run that never did left nothing to keep)

    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED

    @property
    def iteration(self) -> int:
        return self.run.iteration

    @property
    def global_refs(self) -> dict[str, str]:
        return self.run.global_refs

    # --- the interface ----------------------------------------------------------------------

    def start(self, now: float) -> list[act.Action]:
        self._owner.check()
        self._now = self.run.now = now
        for alias, task in self.graph.tasks.items():
            if task.placement == "nodes":
                self.run.emit(act.PublishBlob(self.plan.code[alias].sha))
        self.run.emit(self._save())
        self.run.emit(act.PublishState(RunState.RUNNING, self.iteration))
        if self._roots():
            self._until = now + self.timing.wait_nodes
            self.run.emit(act.Info(f"waiting for {self.timing.min_nodes} eligible node(s)..."))
            self._gather(now)
        else:
            self._begin_iteration(now)
        self._settle(now)
        return self._flush()

    def handle(self, event: Event, now: float) -> list[act.Action]:
        self._owner.check()
        self._now = self.run.now = now
        if self.ended:
            return []
        if isinstance(event, StatusChanged):
            self._on_status(event.status, now)
        elif isinstance(event, EnvelopeArrived):
            self.nodes.envelope(event.node, event.envelope, set(event.missing), event.size)
        elif isinstance(event, UploadCompleted):
            self.nodes.uploaded(event.sha)
        elif isinstance(event, TaskFinished):
            self._on_task_finished(event, now)
        elif isinstance(event, StopRequested):
            self._on_stop_requested(event)
        elif isinstance(event, Reconnected):
            self._on_reconnected()
        elif self.phase is Phase.GATHERING:  # a Tick
            self._gather(now)
        elif self.phase is Phase.CHOOSING:
            self._choose(now)
        self._settle(now)
        return self._flush()

    def next_timer(self) -> float | None:
        """When to send a :class:`Tick` if nothing else happens (None: no deadline pending)."""
        if self.phase is Phase.CHOOSING and self._returning is not None:
            return min(self._until, self._returning)
        if self.phase in (Phase.GATHERING, Phase.CHOOSING):
            return self._until
        step = self.nodes.step
        if step is None:
            return None
        stale_at = self.run.clock.next_due(self._now)  # any node's, asked or not: at worst an idle tick
        times = [t for t in (step.round.next_change(self._now), stale_at) if t is not None and t > self._now]
        return min(times, default=None)

    def checkpoint(self) -> Checkpoint:
        run, step = self.run, self.nodes.step
        return Checkpoint(
            iteration=run.iteration,
            starts=list(self._starts),
            forced={k: list(v) for k, v in self._forced.items()},
            done_steps=list(self._done),
            global_refs=dict(run.global_refs),
            schedule={k: list(v) for k, v in run.decisions.schedule.items()},
            stop_by=run.decisions.stop_by,
            previous_nodes={k: list(v) for k, v in run.previous_nodes.items()},
            rng=rng_state_to_json(self.rng.getstate()),
            current=step.record() if step is not None else self._resume,
            quarantined=sorted(run.quarantined),
        )

    # --- plumbing ---------------------------------------------------------------------------

    def _flush(self) -> list[act.Action]:
        out, self.run.out = self.run.out, []
        return out

    def _save(self) -> act.SaveCheckpoint:
        return act.SaveCheckpoint(self.checkpoint())

    def _end(self, state: RunState, reason: str) -> None:
        self.phase = Phase.ENDED
        self._choosing = self.local.task = None
        self.run.emit(act.SwarmEnded(state, reason))

    def _roots(self) -> list[Task]:
        return [t for a in self.graph.roots() if (t := self.graph.tasks[a]).placement == "nodes"]

    # --- the iteration ------------------------------------------------------------------------

    def _gather(self, now: float) -> None:
        """Before the first step: wait for ``min_nodes`` eligible nodes; at the deadline fail,
        or start with fewer (``Timing.start_with_fewer``)."""
        want, waited = self.timing.min_nodes, self.timing.wait_nodes
        if len(self.run.fleet) < want and now < self._until:
            return  # too few nodes heard of to be enough: no scan of the fleet per status while it gathers
        online = self.run.online()
        task = min(self._roots(), key=lambda t: len(eligible_nodes(t, online)))  # the scarcest root
        eligible = eligible_nodes(task, online)
        have, why = len(eligible), self._not_eligible(task)
        if have >= want:
            self.run.emit(act.Info(f"{have} node(s) online: {', '.join(sorted(online))}"))
        elif now < self._until:
            return
        elif have == 0:
            details = f"; not eligible: {why}" if why else ""
            return self._end(RunState.FAILED, f"no eligible node came online within {waited:.0f} s{details}")
        elif not self.timing.start_with_fewer:
            details = f"; not eligible: {why}" if why else ""
            reason = f"only {have} of {want} eligible node(s) online within {waited:.0f} s ({', '.join(eligible)})"
            return self._end(RunState.FAILED, f"{reason}{details} (--start-with-fewer starts anyway)")
        else:
            self.run.emit(act.Warn(f"only {have} of {want} node(s) online; starting anyway"))
        if why:
            self.run.emit(act.Info(f"not eligible for {task.name}: {why}"))
        self._begin_iteration(now)

    def _not_eligible(self, task: Task) -> str:
        """Every node heard of that may not run ``task``, and why: "n4 (lacks x.npy), n5 (offline)"."""
        reasons = []
        for node in sorted(self.run.fleet):
            status = self.run.fleet[node]
            why = self.run.unavailable(node) or ineligibility(task, node, status.datasets)
            if why:
                reasons.append(f"{node} ({why})")
        shown = reasons[:20]
        more = f" and {len(reasons) - len(shown)} more" if len(reasons) > len(shown) else ""
        return ", ".join(shown) + more

    def _begin_iteration(self, now: float) -> None:
        self.started = True
        self._todo = [a for a in self.graph.steps_from(self._starts) if a not in self._done]
        self._next_step(now)

    def _next_step(self, now: float) -> None:
        if not self._todo:
            return self._end_iteration(now)
        task = self.graph.tasks[self._todo.pop(0)]
        if task.placement == "coordinator":
            self.phase = Phase.LOCAL
            self.local.start(task)
        elif self._resume is not None and self._resume.task == task.name:
            nodes, attempt = list(self._resume.nodes), self._resume.attempt
            self._resume = None
            self.phase = Phase.ON_NODES
            self.nodes.open(task, nodes, attempt, quorum_size(task.quorum, len(nodes)), self._resumed, now)
        else:
            self.phase = Phase.CHOOSING
            self._choosing = task
            self._until = now + self.timing.wait_nodes
            self._gone, self._returning = (), None
            self._choose(now)

    def _choose(self, now: float) -> None:
        """Pick the step's nodes (schedule_next_iter's, or by the task's rules) and open it."""
        task = self._choosing
        assert task is not None
        previous = self.run.previous_nodes.get(task.name)
        nodes, gone = choose_nodes(task, self.run.online(), self._forced.get(task.name), previous, self.rng)
        returning = self.run.returning(gone, now)
        if returning:  # scheduled, and lost moments ago: waited for, as an open step waits for a lost node
            until = max(returning.values())
            if self._returning is None:
                who = ", ".join(sorted(returning))
                self.run.emit(act.Info(f"{task.name} waits up to {until - now:.0f} s for {who}, offline moments ago"))
            self._returning = until
            return
        self._returning = None
        if gone and gone != self._gone:
            self.run.emit(act.Warn(f"scheduled node(s) not available for {task.name}: {', '.join(gone)}"))
        self._gone = gone
        if nodes:
            self._choosing = None
            self.phase = Phase.ON_NODES
            self.nodes.open(task, nodes, 0, quorum_size(task.quorum, len(nodes)), {}, now)
        elif now >= self._until:
            self._end(RunState.FAILED, f"no eligible node online for task {task.name}")

    def _settle(self, now: float) -> None:
        if self.phase is not Phase.ON_NODES:
            return
        end = self.nodes.settle(now)
        if isinstance(end, Failed):
            self._end(RunState.FAILED, end.reason)
        elif isinstance(end, Closed):
            self._step_done(end.task, end.succeeded, end.assigned, now)
            self._settle(now)  # the next step may be a node step that can end at once

    def _step_done(self, task: str, ok: int, total: int, now: float) -> None:
        self.run.emit(act.StepDone(self.iteration, task, ok, total))
        self._done.append(task)
        self.run.emit(self._save())
        if self._stop is not None:
            return self._stopped_by_operator()
        self._next_step(now)

    def _end_iteration(self, now: float) -> None:
        run = self.run
        run.emit(act.RecordGlobals(run.iteration, dict(run.global_refs)))
        nxt = decide(self.graph, run.decisions)
        if nxt.state is not RunState.RUNNING:
            return self._end(nxt.state, nxt.reason)
        if run.iteration + 1 >= self.timing.max_iterations:
            return self._end(RunState.STOPPED, f"reached the limit of {self.timing.max_iterations} iterations")
        run.iteration += 1
        run.decisions, run.contributors = Decisions(), set()
        self._starts, self._forced, self._done = nxt.starts, nxt.forced, []
        run.emit(self._save())
        keep = {c.sha for c in self.plan.code.values()} | set(run.global_refs.values())
        run.emit(act.ClearBlobs(frozenset(keep)))
        self._begin_iteration(now)

    # --- events -------------------------------------------------------------------------------

    def _on_stop_requested(self, request: StopRequested) -> None:
        """An operator's stop: at once between steps, else once the step under way ends."""
        if self._stop is not None:
            return
        self._stop = request
        who = request.by or "an operator"
        if self.phase in (Phase.GATHERING, Phase.CHOOSING):
            self.run.emit(act.Info(f"stop requested by {who}"))
            return self._stopped_by_operator()
        self.run.emit(act.Info(f"stop requested by {who}: the swarm ends after the step under way"))

    def _stopped_by_operator(self) -> None:
        assert self._stop is not None
        if self.started:
            self.run.emit(act.RecordGlobals(self.run.iteration, dict(self.run.global_refs)))
        who, why = self._stop.by or "an operator", self._stop.reason
        reason = f"stopped by {who}"
        self._end(RunState.STOPPED, f"{reason}: {why}" if why and why != reason else reason)

    def _on_reconnected(self) -> None:
        """Our will may have told the nodes we were lost (they dropped our jobs): say we run, ask again."""
        step = self.nodes.step
        if step is None:
            self.run.emit(act.PublishState(RunState.RUNNING, self.iteration))
            return
        self.run.emit(step.progress())
        for node in step.round.missing:
            self.run.emit(act.Assign(node, step.assignment))

    def _on_task_finished(self, event: TaskFinished, now: float) -> None:
        if self.phase is not Phase.LOCAL:
            self.run.emit(act.Log(f"ignored the end of task {event.task}: no coordinator task was running"))
            return
        end = self.local.finished(event)
        if isinstance(end, Failed):
            self._end(RunState.FAILED, end.reason)
        elif isinstance(end, Closed):
            self._step_done(end.task, 0, 0, now)

    def _on_status(self, status: NodeStatus, now: float) -> None:
        node = status.node
        before = self.run.fleet.get(node)
        if before is not None and status.superseded_by(before):
            # an earlier connection's will, delivered after the node's next connection announced
            # itself (a cluster's members deliver them late while one of them is down): stale
            self.run.emit(act.Log(f"ignored node {node}'s status of its connection {status.link} (now {before.link})"))
            return
        self.run.heard(status, now)
        if (before is None or before.state == "offline") and status.state != "offline":
            self.run.emit(act.Log(f"node {node} online (datasets: {', '.join(status.datasets) or 'none'})"))
        if self.phase is Phase.GATHERING:
            self._gather(now)
        elif self.phase is Phase.CHOOSING:
            self._choose(now)
        else:
            self.nodes.status_changed(before, status, now)
