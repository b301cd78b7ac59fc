"""Warm task processes: one per (swarm, code, entry), kept between runs so imports load once.

A task that imports torch spends seconds (far more on a Pi) before ``main()`` runs; a no-op task
a tenth of a second. :class:`TaskProcesses` keeps the process of a run that ended well and sends
it the next run of the same task; the rules of what is kept, replaced and reaped are in
:mod:`.reuse`. Isolation is unchanged: every run is still in a child process that the host
kills at its timeout or on cancel, and whose sentinel kills it if the host dies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..ownership import Owner
from . import reuse
from .executor import TaskOutcome, TaskProcess
from .host import TaskHost
from .reuse import ProcessKey, ReuseSettings

log = logging.getLogger("manta_mqtt.executor")


class TaskProcesses:
    """The task processes of one host, idle ones by :class:`~.reuse.ProcessKey`.

    Owned by one thread (checked): the node's worker thread, which runs one task at a time, or
    the coordinator's main thread, which runs coordinator-placed tasks. A process is either idle
    here or running in that thread's call to :meth:`run`, never both.
    """

    def __init__(self, settings: ReuseSettings | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or ReuseSettings()
        self.owner = Owner("task processes")
        self._clock = clock
        self._idle: dict[ProcessKey, TaskProcess] = {}
        self._last_used: dict[ProcessKey, float] = {}  # the same keys: when each run ended

    def run(
        self,
        bundle: Path,
        entry: str,
        host: TaskHost,
        *,
        swarm: str,
        code: str,
        timeout: float,
        workdir: Path,
        cancel: threading.Event | None = None,
        label: str = "task",
    ) -> TaskOutcome:
        """Run ``entry.main()`` of ``bundle`` (sha ``code``) for ``swarm``, in the warm process
        of that task if one is idle, else in a new one; keep the process after if the rules allow."""
        self.owner.check()
        key = ProcessKey(swarm, code, entry, str(workdir))
        for old in reuse.outdated(key, self._idle):
            self._retire(old, "its code changed")
        process = self._take(key)
        if process is None:
            for old in reuse.over_limit(self._last_used, self.settings, room=1):
                self._retire(old, f"more than {self.settings.max_processes} are idle")
            process = TaskProcess(bundle, entry, workdir, label)
        else:
            log.debug("[%s] runs again in process %d", label, process.pid)
        try:
            outcome = process.run(host, timeout=timeout, cancel=cancel, label=label, last=not self.settings.enabled)
        except BaseException:
            process.close()
            raise
        why = reuse.retire_reason(self.settings, ok=outcome.ok, alive=process.alive(), rss_bytes=process.rss())
        if why:
            if self.settings.enabled:
                log.info("[%s] task process %d replaced: %s", label, process.pid, why)
            process.close()
        else:
            self._idle[key] = process
            self._last_used[key] = self._clock()
        return outcome

    def reap(self) -> list[ProcessKey]:
        """End the processes idle for ``idle_seconds``; call it now and then. Returns their keys."""
        self.owner.check()
        keys = reuse.expired(self._last_used, self._clock(), self.settings)
        for key in keys:
            self._retire(key, "idle")
        return keys

    def end_swarm(self, swarm: str) -> None:
        """The swarm is over: end its processes."""
        self.owner.check()
        for key in reuse.of_swarm(self._idle, swarm):
            self._retire(key, f"swarm {swarm} ended")

    def close(self) -> None:
        """The host stops: end every process."""
        self.owner.check()
        for key in list(self._idle):
            self._retire(key, "the host stops")

    def pids(self) -> dict[ProcessKey, int]:
        """The idle processes' pids, by key."""
        self.owner.check()
        return {key: process.pid for key, process in self._idle.items()}

    def _take(self, key: ProcessKey) -> TaskProcess | None:
        """The idle process for ``key``, if it is still alive (one that died idle is reaped)."""
        process = self._idle.pop(key, None)
        self._last_used.pop(key, None)
        if process is not None and not process.alive():
            log.info("task process %d of %s exited while idle", process.pid, key.entry)
            process.close()
            return None
        return process

    def _retire(self, key: ProcessKey, why: str) -> None:
        process = self._idle.pop(key, None)
        self._last_used.pop(key, None)
        if process is not None:
            log.debug("task process %d of %s ended: %s", process.pid, key.entry, why)
            process.close()
