"""UploadGrant: the coordinator asks one node for a range of one upload's chunks.

Uploads are pulled, not pushed: a node publishes its result envelope first (large values as
``{"blob", "size"}`` refs) and sends the chunks of an upload only as grants ask for them, so the
coordinator bounds what the broker queues toward it (docs/protocol.md, *Flow control*). The grant
fixes the chunk size, so the indexes mean the same bytes on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import codec
from ..chunking import BlobInfo
from ..limits import MAX_BLOB_BYTES, MAX_MESSAGE_BYTES, MIN_CHUNK_SIZE
from .fields import VERSION, ProtocolError, _get, _id, _load_msgpack, _nonneg, _sha


@dataclass(frozen=True)
class UploadGrant:
    """Send chunks ``first .. first + count - 1`` of blob ``sha`` (``size`` bytes) in ``chunk_size`` pieces."""

    swarm: str
    node: str
    sha: str
    size: int
    chunk_size: int
    first: int
    count: int

    @property
    def info(self) -> BlobInfo:
        return BlobInfo(self.sha, self.size, self.chunk_size)

    @property
    def indexes(self) -> range:
        return range(self.first, self.first + self.count)

    def to_bytes(self) -> bytes:
        return codec.encode(
            {
                "v": VERSION,
                "swarm": self.swarm,
                "node": self.node,
                "sha": self.sha,
                "size": self.size,
                "chunk_size": self.chunk_size,
                "first": self.first,
                "count": self.count,
            }
        )

    @classmethod
    def parse(cls, payload: bytes) -> UploadGrant:
        data = _load_msgpack(payload)
        grant = cls(
            swarm=_id(data, "swarm"),
            node=_id(data, "node"),
            sha=_sha(_get(data, "sha", str), "sha"),
            size=_nonneg(data, "size"),
            chunk_size=_nonneg(data, "chunk_size"),
            first=_nonneg(data, "first"),
            count=_nonneg(data, "count"),
        )
        if grant.size > MAX_BLOB_BYTES:
            raise ProtocolError(f"size {grant.size} exceeds the limit of {MAX_BLOB_BYTES}")
        if not MIN_CHUNK_SIZE <= grant.chunk_size <= MAX_MESSAGE_BYTES:
            raise ProtocolError(f"chunk_size {grant.chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_MESSAGE_BYTES}")
        if grant.count < 1 or grant.first + grant.count > grant.info.count:
            raise ProtocolError(f"chunks {grant.first}+{grant.count} out of range (count {grant.info.count})")
        return grant
