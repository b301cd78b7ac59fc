"""The :class:`~manta_mqtt.runtime.host.TaskHost` for tasks placed on the coordinator."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..protocol.messages import GlobalRefs
from ..runtime.channel import Payload
from ..runtime.host import TaskHostError
from .engine import COORDINATOR_NODE, TaskWrites
from .store import RunStore


class CoordinatorHost:
    """Binds a coordinator task to one iteration.

    Threads: the task's serve thread calls every method. It reads a snapshot of the global
    refs taken when the task started (never the engine's live dict) and the run store (which
    is thread-safe); what the task writes is stored as values and collected here, and reaches
    the engine only after the task ended, in its ``TaskFinished`` event (:meth:`writes`).
    """

    def __init__(
        self,
        store: RunStore,
        swarm: str,
        iteration: int,
        task: str,
        global_refs: Mapping[str, str],
        *,
        only: frozenset[str] | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> None:
        """``only`` / ``exclude``: the nodes whose results ``select_results`` shows (a probe of
        a quarantine search) or hides (quarantined nodes)."""
        self.store = store
        self.only, self.exclude = only, exclude
        self.swarm = swarm
        self.iteration = iteration
        self.task = task
        self._refs: GlobalRefs = dict(global_refs)
        self._results: dict[str, str] = {}  # tag -> sha of what the task added
        self._global_writes: GlobalRefs = {}
        self._schedule: list[tuple[str, list[str]]] = []
        self._stop = False

    def writes(self) -> TaskWrites:
        """What the task wrote; call it once the task has ended."""
        return TaskWrites(dict(self._results), dict(self._global_writes), list(self._schedule), self._stop)

    def context(self) -> dict[str, Any]:
        return {
            "node": COORDINATOR_NODE,
            "swarm": self.swarm,
            "iteration": self.iteration,
            "task": self.task,
            "datasets": {},
        }

    def get_global(self, tag: str) -> Path:
        sha = self._global_writes.get(tag) or self._refs[tag]  # the task reads back what it wrote
        return self.store.blobs.path(sha)

    def set_global(self, tag: str, value: Payload) -> None:
        self._global_writes[tag] = self.store.blobs.put_stream(value.chunks())

    def add_result(self, tag: str, value: Payload) -> None:
        self._results[tag] = self.store.blobs.put_stream(value.chunks())

    def _result_shas(self, tag: str) -> dict[str, str]:
        """``{node: sha}`` of the results the task may see: the shas only, no value is read."""
        shas = {
            node: sha
            for node, sha in self.store.result_shas(self.iteration, tag).items()
            if node not in self.exclude and (self.only is None or node in self.only or node == COORDINATOR_NODE)
        }
        if tag in self._results:  # its own, recorded when it ends
            shas[COORDINATOR_NODE] = self._results[tag]
        return shas

    def result_nodes(self, tag: str) -> list[str]:
        return sorted(self._result_shas(tag))

    def get_result(self, tag: str, node: str) -> Path:
        """One node's encoded value, read from disk only now (KeyError if it has none): one row
        looked up, not every node's (an aggregator asks once per node)."""
        if node in self.exclude or (self.only is not None and node not in self.only and node != COORDINATOR_NODE):
            raise KeyError(node)
        if node == COORDINATOR_NODE and tag in self._results:  # its own, recorded when it ends
            return self.store.blobs.path(self._results[tag])
        return self.store.blobs.path(self.store.result_sha(self.iteration, tag, node))

    def select_results(self, tag: str) -> dict[str, bytes]:
        return {node: self.store.blobs.get(sha) for node, sha in self._result_shas(tag).items()}

    def schedule_next_iter(self, node_ids: list[str], alias: str) -> None:
        if not alias:
            raise TaskHostError("task_to_schedule_alias must be given")
        self._schedule.append((alias, list(node_ids)))

    def stop_swarm(self) -> None:
        self._stop = True
