"""Tasks placed on the coordinator: run one, take what it wrote, and, when it fails and the task
says ``on_error="quarantine"``, find the nodes whose results make it fail and set them aside.

The search bisects the nodes that contributed results this iteration: the task runs again with
``results.select()`` limited to half of them, then to halves of a failing half, down to single
nodes; a node whose results alone make the task fail is quarantined (its results are left out,
and it is chosen for no later step), then the task runs once more on everyone else's. The
search gives up, and the swarm fails as it would have, when no single node's results make the
task fail (the failure needs several together) or when every node's do (the task itself is
broken). With one culprit among n nodes it costs about 2·log2(n) extra runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...swarm.graph import Task
from . import actions as act
from .decisions import RunState
from .events import TaskFinished
from .node_steps import Closed, Failed, RunData
from .results import COORDINATOR_NODE


@dataclass
class Suspects:
    """Bisection over the nodes that contributed results; no I/O, one probe at a time."""

    candidates: list[str]
    error: str  # why the task failed with everyone's results
    guilty: list[str] = field(default_factory=list)
    _pending: list[list[str]] = field(default_factory=list)
    _probe: list[str] | None = None

    def __post_init__(self) -> None:
        self._pending = _halves(self.candidates)

    @property
    def waiting(self) -> bool:
        """A probe run is out: the next TaskFinished is its answer."""
        return self._probe is not None

    def next_probe(self) -> list[str] | None:
        self._probe = self._pending.pop(0) if self._pending else None
        return self._probe

    def answer(self, ok: bool) -> None:
        group, self._probe = self._probe, None
        assert group is not None
        if ok:
            return
        if len(group) == 1:
            self.guilty.append(group[0])
        else:
            self._pending[:0] = _halves(group)


def _halves(nodes: list[str]) -> list[list[str]]:
    if len(nodes) <= 1:
        return [list(nodes)]
    middle = len(nodes) // 2
    return [nodes[:middle], nodes[middle:]]


class LocalSteps:
    """The coordinator-placed task running now, and its quarantine search if one is under way."""

    def __init__(self, run: RunData) -> None:
        self.run = run
        self.task: Task | None = None
        self._search: Suspects | None = None

    def start(self, task: Task) -> None:
        self.task, self._search = task, None
        self.run.emit(act.PublishState(RunState.RUNNING, self.run.iteration, step=task.name))
        self._run()

    def _run(self, only: list[str] | None = None) -> None:
        assert self.task is not None
        run = self.run
        limit = frozenset(only) if only is not None else None
        run.emit(act.RunLocal(self.task.name, run.iteration, dict(run.global_refs), limit, frozenset(run.quarantined)))

    def finished(self, event: TaskFinished) -> Closed | Failed | None:
        """The task (or one of its probe runs) ended: the step is done, failed, or goes on."""
        task, search, run = self.task, self._search, self.run
        if task is None or event.task != task.name:
            run.emit(act.Log(f"ignored the end of task {event.task}: it was not running"))
            return None
        if search is not None and search.waiting:  # a probe: what it wrote is thrown away
            search.answer(event.ok)
            return self._next_probe(task, search)
        it, writes = run.iteration, event.writes
        if event.ok:
            for tag, sha in writes.results.items():
                run.emit(act.RecordResult(it, task.name, COORDINATOR_NODE, tag, sha))
        run.emit(act.RecordRun(it, task.name, COORDINATOR_NODE, event.ok, event.error, event.duration))
        if event.ok:
            self.task = None
            run.global_refs.update(writes.global_refs)
            for alias, node_ids in writes.schedule:
                run.decisions.add_schedule(alias, node_ids)
            if writes.stop:
                run.decisions.stop(task.name)
            return Closed(task.name, 0, 0)
        candidates = sorted(run.contributors - run.quarantined)
        if task.on_error == "quarantine" and search is None and candidates:
            looking = f"{task.name} failed; looking for the node(s) whose results make it fail"
            run.emit(act.Warn(f"{looking}:\n{event.error}"))
            self._search = Suspects(candidates, event.error)
            return self._next_probe(task, self._search)
        self.task = None
        return Failed(f"task {task.name} failed on the coordinator:\n{event.error}")

    def _next_probe(self, task: Task, search: Suspects) -> Failed | None:
        group = search.next_probe()
        if group is not None:
            self._run(only=group)
            return None
        self.task = None
        if not search.guilty:
            return Failed(f"task {task.name} failed, and on no single node's results alone:\n{search.error}")
        if len(search.guilty) == len(search.candidates):
            return Failed(f"task {task.name} fails on every node's results alone:\n{search.error}")
        for node in search.guilty:
            self.run.quarantined.add(node)
            self.run.emit(act.Quarantine(self.run.iteration, task.name, node, search.error))
            self.run.emit(act.Warn(f"{task.name}: node {node} quarantined: its results alone make the task fail"))
        self.task = task  # the real run, on everyone else's results
        self._run()
        return None
