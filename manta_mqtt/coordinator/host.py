"""The :class:`~manta_mqtt.runtime.host.TaskHost` for tasks placed on the coordinator."""

from __future__ import annotations

import threading
from typing import Any

from ..runtime.host import TaskHostError
from .rounds import Decisions
from .store import RunStore

COORDINATOR_NODE = "coordinator"


class CoordinatorHost:
    """Binds a coordinator task to one iteration: it reads that iteration's results and the
    current globals; its writes create new global versions and its requests go to ``decisions``.
    """

    def __init__(
        self,
        store: RunStore,
        swarm: str,
        iteration: int,
        task: str,
        globals_: dict[str, str],
        decisions: Decisions,
    ) -> None:
        self.store = store
        self.swarm = swarm
        self.iteration = iteration
        self.task = task
        self.globals = globals_
        self.decisions = decisions
        self._lock = threading.Lock()

    def context(self) -> dict[str, Any]:
        return {
            "node": COORDINATOR_NODE,
            "swarm": self.swarm,
            "iteration": self.iteration,
            "task": self.task,
            "datasets": {},
        }

    def get_global(self, tag: str) -> bytes:
        with self._lock:
            sha = self.globals[tag]
        return self.store.blobs.get(sha)

    def set_global(self, tag: str, value: bytes) -> None:
        sha = self.store.put_value(value)
        with self._lock:
            self.globals[tag] = sha

    def add_result(self, tag: str, value: bytes) -> None:
        sha = self.store.put_value(value)
        self.store.add_result(self.iteration, self.task, COORDINATOR_NODE, tag, sha)

    def select_results(self, tag: str) -> dict[str, bytes]:
        return self.store.raw_results(self.iteration, tag)

    def schedule_next_iter(self, node_ids: list[str], alias: str) -> None:
        if not alias:
            raise TaskHostError("task_to_schedule_alias must be given")
        with self._lock:
            self.decisions.add_schedule(alias, node_ids)

    def stop_swarm(self) -> None:
        with self._lock:
            self.decisions.stop(self.task)
