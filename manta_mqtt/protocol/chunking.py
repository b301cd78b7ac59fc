"""Splitting large values into chunks and reassembling them, with no I/O.

A blob is identified by the sha256 of its bytes. Each chunk message describes the whole blob
(size, chunk size, count), so the receiver can start on whichever chunk comes first; it allocates
only for the bytes that arrived, never for the declared size. The assembled bytes are delivered
only when every chunk arrived and the sha256 matches: never half.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from .budget import SenderBudget
from .limits import DEFAULT_CHUNK_SIZE as DEFAULT_CHUNK_SIZE
from .limits import MIN_CHUNK_SIZE as MIN_CHUNK_SIZE


class ChunkError(ValueError):
    """A chunk that contradicts its blob, or a blob whose bytes do not match its sha256."""


class DigestMismatch(ChunkError):
    """Every chunk arrived but the bytes do not hash to the blob's sha256: the transfer is lost
    (retrying cannot help, the same chunks would come again)."""


class OverBudget(ChunkError):
    """A chunk refused because its sender, or all senders together, already hold too much."""


def sha256(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_count(size: int, chunk_size: int) -> int:
    return max(1, -(-size // chunk_size))


@dataclass(frozen=True)
class BlobInfo:
    """What every chunk says about its blob."""

    sha: str
    size: int
    chunk_size: int

    @property
    def count(self) -> int:
        return chunk_count(self.size, self.chunk_size)

    def span(self, index: int) -> tuple[int, int]:
        start = index * self.chunk_size
        return start, min(self.size, start + self.chunk_size)


def split(data: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[BlobInfo, Iterator[memoryview]]:
    """Describe ``data`` and yield its chunks as views (no copies)."""
    if chunk_size < MIN_CHUNK_SIZE:
        raise ValueError(f"chunk size must be at least {MIN_CHUNK_SIZE} bytes")
    info = BlobInfo(sha256(data), len(data), chunk_size)
    view = memoryview(data)

    def chunks() -> Iterator[memoryview]:
        for index in range(info.count):
            start, end = info.span(index)
            yield view[start:end]

    return info, chunks()


class Assembler:
    """Reassembles one blob from chunks arriving in any order, with duplicates tolerated.

    Memory follows the data, never the declared size (a chunk claiming a 1 GiB blob must not cost
    1 GiB): chunks that extend the contiguous prefix are appended to it and hashed on the way,
    the others wait in a map until the gap before them fills. At completion the prefix is the
    blob, so it is never copied again. What it holds is ``received_bytes`` (plus the prefix's growth
    slack, at most an eighth).
    """

    def __init__(self, info: BlobInfo, max_size: int) -> None:
        if info.size > max_size:
            raise ChunkError(f"blob of {info.size} bytes exceeds the limit of {max_size}")
        if info.chunk_size < MIN_CHUNK_SIZE and info.count > 1:
            raise ChunkError(f"chunk size {info.chunk_size} is below {MIN_CHUNK_SIZE}")
        self.info = info
        self._prefix = bytearray()  # chunks 0.._next-1, in order
        self._next = 0
        self._waiting: dict[int, bytes] = {}  # chunks past a gap, by index
        self._waiting_bytes = 0
        self._hash = hashlib.sha256()  # of the prefix
        self.duplicates = 0

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self._next, self.info.count) if i not in self._waiting]

    @property
    def received_bytes(self) -> int:
        """Bytes of the distinct chunks received so far."""
        return len(self._prefix) + self._waiting_bytes

    def has(self, index: int) -> bool:
        """Whether chunk ``index`` arrived already (a new copy of it would be a duplicate)."""
        return index < self._next or index in self._waiting

    def add(self, info: BlobInfo, index: int, data: bytes | memoryview) -> bytearray | None:
        """Store one chunk; return the verified blob when it is complete, else ``None``.

        Raises :class:`ChunkError` for a chunk that does not fit; the blob is discarded (the
        caller drops this assembler) when the assembled bytes fail the sha256 check.
        """
        if info != self.info:
            raise ChunkError("chunk describes a different blob than its predecessors")
        if not 0 <= index < info.count:
            raise ChunkError(f"chunk index {index} out of range 0..{info.count - 1}")
        start, end = info.span(index)
        if len(data) != end - start:
            raise ChunkError(f"chunk {index} has {len(data)} bytes, expected {end - start}")
        if self.has(index):
            self.duplicates += 1
            return None
        if index != self._next:
            self._waiting[index] = bytes(data)  # no copy of a bytes chunk; a view is copied once
            self._waiting_bytes += len(data)
            return None
        self._append(data)
        while self._next in self._waiting:
            piece = self._waiting.pop(self._next)
            self._waiting_bytes -= len(piece)
            self._append(piece)
        if self._next < info.count:
            return None
        if self._hash.hexdigest() != info.sha:
            raise DigestMismatch(f"blob {info.sha[:12]} failed its sha256 check")
        return self._prefix  # handed over, not copied: the assembler is done

    def _append(self, data: bytes | memoryview) -> None:
        self._prefix += data
        self._hash.update(data)
        self._next += 1


#: What one incomplete blob is charged besides its chunks: its assembler, hash state and keys take
#: about 1.3 KiB, so blobs of one tiny chunk each cannot outgrow a budget.
OPEN_BLOB_COST = 4 * 1024


@dataclass
class _Partial:
    sender: str
    assembler: Assembler
    seen: float = 0.0  # when its last chunk came
    held: int = 0  # bytes charged: OPEN_BLOB_COST and its chunks


class AssemblerPool:
    """Incomplete blobs by (sender, sha), within budgets, with O(1) bookkeeping per chunk.

    Three bounds: open blobs per sender, bytes held per sender, bytes held in total. A chunk past
    one raises :class:`OverBudget` and its blob is discarded (it cannot complete without that
    chunk), so what it held is free at once; other senders go on. No clock: time is an argument.
    """

    def __init__(
        self, *, max_size: int, max_open_per_sender: int, max_bytes_per_sender: int, max_bytes_total: int
    ) -> None:
        self.max_size = max_size
        self.max_open_per_sender = max_open_per_sender
        self.max_bytes_per_sender = max_bytes_per_sender
        self.max_bytes_total = max_bytes_total
        self._open: OrderedDict[tuple[str, str], _Partial] = OrderedDict()  # least recently fed first
        self._count: Counter[str] = Counter()  # open blobs by sender
        self._bytes = SenderBudget(per_sender=max_bytes_per_sender, total=max_bytes_total)

    def __len__(self) -> int:
        return len(self._open)

    @property
    def held_total(self) -> int:
        return self._bytes.held_total

    def held_by(self, sender: str) -> int:
        return self._bytes.held_by(sender)

    def open_by(self, sender: str) -> int:
        return self._count[sender]

    def add(self, sender: str, info: BlobInfo, index: int, data: bytes | memoryview, now: float) -> bytearray | None:
        """Store one chunk; return the verified blob when complete (then forgotten), else ``None``.

        Raises :class:`OverBudget` past a bound and :class:`ChunkError` for a chunk that does not
        fit; either way the sender's partial blob, if any, is discarded.
        """
        key = (sender, info.sha)
        partial = self._open.get(key)
        if partial is None:
            if self._count[sender] >= self.max_open_per_sender:
                raise OverBudget(f"{sender} has {self.max_open_per_sender} incomplete blobs already")
            partial = _Partial(sender, Assembler(info, self.max_size))
            cost = OPEN_BLOB_COST + len(data)
        else:
            cost = 0 if partial.assembler.has(index) else len(data)
        try:
            if why := self._bytes.take(sender, cost):
                raise OverBudget(why)
            self._charge(key, partial, cost, now)
            blob = partial.assembler.add(info, index, data)
        except ChunkError:
            self.discard(key)
            raise
        if blob is not None:
            self.discard(key)
        return blob

    def expire(self, cutoff: float) -> int:
        """Discard the blobs whose last chunk came before ``cutoff``; return how many."""
        expired = 0
        while self._open:
            key, partial = next(iter(self._open.items()))
            if partial.seen >= cutoff:
                break
            self.discard(key)
            expired += 1
        return expired

    def discard(self, key: tuple[str, str]) -> None:
        partial = self._open.pop(key, None)
        if partial is None:
            return
        sender = partial.sender
        self._count[sender] -= 1
        self._bytes.give_back(sender, partial.held)
        if not self._count[sender]:  # the counter stays as small as the open blobs
            del self._count[sender]

    def _charge(self, key: tuple[str, str], partial: _Partial, cost: int, now: float) -> None:
        if key not in self._open:
            self._count[partial.sender] += 1
        self._open[key] = partial
        self._open.move_to_end(key)
        partial.seen = now
        partial.held += cost
