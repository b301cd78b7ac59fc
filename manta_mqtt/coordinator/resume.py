"""What a run records about its swarm, and what ``--resume`` reads back to continue it."""

from __future__ import annotations

import time
from typing import Any

from ..swarm.graph import SwarmGraph, Task
from ..swarm.swarm import Swarm
from . import engine as eng
from .options import CoordinatorOptions, SwarmFailed
from .store import RunStore

#: Final states a run cannot be continued from: the swarm ended by its own rules.
ENDED = ("stopped", "completed")


def describe(task: Task) -> dict[str, Any]:
    return {
        "module": task.module.name,
        "datasets": task.module.datasets,
        "method": task.method,
        "placement": task.placement,
        "maximum": task.maximum,
        "fixed": task.fixed,
        "previous": [p.name for p in task.previous],
    }


def restore(
    store: RunStore, swarm_id: str, description: dict[str, Any]
) -> tuple[eng.Checkpoint, dict[str, float], dict[str, float]]:
    """Where to continue: the checkpoint, the successes the store holds for its open step
    (``{node: duration}``) and the last metrics. Raises :class:`SwarmFailed`, in one line, for a
    run that cannot be continued (it ended, or the swarm file defines other tasks)."""
    before = store.meta("swarm", {})
    if sorted(before.get("tasks", {})) != sorted(description["tasks"]):
        raise SwarmFailed(f"cannot resume {swarm_id}: the swarm file defines other tasks")
    final = store.meta("final")
    if final and final.get("state") in ENDED:
        why = final.get("reason") or final["state"]
        raise SwarmFailed(f"cannot resume {swarm_id}: it already ended ({why}); start a new run instead")
    data = store.meta("checkpoint")
    if data is None:
        raise SwarmFailed(f"cannot resume {swarm_id}: no checkpoint in {store.root}")
    checkpoint = eng.Checkpoint.from_dict(data)
    metrics = dict(store.meta("metrics", data.get("metrics", {})))
    current = checkpoint.current
    resumed = store.succeeded_nodes(checkpoint.iteration, current.task) if current else {}
    return checkpoint, resumed, metrics


def open_run(
    swarm: Swarm, graph: SwarmGraph, swarm_id: str, options: CoordinatorOptions
) -> tuple[RunStore, eng.Checkpoint | None, dict[str, float], dict[str, float]]:
    """The run's store, created (a new run: no checkpoint) or reopened to resume, with where to
    continue from (:func:`restore`)."""
    description = {
        "id": swarm_id,
        "name": swarm.name,
        "tasks": {a: describe(t) for a, t in graph.tasks.items()},
        "order": graph.order,
        "started": time.time(),
    }
    if options.resume is None:
        return RunStore.create(options.runs_dir, swarm_id, description), None, {}, {}
    store = RunStore.open(options.resume)
    try:
        checkpoint, resumed, metrics = restore(store, swarm_id, description)
    except SwarmFailed:
        store.close()
        raise
    return store, checkpoint, resumed, metrics
