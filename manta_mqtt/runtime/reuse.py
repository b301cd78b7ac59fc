"""When a warm task process is kept, replaced or reaped: plain rules, no processes, no clock.

A task's process is kept between runs so that its imports (torch: seconds on a Pi) and module
state load once. :class:`~.pool.TaskProcesses` asks these rules, passing the time in, so that
they are tested without processes or sleeps. Stdlib only: the edge agent imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class ProcessKey:
    """What a warm process may run again: one swarm's entry from one code bundle, in one folder.

    The swarm is part of it so that no process (and no module state) is ever shared between
    swarms; the code sha, so that new code never runs in a process that imported the old.
    """

    swarm: str
    code: str  # the code bundle's sha
    entry: str
    workdir: str

    def same_task(self, other: ProcessKey) -> bool:
        """The same task of the same swarm, whatever its code."""
        return (self.swarm, self.entry, self.workdir) == (other.swarm, other.entry, other.workdir)


@dataclass(frozen=True)
class ReuseSettings:
    """``enabled``: keep task processes between runs (False: a fresh process per run).
    ``idle_seconds``: an unused process is ended after this long. ``max_rss_mib``: one that
    grew past this (a leak, a large model) is replaced after its run. ``max_processes``: idle
    processes kept at once per host; the least recently used goes first."""

    enabled: bool = True
    idle_seconds: float = 300.0
    max_rss_mib: float = 1024.0
    max_processes: int = 4


def retire_reason(settings: ReuseSettings, *, ok: bool, alive: bool, rss_bytes: int | None) -> str:
    """Why a process that has just run must not be kept; "" to keep it.

    A run that raised is retired too, though its interpreter is intact: ``main()`` is not
    transactional, so module state may be half updated, and its retry should start from what a
    fresh process sees, as it always did. Failures are rare, so this costs one import each.
    """
    if not settings.enabled:
        return "reuse is off"
    if not alive:
        return "it exited or was killed"
    if not ok:
        return "its run failed"
    if rss_bytes is not None and rss_bytes > settings.max_rss_mib * MIB:
        return f"its RSS of {rss_bytes / MIB:.0f} MiB passed {settings.max_rss_mib:.0f} MiB"
    return ""


def outdated(key: ProcessKey, idle: Iterable[ProcessKey]) -> list[ProcessKey]:
    """Idle processes that running ``key`` replaces: the same task with other code."""
    return [other for other in idle if other != key and other.same_task(key)]


def expired(last_used: Mapping[ProcessKey, float], now: float, settings: ReuseSettings) -> list[ProcessKey]:
    """Idle processes unused for ``idle_seconds`` by ``now``."""
    return [key for key, used in last_used.items() if now - used >= settings.idle_seconds]


def over_limit(last_used: Mapping[ProcessKey, float], settings: ReuseSettings, *, room: int = 0) -> list[ProcessKey]:
    """The least recently used idle processes past ``max_processes``, keeping ``room`` free."""
    excess = len(last_used) + room - max(settings.max_processes, 0)
    if excess <= 0:
        return []
    return sorted(last_used, key=lambda key: last_used[key])[:excess]


def of_swarm(idle: Iterable[ProcessKey], swarm: str) -> list[ProcessKey]:
    """Idle processes of ``swarm``: all of them go when it ends."""
    return [key for key in idle if key.swarm == swarm]
