"""Splitting large values into chunks and reassembling them, with no I/O.

A blob is identified by the sha256 of its bytes. Each chunk message describes the whole blob
(size, chunk size, count), so the receiver can start on whichever chunk comes first; it allocates
only for the bytes that arrived, never for the declared size. The assembled bytes are delivered
only when every chunk arrived and the sha256 matches: never half. Where the bytes in order go is a
:class:`Spool`: memory by default, or (the coordinator's uploads) a file the caller provides, so
that holding many large uploads at once does not cost their size in memory.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

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


class Spool(Protocol):
    """Where an :class:`Assembler` puts a blob's contiguous prefix, in order (no I/O here: the
    caller's storage layer provides a file-backed one)."""

    def write(self, data: bytes | memoryview) -> None: ...

    def discard(self) -> None:
        """The blob will not complete: free what was written."""


class Assembler:
    """Reassembles one blob from chunks arriving in any order, with duplicates tolerated.

    Memory follows the data, never the declared size (a chunk claiming a 1 GiB blob must not cost
    1 GiB): chunks that extend the contiguous prefix are appended to it and hashed on the way,
    the others wait in a map until the gap before them fills. At completion the prefix is the
    blob, so it is never copied again. What it holds is ``received_bytes`` (plus the prefix's growth
    slack, at most an eighth). With a ``spool``, the prefix goes there instead of memory: only the
    chunks past a gap are held (use :meth:`feed`, then take the spool).
    """

    def __init__(self, info: BlobInfo, max_size: int, spool: Spool | None = None) -> None:
        if info.size > max_size:
            raise ChunkError(f"blob of {info.size} bytes exceeds the limit of {max_size}")
        if info.chunk_size < MIN_CHUNK_SIZE and info.count > 1:
            raise ChunkError(f"chunk size {info.chunk_size} is below {MIN_CHUNK_SIZE}")
        self.info = info
        self.spool = spool
        self._prefix = bytearray()  # chunks 0.._next-1, in order (empty with a spool)
        self._spooled = 0  # bytes written to the spool
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
        return len(self._prefix) + self._spooled + self._waiting_bytes

    def has(self, index: int) -> bool:
        """Whether chunk ``index`` arrived already (a new copy of it would be a duplicate)."""
        return index < self._next or index in self._waiting

    def add(self, info: BlobInfo, index: int, data: bytes | memoryview) -> bytearray | None:
        """Store one chunk; return the verified blob when it is complete, else ``None`` (for an
        assembler without a spool: with one, the blob is in the spool; see :meth:`feed`).

        Raises :class:`ChunkError` for a chunk that does not fit; the blob is discarded (the
        caller drops this assembler) when the assembled bytes fail the sha256 check.
        """
        return self.blob if self.feed(info, index, data) else None

    @property
    def blob(self) -> bytearray:
        """The bytes in order held in memory: the whole blob once complete, without a spool
        (handed over, not copied: the assembler is done)."""
        return self._prefix

    def feed(self, info: BlobInfo, index: int, data: bytes | memoryview) -> bool:
        """Store one chunk; True once the blob is complete and verified. Raises like :meth:`add`."""
        if info != self.info:
            raise ChunkError("chunk describes a different blob than its predecessors")
        if not 0 <= index < info.count:
            raise ChunkError(f"chunk index {index} out of range 0..{info.count - 1}")
        start, end = info.span(index)
        if len(data) != end - start:
            raise ChunkError(f"chunk {index} has {len(data)} bytes, expected {end - start}")
        if self.has(index):
            self.duplicates += 1
            return False
        if index != self._next:
            self._waiting[index] = bytes(data)  # no copy of a bytes chunk; a view is copied once
            self._waiting_bytes += len(data)
            return False
        self._append(data)
        while self._next in self._waiting:
            piece = self._waiting.pop(self._next)
            self._waiting_bytes -= len(piece)
            self._append(piece)
        if self._next < info.count:
            return False
        if self._hash.hexdigest() != info.sha:
            raise DigestMismatch(f"blob {info.sha[:12]} failed its sha256 check")
        return True

    def discard(self) -> None:
        """Free what the spool holds (the blob will not complete)."""
        if self.spool is not None:
            self.spool.discard()

    def _append(self, data: bytes | memoryview) -> None:
        if self.spool is not None:
            self.spool.write(data)
            self._spooled += len(data)
        else:
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
    ``spool``: makes each blob's :class:`Spool` (default: memory); bytes in a spool count against
    the budgets all the same, so they bound the disk as well.
    """

    def __init__(
        self,
        *,
        max_size: int,
        max_open_per_sender: int,
        max_bytes_per_sender: int,
        max_bytes_total: int,
        spool: Callable[[BlobInfo], Spool] | None = None,
    ) -> None:
        self.max_size = max_size
        self._spool = spool
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
        """Store one chunk; return the verified blob when complete (then forgotten), else ``None``
        (a pool without ``spool``; with one, use :meth:`feed`).

        Raises :class:`OverBudget` past a bound and :class:`ChunkError` for a chunk that does not
        fit; either way the sender's partial blob, if any, is discarded.
        """
        done = self.feed(sender, info, index, data, now)
        return done.blob if done is not None else None

    def feed(self, sender: str, info: BlobInfo, index: int, data: bytes | memoryview, now: float) -> Assembler | None:
        """Store one chunk; return the blob's assembler once it is complete and verified (then
        forgotten: its spool is the caller's), else ``None``. Raises like :meth:`add`; an
        ``OSError`` of the spool discards the partial blob too."""
        key = (sender, info.sha)
        partial = self._open.get(key)
        if partial is None:
            if self._count[sender] >= self.max_open_per_sender:
                raise OverBudget(f"{sender} has {self.max_open_per_sender} incomplete blobs already")
            spool = self._spool(info) if self._spool is not None else None
            partial = _Partial(sender, Assembler(info, self.max_size, spool))
            cost = OPEN_BLOB_COST + len(data)
        else:
            cost = 0 if partial.assembler.has(index) else len(data)
        try:
            if why := self._bytes.take(sender, cost):
                raise OverBudget(why)
            self._charge(key, partial, cost, now)
            complete = partial.assembler.feed(info, index, data)
        except (ChunkError, OSError):
            if key not in self._open:  # refused before it was charged: nothing else holds its spool
                partial.assembler.discard()
            self.discard(key)
            raise
        if not complete:
            return None
        self.discard(key, keep_spool=True)
        return partial.assembler

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

    def discard_blob(self, sha: str) -> int:
        """Drop every sender's partial copy of blob ``sha`` (it is stored: identical results of
        several nodes are one blob); returns how many. Without this their bytes stayed charged to
        the budgets until the stall sweep, and a few rounds of identical uploads exhausted them."""
        keys = [key for key in self._open if key[1] == sha]
        for key in keys:
            self.discard(key)
        return len(keys)

    def discard(self, key: tuple[str, str], *, keep_spool: bool = False) -> None:
        partial = self._open.pop(key, None)
        if partial is None:
            return
        if not keep_spool:
            partial.assembler.discard()
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
