"""``World``, ``Globals`` and ``Results``: the swarm-wide state a task reads and writes."""

from __future__ import annotations

from collections.abc import Iterator
from enum import IntEnum
from typing import Any

from ..protocol import codec
from .client import TaskClient, current
from .ops import Op


def _value(reply: dict[str, Any]) -> bytearray:
    value = reply.get("value")
    if not isinstance(value, bytearray):
        raise RuntimeError("the host's reply carries no value")
    return value


class ResultMethod(IntEnum):
    UNSPECIFIED = 0
    LAST = 1
    ALL = 2


class Globals:
    """Swarm-wide values by tag: ``globals[tag]`` reads, ``globals[tag] = value`` writes.

    Values are anything msgpack can carry (numpy arrays too). Use one writer per tag: with
    several concurrent writers, the last one to finish wins.
    """

    def __init__(self, client: TaskClient | None = None) -> None:
        self._client = client or current()

    def __getitem__(self, tag: str) -> Any:
        return codec.decode(_value(self._client.request(Op.GLOBAL_GET, tag=tag)))

    def __setitem__(self, tag: str, value: Any) -> None:
        self._client.request(Op.GLOBAL_SET, codec.encode_parts(value), tag=tag)

    def get(self, tag: str) -> Any:
        return self[tag]

    def set(self, tag: str, value: Any) -> None:
        self[tag] = value


class Results:
    """Per-iteration, per-node outputs, by tag."""

    def __init__(self, client: TaskClient | None = None) -> None:
        self._client = client or current()

    def add(self, tag: str, result: Any) -> None:
        """Record ``result`` under ``tag`` for this node and iteration (a later add replaces it)."""
        self._client.request(Op.RESULT_ADD, codec.encode_parts(result), tag=tag)

    def nodes(self, tag: str) -> list[str]:
        """The nodes (sorted by id) that added ``tag`` in the current iteration; no value is read."""
        return sorted(str(node) for node in self._client.request(Op.RESULT_NODES, tag=tag)["nodes"])

    def get(self, tag: str, node: str) -> Any:
        """``node``'s value for ``tag`` in the current iteration; KeyError if it added none."""
        return codec.decode(_value(self._client.request(Op.RESULT_GET, tag=tag, node=node)))

    def iter(self, tag: str, size: int = -1) -> Iterator[tuple[str, Any]]:
        """``(node_id, value)`` one node at a time, in node order: the lazy :meth:`select`.

        Each value is fetched only when the loop asks for the next one, one channel request per
        node, so a loop that keeps nothing but a running sum holds one node's value at a time
        (two while the next arrives, unless the loop body ends with ``del value``).
        """
        for node in self._first(self.nodes(tag), size):
            yield node, self.get(tag, node)

    def select(self, tag: str, size: int = -1, method: ResultMethod = ResultMethod.ALL) -> dict[str, Any]:
        """``{node_id: value}`` for every node that added ``tag`` in the current iteration.

        ``size`` > 0 keeps that many nodes (sorted by id). Available to tasks placed on the
        coordinator. Fetched one node per request, so there is no cap on the total size, only on
        one value; but the dict holds them all: use :meth:`iter` to hold one at a time.
        """
        return dict(self.iter(tag, size))

    @staticmethod
    def _first(nodes: list[str], size: int | None) -> list[str]:
        return nodes[:size] if size is not None and size > 0 else nodes


class World:
    """The task's view of its swarm."""

    def __init__(self, client: TaskClient | None = None) -> None:
        self._client = client or current()
        self.globals = Globals(self._client)
        self.results = Results(self._client)

    @property
    def iteration(self) -> int:
        return int(self._client.context["iteration"])

    @property
    def node_id(self) -> str:
        return str(self._client.context["node"])

    def schedule_next_iter(self, node_ids: list[str], task_to_schedule_alias: str) -> None:
        """Run the task with alias ``task_to_schedule_alias`` next iteration on ``node_ids``."""
        self._client.request(Op.SCHEDULE, node_ids=list(node_ids), alias=task_to_schedule_alias)

    def stop_swarm(self) -> None:
        """End the swarm once the current step completes."""
        self._client.request(Op.STOP)
