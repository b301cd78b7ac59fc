"""Which upload chunks to ask nodes for, and when: the coordinator's end-to-end flow control.

Plain code (no I/O, no clock: time is an argument), owned by the coordinator's main thread
(:mod:`.pulls` is its adapter). Nodes send upload chunks only when granted
(``UploadGrant``), so what the broker queues toward the coordinator is bounded by ``window``
bytes granted and not yet received, all nodes together, well under the broker's own queue limit
(Mosquitto drops past ``max_queued_bytes``).

- **Round-robin**: each pass gives every node with chunks to send one chunk, in turn, until the
  window is full; a node's chunks of one pass go out as one grant (a contiguous range).
- **Pipelined**: as chunks arrive the window frees and more is granted, a quarter window at a
  time, so the pipe never empties while anything is left.
- **Re-granted**: chunks that did not arrive ``retry_after`` seconds after their grant (a lost
  grant, a node that reconnected) are granted again; an upload whose chunks all arrived but
  which did not complete (the receiver discarded it) starts over after as long.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..protocol.chunking import BlobInfo
from ..protocol.limits import DEFAULT_CHUNK_SIZE, GRANT_RETRY_SECONDS, UPLOAD_WINDOW_BYTES

Key = tuple[str, str]  # (node, sha)


@dataclass(frozen=True)
class Grant:
    """Ask ``node`` for chunks ``first .. first + count - 1`` of blob ``sha``."""

    node: str
    sha: str
    size: int
    chunk_size: int
    first: int
    count: int


@dataclass
class _Upload:
    node: str
    info: BlobInfo
    next: int = 0  # the first chunk never granted
    redo: set[int] = field(default_factory=set)  # granted, not arrived in time: to grant again
    out: dict[int, float] = field(default_factory=dict)  # granted and not arrived: index -> when granted
    quiet_since: float = 0.0  # when it last had a chunk granted or arrived

    def todo(self) -> bool:
        return bool(self.redo) or self.next < self.info.count

    def peek(self) -> int:
        """The next chunk to grant: one to grant again first, else a new one."""
        return min(self.redo) if self.redo else self.next

    def take(self, now: float) -> int:
        index = self.peek()
        if self.redo:
            self.redo.discard(index)
        else:
            self.next += 1
        self.out[index] = self.quiet_since = now
        return index

    def bytes_of(self, index: int) -> int:
        start, end = self.info.span(index)
        return end - start


class GrantScheduler:
    """Decides the grants; told what uploads are wanted, what arrived, and what completed."""

    def __init__(
        self,
        *,
        window: int = UPLOAD_WINDOW_BYTES,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        retry_after: float = GRANT_RETRY_SECONDS,
    ) -> None:
        self.window = window
        self.chunk_size = chunk_size
        self.retry_after = retry_after
        self.in_flight = 0  # bytes granted and not arrived
        self.expired = 0  # chunks granted again because they did not arrive in time (or were requeued)
        self._nodes: dict[str, dict[str, _Upload]] = {}  # node -> sha -> upload, oldest first
        self._turn: list[str] = []  # nodes with uploads, in round-robin order: the next to serve first
        self._paused: set[str] = set()  # offline nodes: nothing granted to them

    def __len__(self) -> int:
        return sum(len(uploads) for uploads in self._nodes.values())

    @property
    def _uploads(self) -> list[_Upload]:
        return [u for uploads in self._nodes.values() for u in uploads.values()]

    def wanted(self, uploads: Mapping[Key, int], now: float) -> None:
        """The uploads wanted now, (node, sha) -> size: new ones are added, the others forgotten
        (what they had in flight is freed: their step ended, or their result was refused)."""
        for node, held in list(self._nodes.items()):
            for sha in [s for s in held if (node, s) not in uploads]:
                self._forget(node, sha)
        for (node, sha), size in uploads.items():
            if node not in self._nodes:
                self._nodes[node] = {}
                self._turn.append(node)
            shas = self._nodes[node]
            if sha not in shas:
                shas[sha] = _Upload(node, BlobInfo(sha, size, self.chunk_size), quiet_since=now)

    def arrived(self, node: str, sha: str, index: int, now: float) -> None:
        """A chunk of ``node``'s upload ``sha`` came (accepted by the receiver or not)."""
        upload = self._nodes.get(node, {}).get(sha)
        if upload is None:
            return
        upload.redo.discard(index)  # came after all: no need to ask again
        if upload.out.pop(index, None) is not None:
            self.in_flight -= upload.bytes_of(index)
            upload.quiet_since = now

    def completed(self, sha: str) -> None:
        """Blob ``sha`` is stored: no node need send it any more."""
        for node in [n for n, shas in self._nodes.items() if sha in shas]:
            self._forget(node, sha)

    def pause(self, node: str) -> None:
        """The node went offline: grant it nothing, and free what it had in flight."""
        self._paused.add(node)
        self.requeue(node)

    def resume(self, node: str, *, requeue: bool = False) -> None:
        """The node is online again; ``requeue``: it restarted, so its grants in flight are lost."""
        self._paused.discard(node)
        if requeue:
            self.requeue(node)

    def requeue(self, node: str | None = None) -> None:
        """Grant again what is in flight to ``node`` (every node: the coordinator reconnected)."""
        for upload in self._uploads:
            if node is None or upload.node == node:
                self._expire(upload, float("inf"))

    def grants(self, now: float) -> list[Grant]:
        """What to grant now: re-grants of what timed out, then new chunks, round-robin."""
        for upload in self._uploads:
            self._expire(upload, now - self.retry_after)
            if not upload.todo() and not upload.out and now >= upload.quiet_since + self.retry_after:
                upload.next, upload.quiet_since = 0, now  # all arrived, never completed: again
        batch = min(self.window, max(self.chunk_size, self.window // 4))
        if self.in_flight and self.window - self.in_flight < batch:
            return []  # wait until a worthwhile share of the window is free
        ranges: dict[Key, list[int]] = {}
        served = True
        while served:
            served = False
            for node in list(self._turn):
                chosen = self._next_upload(node)
                if chosen is None:
                    continue
                upload = chosen
                size = upload.bytes_of(upload.peek())
                if self.in_flight and self.in_flight + size > self.window:
                    return self._orders(ranges)
                ranges.setdefault((node, upload.info.sha), []).append(upload.take(now))
                self.in_flight += size
                self._turn.remove(node)
                self._turn.append(node)  # served: to the back of the line
                served = True
        return self._orders(ranges)

    def next_timer(self) -> float | None:
        """When :meth:`grants` may have something new with no event (a re-grant), or None."""
        uploads = self._uploads
        times = [t + self.retry_after for u in uploads for t in u.out.values()]
        times += [u.quiet_since + self.retry_after for u in uploads if not u.todo() and not u.out]
        return min(times, default=None)

    # --- internals -------------------------------------------------------------------------------

    def _next_upload(self, node: str) -> _Upload | None:
        if node in self._paused:
            return None
        return next((u for u in self._nodes.get(node, {}).values() if u.todo()), None)

    def _expire(self, upload: _Upload, granted_before: float) -> None:
        for index in [i for i, t in upload.out.items() if t <= granted_before]:
            del upload.out[index]
            self.in_flight -= upload.bytes_of(index)
            upload.redo.add(index)
            self.expired += 1

    def _forget(self, node: str, sha: str) -> None:
        shas = self._nodes[node]
        upload = shas.pop(sha)
        self.in_flight -= sum(upload.bytes_of(i) for i in upload.out)
        if not shas:
            del self._nodes[node]
            self._turn.remove(node)

    def _orders(self, ranges: dict[Key, list[int]]) -> list[Grant]:
        """Each node's chunks of this pass as grants of contiguous ranges."""
        out = []
        for (node, sha), taken in ranges.items():
            info = self._nodes[node][sha].info
            indexes = sorted(taken)
            start = prev = indexes[0]
            for index in [*indexes[1:], None]:
                if index is not None and index == prev + 1:
                    prev = index
                    continue
                out.append(Grant(node, sha, info.size, info.chunk_size, start, prev - start + 1))
                if index is not None:
                    start = prev = index
        return out
