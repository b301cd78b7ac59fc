"""Blob messages: a retained meta per blob, and chunks that each describe their whole blob.

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
from ..limits import MIN_CHUNK_SIZE
from .fields import VERSION, ProtocolError, _get, _load_msgpack, _nonneg, _sha


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


@dataclass
class BlobMeta:
    """Retained at ``blobs/{sha}``; a blob that fits in one chunk travels inline here."""

    info: BlobInfo
    inline: bytes | None = None

    def to_bytes(self) -> bytes:
        return codec.encode({"v": VERSION, **_info_fields(self.info), "inline": self.inline})

    @classmethod
    def parse(cls, payload: bytes) -> BlobMeta:
        data = _load_msgpack(payload)
        info = _blob_info(data)
        inline = _get(data, "inline", (bytes, type(None)), None)
        if inline is not None and len(inline) != info.size:
            raise ProtocolError("inline blob size does not match its meta")
        return cls(info, inline)


@dataclass
class Chunk:
    """One piece of a blob (retained under ``blobs/``, or QoS 1 under ``uploads/``)."""

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
