"""The :class:`~manta_mqtt.runtime.host.TaskHost` for a task running on a node.

Globals come from the node's blob cache (fetched before the task starts); everything the task
writes is collected here and leaves the node as one result envelope when the task ends.
"""

from __future__ import annotations

import threading
from typing import Any

from manta_mqtt.blobstore import BlobStore
from manta_mqtt.protocol.limits import DEFAULT_INLINE_LIMIT_BYTES
from manta_mqtt.protocol.messages import Assignment
from manta_mqtt.runtime.channel import Payload
from manta_mqtt.runtime.host import TaskHostError, Value


class EdgeHost:
    """Threads: the task's serve thread calls every method; the worker reads what was collected
    once the task has ended."""

    def __init__(
        self,
        node_id: str,
        assignment: Assignment,
        cache: BlobStore,
        datasets: dict[str, str],
        inline_limit: int = DEFAULT_INLINE_LIMIT_BYTES,
    ) -> None:
        """Values over ``inline_limit`` bytes go to the blob cache as they arrive (to be uploaded),
        so a 100 MiB model costs the agent no 100 MiB buffer."""
        self.node_id = node_id
        self.assignment = assignment
        self.cache = cache
        self.datasets = datasets
        self.inline_limit = inline_limit
        self.results: dict[str, Value] = {}
        self.global_writes: dict[str, Value] = {}
        self.schedule: list[tuple[str, list[str]]] = []
        self.stop = False
        self._lock = threading.Lock()

    def context(self) -> dict[str, Any]:
        a = self.assignment
        return {
            "node": self.node_id,
            "swarm": a.swarm,
            "iteration": a.iteration,
            "task": a.task,
            "datasets": self.datasets,
        }

    def get_global(self, tag: str) -> Value:
        with self._lock:
            if tag in self.global_writes:  # the task reads back what it wrote
                return self.global_writes[tag]
        return self.cache.path(self.assignment.global_refs[tag])

    def set_global(self, tag: str, value: Payload) -> None:
        data = self._keep(value)
        with self._lock:
            self.global_writes[tag] = data

    def add_result(self, tag: str, value: Payload) -> None:
        data = self._keep(value)
        with self._lock:
            self.results[tag] = data

    def _keep(self, value: Payload) -> Value:
        """A small value as bytes; a large one streamed into the cache, as the path of its file."""
        if value.size <= self.inline_limit:
            return bytes(value.read())
        return self.cache.path(self.cache.put_stream(value.chunks()))

    def select_results(self, tag: str) -> dict[str, bytes]:
        raise TaskHostError("results.select() is available to tasks placed on the coordinator, not on nodes")

    def schedule_next_iter(self, node_ids: list[str], alias: str) -> None:
        with self._lock:
            self.schedule.append((alias, list(node_ids)))

    def stop_swarm(self) -> None:
        with self._lock:
            self.stop = True
