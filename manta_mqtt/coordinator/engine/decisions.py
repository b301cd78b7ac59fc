"""What the swarm does after an iteration, decided from the requests its tasks made."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ...swarm.graph import SwarmGraph


class RunState(str, Enum):
    """A run's state; the values are those of ``SwarmState.state`` on the wire."""

    RUNNING = "running"
    STOPPED = "stopped"  # a task called stop_swarm(), a limit was reached, or the user stopped it
    COMPLETED = "completed"  # no task scheduled another iteration
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the coordinator was signalled (Ctrl-C, SIGTERM): --resume continues it


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
    """What follows an iteration: stop, complete, fail, or run ``starts`` with forced nodes."""

    state: RunState
    starts: list[str] = field(default_factory=list)
    forced: dict[str, list[str]] = field(default_factory=dict)
    reason: str = ""


def decide(graph: SwarmGraph, decisions: Decisions) -> NextIteration:
    if decisions.stop_by:
        return NextIteration(RunState.STOPPED, reason=f"stopped by task {decisions.stop_by}")
    if decisions.schedule:
        unknown = [a for a in decisions.schedule if a not in graph.tasks]
        if unknown:
            return NextIteration(RunState.FAILED, reason=f"schedule_next_iter named unknown task {unknown[0]!r}")
        starts = [a for a in graph.order if a in decisions.schedule]
        return NextIteration(RunState.RUNNING, starts=starts, forced=dict(decisions.schedule))
    return NextIteration(RunState.COMPLETED, reason="no task scheduled another iteration")
