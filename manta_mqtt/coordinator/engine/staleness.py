"""When each node's status goes stale, earliest first, so the engine never scans the fleet for it.

A node is stale once no status came from it for ``stale_after`` seconds (``RunData.stale``). The
engine used to ask that of every missing node after every event, and to take the minimum over
them for its next timer: O(N) per result, O(N^2) per step. Instead each status pushes the time its
node will go stale onto a heap; a later status supersedes it (the old entry is skipped when it
surfaces). Entries whose time has come are set aside as *fired* until the engine drains them, so
neither asking for the next time nor a step that is not open loses one.
"""

from __future__ import annotations

import heapq

#: Superseded entries the heap may hold, per node, before it is rebuilt from the current ones.
COMPACT_FACTOR = 4


class StaleClock:
    """A heap of (time the node goes stale, node), lazily cleaned; owned by the engine's thread."""

    def __init__(self) -> None:
        self._due: dict[str, float] = {}  # node -> the time its latest status goes stale
        self._heap: list[tuple[float, str]] = []
        self._fired: set[str] = set()

    def touch(self, node: str, stale_at: float) -> None:
        """A status came from ``node``: it goes stale at ``stale_at`` unless another one comes."""
        self._due[node] = stale_at
        self._fired.discard(node)
        heapq.heappush(self._heap, (stale_at, node))
        if len(self._heap) > COMPACT_FACTOR * len(self._due) + 64:
            self._heap = [(t, n) for n, t in self._due.items()]
            heapq.heapify(self._heap)

    def _advance(self, now: float) -> None:
        """Move every current entry due at or before ``now`` to the fired set; drop superseded ones."""
        heap = self._heap
        while heap and (heap[0][0] <= now or self._due.get(heap[0][1]) != heap[0][0]):
            at, node = heapq.heappop(heap)
            if self._due.get(node) == at:
                del self._due[node]
                self._fired.add(node)

    def fired(self, now: float) -> set[str]:
        """The nodes that went stale since the last call (each once per status), at ``now``."""
        self._advance(now)
        fired, self._fired = self._fired, set()
        return fired

    def next_due(self, now: float) -> float | None:
        """The earliest time after ``now`` at which a node goes stale (None: no node will)."""
        self._advance(now)
        return self._heap[0][0] if self._heap else None
