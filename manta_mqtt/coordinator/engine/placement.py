"""Choosing the nodes a task runs on (Manta's scheduling rules), as a pure function."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from ...swarm.graph import Task


def eligible_nodes(task: Task, online: Mapping[str, Sequence[str]]) -> list[str]:
    """Online nodes that have every dataset the module needs and pass the id filters."""
    needed = set(task.module.datasets)
    nodes = [n for n, datasets in online.items() if needed <= set(datasets)]
    if task.specified_ids:
        nodes = [n for n in nodes if n in task.specified_ids]
    if task.excepted_ids:
        nodes = [n for n in nodes if n not in task.excepted_ids]
    return sorted(nodes)


def ineligibility(task: Task, node: str, datasets: Sequence[str]) -> str:
    """Why an online node may not run ``task`` ("" if it may): what :func:`eligible_nodes` checks."""
    lacking = [d for d in task.module.datasets if d not in datasets]
    if lacking:
        return f"lacks {', '.join(lacking)}"
    if task.specified_ids and node not in task.specified_ids:
        return f"not in {task.name}'s node list"
    if task.excepted_ids and node in task.excepted_ids:
        return f"excluded by {task.name}"
    return ""


def select_nodes(
    task: Task,
    online: Mapping[str, Sequence[str]],
    *,
    previous: Sequence[str] | None = None,
    rng: random.Random | None = None,
) -> list[str]:
    """The nodes for one run of ``task``.

    ``fixed`` tasks keep their previous nodes while those stay eligible; otherwise ``maximum``
    (count, or fraction of the eligible nodes) picks a random sample, reproducible with a
    seeded ``rng``.
    """
    eligible = eligible_nodes(task, online)
    cap = task.node_cap(len(eligible))
    if task.fixed and previous:
        kept = [n for n in previous if n in eligible]
        if kept:
            return sorted(kept)[:cap] if cap else []
    if cap >= len(eligible):
        return eligible
    return sorted((rng or random.Random(0)).sample(eligible, cap))


def choose_nodes(
    task: Task,
    online: Mapping[str, Sequence[str]],
    forced: Sequence[str] | None,
    previous: Sequence[str] | None,
    rng: random.Random,
) -> tuple[list[str], tuple[str, ...]]:
    """The nodes for a step, and the scheduled ones that are not available.

    ``forced``: the nodes a task named with ``schedule_next_iter`` (those still eligible run
    it); otherwise the task's own rules choose among the online nodes.
    """
    if forced is None:
        return select_nodes(task, online, previous=previous, rng=rng), ()
    eligible = set(eligible_nodes(task, online))
    return sorted(n for n in forced if n in eligible), tuple(sorted(set(forced) - eligible))
