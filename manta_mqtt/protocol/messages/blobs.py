"""Blob messages: a node's request for chunks of a blob, and chunks that each describe their blob.

Every chunk carries the blob's sha256, size and chunk size, so a receiver can check it against
the blob on whichever chunk arrives first (it never allocates at the declared size); the index
is checked against the count here, the data's length by the assembler
(:mod:`manta_mqtt.protocol.chunking`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import codec
from ..chunking import BlobInfo
from ..limits import MAX_CHUNK_INDEX, MIN_CHUNK_SIZE
from .fields import VERSION, ProtocolError, _get, _id, _load_msgpack, _nonneg, _sha


def _blob_info(data: dict[str, Any]) -> BlobInfo:
    info = BlobInfo(
        sha=_sha(_get(data, "sha", str), "sha"),
        size=_nonneg(data, "size"),
        chunk_size=_nonneg(data, "chunk_size"),
    )
    if info.chunk_size < MIN_CHUNK_SIZE:
        raise ProtocolError(f"chunk_size {info.chunk_size} is below {MIN_CHUNK_SIZE}")
    return info


def _info_fields(info: BlobInfo) -> dict[str, Any]:
    return {"sha": info.sha, "size": info.size, "chunk_size": info.chunk_size}


@dataclass(frozen=True)
class BlobRequest:
    """A node asks for chunks ``first .. first + count - 1`` of a swarm blob (``want/{node}``).

    The node need not know the blob's chunk count yet (its first request is for a window from 0):
    the coordinator serves the part of the range that exists."""

    swarm: str
    node: str
    sha: str
    first: int
    count: int

    @property
    def indexes(self) -> range:
        return range(self.first, self.first + self.count)

    def to_bytes(self) -> bytes:
        fields = {"swarm": self.swarm, "node": self.node, "sha": self.sha, "first": self.first, "count": self.count}
        return codec.encode({"v": VERSION, **fields})

    @classmethod
    def parse(cls, payload: bytes) -> BlobRequest:
        data = _load_msgpack(payload)
        request = cls(
            swarm=_id(data, "swarm"),
            node=_id(data, "node"),
            sha=_sha(_get(data, "sha", str), "sha"),
            first=_nonneg(data, "first"),
            count=_nonneg(data, "count"),
        )
        if request.count < 1 or request.first + request.count > MAX_CHUNK_INDEX + 1:
            raise ProtocolError(f"chunks {request.first}+{request.count} out of range")
        return request


@dataclass
class Chunk:
    """One piece of a blob (under ``blobs/`` when a node asked for it, under ``uploads/`` when granted)."""

    info: BlobInfo
    index: int
    data: bytes | memoryview

    def to_bytes(self) -> bytes:
        return codec.encode({"v": VERSION, **_info_fields(self.info), "index": self.index, "data": bytes(self.data)})

    @classmethod
    def parse(cls, payload: bytes) -> Chunk:
        data = _load_msgpack(payload)
        info = _blob_info(data)
        index = _nonneg(data, "index")
        if index >= info.count:
            raise ProtocolError(f"chunk index {index} out of range (count {info.count})")
        return cls(info, index, _get(data, "data", bytes))
