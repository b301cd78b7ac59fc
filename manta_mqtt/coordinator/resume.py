"""What a run records about its swarm, and what ``--resume`` reads back to continue it."""

from __future__ import annotations

from typing import Any

from ..swarm.graph import Task
from . import engine as eng
from .options import SwarmFailed
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
