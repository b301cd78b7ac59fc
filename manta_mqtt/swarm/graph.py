"""``Task``: a module placed in the swarm graph with its scheduling rules.

Calling a task on its predecessors adds the edges: ``scheduler(aggregator(worker()))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from ..protocol.limits import MAX_TASK_TIMEOUT_SECONDS
from ..protocol.topics import check_id
from .module import Module

Placement = Literal["nodes", "coordinator"]
Method = Literal["all", "any"]
OnShort = Literal["wait", "retry", "fail"]
OnError = Literal["fail", "quarantine"]
PLACEMENTS: tuple[Placement, ...] = get_args(Placement)
METHODS: tuple[Method, ...] = get_args(Method)
SHORT_POLICIES: tuple[OnShort, ...] = get_args(OnShort)
ERROR_POLICIES: tuple[OnError, ...] = get_args(OnError)


@dataclass(eq=False)
class Task:
    module: Module
    method: Method = "all"
    fixed: bool = False
    excepted_ids: list[str] | None = None
    specified_ids: list[str] | None = None
    maximum: int | float | None = -1
    alias: str | None = None
    placement: Placement = "nodes"  # "coordinator" runs it beside the coordinator (aggregators, schedulers)
    timeout: float = 600.0  # seconds one run may take before it is killed and reported failed
    # Rounds that end: past `deadline` seconds the step proceeds once `quorum` nodes succeeded
    # (a count, a fraction of the assigned nodes, or None for all of them). When the quorum
    # cannot be met: "wait" up to `max_wait` more seconds for nodes that went offline to come
    # back, "retry" the step on other online nodes up to `retries` times, or "fail" the swarm.
    quorum: int | float | None = 1
    deadline: float | None = None  # default: wait for every node (bounded by timeout + grace)
    on_short: OnShort = "wait"
    max_wait: float = 120.0
    retries: int = 2
    # What a node's result may change beyond its own results (nodes are not trusted; tasks on the
    # coordinator are): the globals it may set (False: none, True: any, or a list of tags), and
    # whether it may call schedule_next_iter / stop_swarm. Anything else is refused and counted.
    globals_from_nodes: bool | Sequence[str] = False
    control_from_nodes: bool = False
    # A coordinator-placed task that raises: "fail" the swarm, or "quarantine" the nodes whose
    # results alone make it raise, and run it on the others' (see engine/local_steps.py).
    on_error: OnError = "fail"
    previous: list[Task] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, not {self.placement!r}")
        self.alias = check_id(self.alias or self.module.name or "", "task alias")
        if isinstance(self.maximum, float) and not 0 < self.maximum <= 1:
            raise ValueError("a fractional maximum must be in (0, 1]")
        if not 0 < self.timeout <= MAX_TASK_TIMEOUT_SECONDS:
            raise ValueError(f"timeout must be positive and at most {MAX_TASK_TIMEOUT_SECONDS:.0f} s (7 days)")
        if self.on_short not in SHORT_POLICIES:
            raise ValueError(f"on_short must be one of {SHORT_POLICIES}, not {self.on_short!r}")
        if isinstance(self.quorum, bool):
            raise ValueError("quorum must be a count, a fraction or None, not a bool")
        if isinstance(self.quorum, float) and not 0 < self.quorum <= 1:
            raise ValueError("a fractional quorum must be in (0, 1]")
        if isinstance(self.quorum, int) and self.quorum < 1:
            raise ValueError("a quorum count must be at least 1")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline must be positive")
        if self.on_error not in ERROR_POLICIES:
            raise ValueError(f"on_error must be one of {ERROR_POLICIES}, not {self.on_error!r}")
        if self.on_error == "quarantine" and self.placement != "coordinator":
            raise ValueError('on_error="quarantine" is for tasks placed on the coordinator (aggregators)')
        if not isinstance(self.globals_from_nodes, bool):
            tags = list(self.globals_from_nodes)
            if isinstance(self.globals_from_nodes, str) or not all(isinstance(t, str) and t for t in tags):
                raise ValueError("globals_from_nodes must be True, False or a list of global tags")
            self.globals_from_nodes = tags

    def node_may_set(self, tag: str) -> bool:
        """Whether a node's result for this task may set global ``tag``."""
        allowed = self.globals_from_nodes
        return allowed if isinstance(allowed, bool) else tag in allowed

    @property
    def name(self) -> str:
        assert self.alias is not None
        return self.alias

    def __call__(self, task: Task | Sequence[Task] | None = None) -> Task:
        """Make this task run after ``task`` (or after each of a list of tasks)."""
        if task is None:
            return self
        for prev in [task] if isinstance(task, Task) else list(task):
            if prev not in self.previous:
                self.previous.append(prev)
        return self

    def node_cap(self, eligible: int) -> int:
        """How many of ``eligible`` nodes this task may use."""
        if self.method == "any":
            return min(1, eligible)
        cap = eligible
        if isinstance(self.maximum, float):
            cap = max(1, math.ceil(self.maximum * eligible))
        elif isinstance(self.maximum, int) and self.maximum > 0:
            cap = min(cap, self.maximum)
        if self.specified_ids:
            cap = min(cap, len(self.specified_ids))
        return min(cap, eligible)


class SwarmGraph:
    """The tasks of one iteration, in an order that respects every edge."""

    def __init__(self, last: Task | Sequence[Task]) -> None:
        tails = [last] if isinstance(last, Task) else list(last)
        if not tails:
            raise ValueError("execute() returned no task")
        found: dict[int, Task] = {}
        stack = list(tails)
        while stack:
            task = stack.pop()
            if id(task) not in found:
                found[id(task)] = task
                stack.extend(task.previous)
        self.tasks: dict[str, Task] = {}
        for task in found.values():
            if task.name in self.tasks:
                raise ValueError(f"two tasks share the alias {task.name!r}: give each an alias")
            self.tasks[task.name] = task
        self.order = self._topological()

    def _topological(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(task: Task) -> None:
            mark = state.get(task.name, 0)
            if mark == 1:
                raise ValueError(f"the task graph has a cycle through {task.name!r}")
            if mark == 2:
                return
            state[task.name] = 1
            for prev in sorted(task.previous, key=lambda t: t.name):
                visit(prev)
            state[task.name] = 2
            order.append(task.name)

        for task in sorted(self.tasks.values(), key=lambda t: t.name):
            visit(task)
        return order

    def roots(self) -> list[str]:
        return [a for a in self.order if not self.tasks[a].previous]

    def successors(self, alias: str) -> list[str]:
        return [a for a in self.order if any(p.name == alias for p in self.tasks[a].previous)]

    def steps_from(self, starts: Sequence[str]) -> list[str]:
        """Every task reachable from ``starts`` (included), in graph order."""
        unknown = [s for s in starts if s not in self.tasks]
        if unknown:
            raise KeyError(f"no task with alias {unknown[0]!r} (known: {', '.join(self.order)})")
        reach = set(starts)
        for alias in self.order:
            if any(p.name in reach for p in self.tasks[alias].previous):
                reach.add(alias)
        return [a for a in self.order if a in reach]
