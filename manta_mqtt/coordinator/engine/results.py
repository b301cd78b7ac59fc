"""The rules for results that are not simply taken: what an accepted one may carry, early ones
(before their step opens) and late ones (a straggler's, after its step closed)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...protocol.budget import SenderBudget
from ...protocol.chunking import sha256
from ...protocol.limits import MAX_EARLY_RESULTS
from ...protocol.messages import BlobRef, GlobalRefs, ResultEnvelope, Value
from ...swarm.graph import Task
from . import actions as act
from .decisions import Decisions

#: The node name under which coordinator-placed tasks record their runs and results.
COORDINATOR_NODE = "coordinator"

OK = "ok"  # ResultEnvelope.status of a run that succeeded


@dataclass(frozen=True)
class Carried:
    """What an accepted result changes beyond its outcome, and what it tried to but may not."""

    results: dict[str, Value]
    global_writes: dict[str, Value]
    schedule: list[tuple[str, list[str]]]
    stop: bool
    refused: list[str] = field(default_factory=list)


def carried(envelope: ResultEnvelope, task: Task) -> Carried:
    """What a node's result may carry: a run that failed changes nothing but its outcome; one
    that succeeded brings its results, and only the globals and control requests its task lets
    nodes make (``Task.globals_from_nodes``, ``Task.control_from_nodes``; by default none)."""
    e = envelope
    if e.status != OK:
        return Carried({}, {}, [], False)
    refused = [f"may not set global {tag!r}" for tag in e.global_writes if not task.node_may_set(tag)]
    writes = {tag: v for tag, v in e.global_writes.items() if task.node_may_set(tag)}
    if task.control_from_nodes:
        return Carried(dict(e.results), writes, list(e.schedule), e.stop, refused)
    refused += ["may not call schedule_next_iter"] if e.schedule else []
    refused += ["may not call stop_swarm"] if e.stop else []
    return Carried(dict(e.results), writes, [], False, refused)


def value_sha(value: Value, out: list[act.Action]) -> str:
    """The sha256 a value is stored under; an inline value is handed to the store first."""
    if isinstance(value, BlobRef):
        return value.sha
    out.append(act.KeepValue(value))
    return sha256(value)


def take(e: ResultEnvelope, task: Task, global_refs: GlobalRefs, decisions: Decisions, out: list[act.Action]) -> None:
    """Apply an accepted result: record what it carries, set the globals it wrote, and add its
    control requests to this iteration's decisions; count what it may not do."""
    taken = carried(e, task)
    detail = f"results from {e.node} for {e.task}@{e.iteration}"
    out.extend(act.Reject("forbidden", f"{detail}: {what}") for what in taken.refused)
    for tag, value in taken.results.items():
        out.append(act.RecordResult(e.iteration, e.task, e.node, tag, value_sha(value, out)))
    for tag, value in taken.global_writes.items():
        global_refs[tag] = value_sha(value, out)
    for alias, node_ids in taken.schedule:
        decisions.add_schedule(alias, node_ids)
    if taken.stop:
        decisions.stop(f"{e.task}@{e.node}")
    out.append(act.RecordRun(e.iteration, e.task, e.node, e.status == OK, e.error, e.duration))


@dataclass
class Early:
    node: str  # the topic it came on
    envelope: ResultEnvelope
    missing: set[str]  # its uploads not stored yet
    size: int  # bytes, as received


class EarlyResults:
    """Results for the current iteration that came while no node step was open; they are
    judged when the next step opens. Bounded: ``MAX_EARLY_RESULTS`` of them, and bytes per node
    and in total (``budget``); past a bound they are refused."""

    def __init__(self, budget: SenderBudget) -> None:
        self._kept: list[Early] = []
        self._budget = budget

    def keep(self, node: str, e: ResultEnvelope, missing: set[str], size: int, out: list[act.Action]) -> None:
        if len(self._kept) >= MAX_EARLY_RESULTS:
            out.append(act.Reject("overflow", f"results from {node}: too many before their step opened"))
        elif why := self._budget.take(node, size):
            out.append(act.Reject("overflow", f"results from {node} before their step opened: {why}"))
        else:
            self._kept.append(Early(node, e, missing, size))

    def uploaded(self, sha: str) -> None:
        for entry in self._kept:
            entry.missing.discard(sha)

    def drain(self) -> list[Early]:
        kept, self._kept = self._kept, []
        for entry in kept:
            self._budget.give_back(entry.node, entry.size)
        return kept


class LateResults:
    """A straggler's result for a step that closed without it is recorded apart (never
    selected by tasks), once; any other result for a closed step is refused as ``late``."""

    def __init__(self) -> None:
        self._stragglers: dict[tuple[int, str], set[str]] = {}  # closed step -> nodes without a success

    def closed(self, iteration: int, task: str, stragglers: list[str]) -> None:
        self._stragglers[(iteration, task)] = set(stragglers)

    def closed_step(self, e: ResultEnvelope) -> bool:
        """Whether ``e`` is for a step that already closed (so it is late, not early)."""
        return (e.iteration, e.task) in self._stragglers

    def take(self, e: ResultEnvelope, missing: set[str], out: list[act.Action]) -> None:
        stragglers = self._stragglers.get((e.iteration, e.task), set())
        detail = f"results from {e.node} for {e.task}@{e.iteration}"
        if e.node not in stragglers or e.status != OK:
            out.append(act.Reject("late", detail))
            return
        stragglers.discard(e.node)
        for tag, value in e.results.items():
            if isinstance(value, BlobRef) and value.sha in missing:
                continue  # its upload did not make it; the late result is recorded without it
            out.append(act.RecordLateResult(e.iteration, e.task, e.node, tag, value_sha(value, out)))
        out.append(act.Reject("late", detail + " (recorded as late)"))
