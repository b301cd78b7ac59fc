"""Moving blobs over MQTT: the chunk size, and uploads from nodes to the coordinator.

Blobs going to nodes: :mod:`.blob_server` (the coordinator publishes the chunks nodes ask for) and
:mod:`.blob_fetcher` (a node asks for them, a window at a time).

- :class:`UploadReceiver` (coordinator): reassembles chunks uploaded by nodes, within budgets of
  bytes held (per node and in total) and of open uploads per node, and hands over only verified
  blobs. Chunks in order go to a temp file beside the store (hashed on the way), so memory holds
  only chunks past a gap.

Receivers allocate for the bytes that arrived, never for the size a chunk or meta declares.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..blobstore import BlobSpool, BlobStore
from ..ownership import Owner
from ..protocol import topics
from ..protocol.chunking import (
    DEFAULT_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    AssemblerPool,
    ChunkError,
    OverBudget,
    split,
)
from ..protocol.limits import (
    MAX_BLOB_BYTES,
    MAX_NODE_UPLOAD_BYTES,
    MAX_OPEN_UPLOADS_PER_NODE,
    MAX_TOTAL_UPLOAD_BYTES,
    UPLOAD_STALL_SECONDS,
)
from ..protocol.messages import BlobRef, Chunk, ProtocolError
from ..protocol.rejections import Rejections
from .mqtt import MqttLink

log = logging.getLogger("manta_mqtt.blobs")

#: Room for the chunk message's own fields and the MQTT header, below the broker's packet limit.
CHUNK_OVERHEAD = 4096


def chunk_size_for(link: MqttLink, wanted: int = DEFAULT_CHUNK_SIZE) -> int:
    """The chunk size to use on ``link``: ``wanted``, or less if the broker said so."""
    if link.max_packet:
        return max(MIN_CHUNK_SIZE, min(wanted, link.max_packet - CHUNK_OVERHEAD))
    return wanted


def upload(link: MqttLink, swarm: str, node: str, data: bytes, chunk_size: int) -> BlobRef:
    """Send ``data`` as QoS 1 chunks on the node's upload topics, unasked (bounded by the link
    window only). Nodes wait for grants instead (``edge_node.uploads``); kept for tests and tools."""
    info, chunks = split(data, chunk_size_for(link, chunk_size))
    for index, piece in enumerate(chunks):
        link.publish(topics.upload_chunk(swarm, node, info.sha, index), Chunk(info, index, piece).to_bytes())
    return BlobRef(info.sha, info.size)


class UploadReceiver:
    """Reassembles uploads from nodes, within budgets, so no node can exhaust the coordinator's memory.

    Memory follows what arrived (nothing is allocated at a declared size), bounded by an
    :class:`AssemblerPool`: open uploads per node, bytes held per node, bytes held in total. A
    chunk past a budget is refused (``oversized``) and its upload discarded; other nodes go on.
    Chunks in order are written to a :class:`BlobSpool` (a temp file in the store's ``.partial/``)
    and renamed into the store once verified; only chunks past a gap wait in memory. The budgets
    count both, so they bound memory and disk alike. Chunks nobody asked for (a node of an earlier
    version pushes its uploads) are taken the same way, within the same budgets.

    Not thread-safe: one thread owns it (the coordinator's network thread, which receives the
    chunks and also sweeps); a call from another thread raises ``WrongThread``.
    """

    def __init__(
        self,
        store: BlobStore,
        *,
        max_size: int = MAX_BLOB_BYTES,
        max_per_node: int = MAX_OPEN_UPLOADS_PER_NODE,
        max_bytes_per_node: int = MAX_NODE_UPLOAD_BYTES,
        max_bytes_total: int = MAX_TOTAL_UPLOAD_BYTES,
        stale_after: float = UPLOAD_STALL_SECONDS,
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.stale_after = stale_after
        self.on_reject = on_reject if on_reject is not None else Rejections(log)
        self.pool = AssemblerPool(
            max_size=max_size,
            max_open_per_sender=max_per_node,
            max_bytes_per_sender=max_bytes_per_node,
            max_bytes_total=max_bytes_total,
            spool=lambda _info: store.spool(),
        )
        store.clear_spools()  # a previous coordinator's, on the same store, died with it
        self._owner = Owner("an UploadReceiver")

    def receive(self, node: str, sha: str, index: int, payload: bytes) -> str | None:
        """Take one chunk; return the sha when its blob became complete and is stored."""
        self._owner.check()
        try:
            chunk = Chunk.parse(payload)
        except ProtocolError as exc:
            self.on_reject("malformed", f"upload from {node}: {exc}")
            return None
        if chunk.info.sha != sha or chunk.index != index:
            self.on_reject("malformed", f"upload from {node}: chunk does not match its topic")
            return None
        if sha in self.store:  # already have it (a duplicate delivery, or another node's same bytes)
            self.pool.discard((node, sha))
            return None
        try:
            done = self.pool.feed(node, chunk.info, chunk.index, chunk.data, time.monotonic())
        except OverBudget as exc:
            self.on_reject("oversized", f"upload from {node}: {exc}")
            return None
        except ChunkError as exc:
            self.on_reject("bad_chunk", f"upload from {node}: {exc}")
            return None
        except OSError as exc:  # the disk: not the node's fault, so not counted against it
            log.warning("upload %s from %s dropped: %s", sha[:12], node, exc)
            return None
        if done is None:
            return None
        spool = done.spool
        assert isinstance(spool, BlobSpool)
        self.store.adopt(spool, sha)  # the assembler checked its sha256
        self.pool.discard_blob(sha)  # other nodes' partial copies of the same bytes
        return sha

    def sweep(self) -> int:
        """Drop uploads that stalled; return how many were dropped."""
        self._owner.check()
        return self.pool.expire(time.monotonic() - self.stale_after)
