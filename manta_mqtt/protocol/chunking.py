"""Splitting large values into chunks and reassembling them, with no I/O.

A blob is identified by the sha256 of its bytes. Each chunk message describes the whole blob
(size, chunk size, count), so the receiver can preallocate on whichever chunk comes first. The
assembled bytes are delivered only when every chunk arrived and the sha256 matches: never half.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from .limits import DEFAULT_CHUNK_SIZE as DEFAULT_CHUNK_SIZE
from .limits import MIN_CHUNK_SIZE as MIN_CHUNK_SIZE


class ChunkError(ValueError):
    """A chunk that contradicts its blob, or a blob whose bytes do not match its sha256."""


class DigestMismatch(ChunkError):
    """Every chunk arrived but the bytes do not hash to the blob's sha256: the transfer is lost
    (retrying cannot help, the same chunks would come again)."""


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
    """Reassembles one blob from chunks arriving in any order, with duplicates tolerated."""

    def __init__(self, info: BlobInfo, max_size: int) -> None:
        if info.size > max_size:
            raise ChunkError(f"blob of {info.size} bytes exceeds the limit of {max_size}")
        if info.chunk_size < MIN_CHUNK_SIZE and info.count > 1:
            raise ChunkError(f"chunk size {info.chunk_size} is below {MIN_CHUNK_SIZE}")
        self.info = info
        self._buffer = bytearray(info.size)
        self._have = bytearray(info.count)
        self._missing = info.count
        self.duplicates = 0

    @property
    def missing(self) -> list[int]:
        return [i for i, have in enumerate(self._have) if not have]

    @property
    def received_bytes(self) -> int:
        return sum(self.info.span(i)[1] - self.info.span(i)[0] for i, h in enumerate(self._have) if h)

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
        if self._have[index]:
            self.duplicates += 1
            return None
        self._buffer[start:end] = data
        self._have[index] = 1
        self._missing -= 1
        if self._missing:
            return None
        if sha256(self._buffer) != info.sha:
            raise DigestMismatch(f"blob {info.sha[:12]} failed its sha256 check")
        return self._buffer  # handed over, not copied: the assembler is done
