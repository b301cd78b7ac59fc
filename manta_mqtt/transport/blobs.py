"""Moving blobs over MQTT: publish once (retained), fetch with a bounded window, upload results.

- :class:`BlobPublisher` (coordinator): retained chunks, then a retained meta; a blob already
  published is not sent again; :meth:`BlobPublisher.clear` removes it from the broker.
- :class:`BlobFetcher` (node): subscribes to the meta and to at most ``window`` chunk topics
  at a time, so the broker never queues more than that many chunks toward a small device.
- :class:`UploadReceiver` (coordinator): reassembles chunks uploaded by nodes, within budgets of
  bytes held (per node and in total) and of open uploads per node, and hands over only verified
  blobs. Chunks in order go to a temp file beside the store (hashed on the way), so memory holds
  only chunks past a gap.

Receivers allocate for the bytes that arrived, never for the size a chunk or meta declares.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..blobstore import BlobSpool, BlobStore
from ..ownership import Owner
from ..protocol import topics
from ..protocol.chunking import (
    DEFAULT_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    Assembler,
    AssemblerPool,
    BlobInfo,
    ChunkError,
    DigestMismatch,
    OverBudget,
    split,
)
from ..protocol.limits import (
    FETCH_WINDOW,
    MAX_BLOB_BYTES,
    MAX_NODE_UPLOAD_BYTES,
    MAX_OPEN_UPLOADS_PER_NODE,
    MAX_TOTAL_UPLOAD_BYTES,
    UPLOAD_STALL_SECONDS,
)
from ..protocol.messages import BlobMeta, BlobRef, Chunk, ProtocolError
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


class BlobPublisher:
    """Publishes content-addressed blobs of one swarm as retained messages."""

    def __init__(self, link: MqttLink, swarm: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.link = link
        self.swarm = swarm
        self.chunk_size = chunk_size
        self.published: dict[str, BlobInfo] = {}

    def publish(self, data: bytes) -> str:
        """Publish ``data`` (hashed here); its sha."""
        info, chunks = split(data, chunk_size_for(self.link, self.chunk_size))
        if info.sha not in self.published:
            self._publish(info, chunks)
        return info.sha

    def publish_file(self, path: Path, sha: str) -> None:
        """Publish a stored blob whose content the store verified hashes to ``sha``, read chunk by
        chunk: memory holds the chunks the link's window has in flight, never the whole blob."""
        if sha in self.published:
            return
        with path.open("rb") as file:
            info = BlobInfo(sha, os.fstat(file.fileno()).st_size, chunk_size_for(self.link, self.chunk_size))
            self._publish(info, (file.read(info.chunk_size) for _ in range(info.count)))

    def _publish(self, info: BlobInfo, chunks: Iterable[bytes | memoryview]) -> None:
        if info.count == 1:
            meta = BlobMeta(info, inline=bytes(next(iter(chunks), b"")))
        else:
            for index, piece in enumerate(chunks):
                payload = Chunk(info, index, piece).to_bytes()
                self.link.publish(topics.blob_chunk(self.swarm, info.sha, index), payload, retain=True)
            meta = BlobMeta(info)
        self.link.publish(topics.blob_meta(self.swarm, info.sha), meta.to_bytes(), retain=True)
        self.published[info.sha] = info

    def clear(self, sha: str) -> None:
        """Delete a blob from the broker (empty retained payloads)."""
        info = self.published.pop(sha, None)
        if info is None:
            return
        self.link.publish(topics.blob_meta(self.swarm, sha), b"", retain=True)
        if info.count > 1:
            for index in range(info.count):
                self.link.publish(topics.blob_chunk(self.swarm, sha, index), b"", retain=True)

    def clear_all_except(self, keep: set[str]) -> None:
        for sha in [s for s in self.published if s not in keep]:
            self.clear(sha)


def upload(link: MqttLink, swarm: str, node: str, data: bytes, chunk_size: int) -> BlobRef:
    """Send ``data`` as QoS 1 chunks on the node's upload topics, unasked (bounded by the link
    window only). Nodes wait for grants instead (``edge_node.uploads``); kept for tests and tools."""
    info, chunks = split(data, chunk_size_for(link, chunk_size))
    for index, piece in enumerate(chunks):
        link.publish(topics.upload_chunk(swarm, node, info.sha, index), Chunk(info, index, piece).to_bytes())
    return BlobRef(info.sha, info.size)


@dataclass
class _Transfer:
    swarm: str
    sha: str
    done: threading.Event = field(default_factory=threading.Event)
    assembler: Assembler | None = None
    requested: set[int] = field(default_factory=set)
    next_index: int = 0
    error: str = ""
    size: int | None = None  # as the assignment announced it, if it did

    def check(self, info: BlobInfo) -> None:
        """Refuse a meta or chunk declaring another size than announced, before allocating anything."""
        if self.size is not None and info.size != self.size:
            raise ChunkError(f"declares {info.size} bytes; the assignment announced {self.size}")


class BlobFetcher:
    """Fetches blobs into a :class:`BlobStore`, never more than ``window`` chunks requested."""

    def __init__(
        self,
        link: MqttLink,
        store: BlobStore,
        *,
        window: int = FETCH_WINDOW,
        max_size: int = MAX_BLOB_BYTES,
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        self.link = link
        self.store = store
        self.window = window
        self.max_size = max_size
        self.on_reject = on_reject if on_reject is not None else Rejections(log)
        self._lock = threading.Lock()
        self._transfers: dict[str, _Transfer] = {}
        link.route(f"{topics.ROOT}/swarms/+/blobs/#", self._on_message)
        link.on_connect(self._resubscribe)
        link.on_refused(self._on_refused)

    def _on_refused(self, filters: list[str], reason: str) -> None:
        """A transfer the broker will not let us subscribe for fails now, with the reason, instead
        of at its timeout (NATS refuses past a session's subscription limit, an ACL anywhere)."""
        with self._lock:
            for topic in filters:
                try:
                    sha = topics.parse(topic).sha or ""
                except topics.TopicError:
                    continue
                transfer = self._transfers.get(sha)
                if transfer is not None and not transfer.done.is_set():
                    transfer.error = f"the broker refused the subscription to {reason}"
                    transfer.done.set()

    def _resubscribe(self) -> None:
        """After a reconnection (a broker restart, a link cut), ask again for what is missing:
        a new subscription makes the broker send the retained chunks again; duplicates are
        ignored, so a transfer resumes where it stopped."""
        with self._lock:
            filters = []
            for t in self._transfers.values():
                if not t.done.is_set():
                    filters.append(topics.blob_meta(t.swarm, t.sha))
                    filters += [topics.blob_chunk(t.swarm, t.sha, i) for i in sorted(t.requested)]
        if filters:
            self.link.subscribe(filters)

    def fetch(self, swarm: str, shas: list[str], timeout: float, sizes: Mapping[str, int] | None = None) -> list[str]:
        """Make every blob of ``shas`` available locally; return those that could not be had.

        ``sizes``: what the (signed) assignment announced; a meta or chunk declaring another
        size is refused (``bad_chunk``) and the transfer waits for the right one."""
        wanted = [sha for sha in dict.fromkeys(shas) if sha not in self.store]
        transfers = []
        with self._lock:
            for sha in wanted:
                transfer = self._transfers.setdefault(sha, _Transfer(swarm, sha))
                if sizes and sha in sizes and transfer.assembler is None:
                    transfer.size = sizes[sha]
                transfers.append(transfer)
        filters = []
        for transfer in transfers:  # the meta, and the first window of chunks: one round trip
            transfer.requested = set(range(self.window))
            transfer.next_index = self.window
            filters.append(topics.blob_meta(swarm, transfer.sha))
            filters += [topics.blob_chunk(swarm, transfer.sha, i) for i in range(self.window)]
        if filters:
            self.link.subscribe(filters)
        deadline = time.monotonic() + timeout
        for transfer in transfers:
            transfer.done.wait(max(0.0, deadline - time.monotonic()))
        failed = []
        with self._lock:
            for transfer in transfers:
                self._transfers.pop(transfer.sha, None)
                self._unsubscribe_all(transfer)
                if transfer.sha not in self.store:
                    failed.append(transfer.sha)
                    log.warning("blob %s not fetched: %s", transfer.sha[:12], transfer.error or "timed out")
        return failed

    def _unsubscribe_all(self, transfer: _Transfer) -> None:
        filters = [topics.blob_meta(transfer.swarm, transfer.sha)]
        filters += [topics.blob_chunk(transfer.swarm, transfer.sha, i) for i in transfer.requested]
        self.link.unsubscribe(filters)

    def _on_message(self, topic: str, payload: bytes, _retained: bool) -> None:
        if not payload:  # a retained blob being cleared
            return
        try:
            parsed = topics.parse(topic)
        except topics.TopicError as exc:
            self.on_reject("malformed", f"blob topic: {exc}")
            return
        with self._lock:
            transfer = self._transfers.get(parsed.sha or "")
            if transfer is None or transfer.done.is_set():
                return  # not ours (any more)
            try:
                if parsed.kind is topics.Kind.BLOB_META:
                    self._on_meta(transfer, BlobMeta.parse(payload))
                elif parsed.kind is topics.Kind.BLOB_CHUNK:
                    self._on_chunk(transfer, Chunk.parse(payload))
            except (ProtocolError, ChunkError, ValueError) as exc:
                reason = "bad_chunk" if isinstance(exc, ChunkError) else "malformed"
                self.on_reject(reason, f"blob {transfer.sha[:12]}: {exc}")
                if isinstance(exc, DigestMismatch):
                    transfer.error = str(exc)
                    transfer.done.set()

    def _on_meta(self, transfer: _Transfer, meta: BlobMeta) -> None:
        if meta.info.sha != transfer.sha:
            raise ProtocolError("meta describes another blob than its topic")
        transfer.check(meta.info)
        if meta.inline is not None:
            self.store.put(meta.inline, transfer.sha)
            transfer.done.set()
            return
        if transfer.assembler is None:
            transfer.assembler = Assembler(meta.info, self.max_size)
            self._request_more(transfer)

    def _on_chunk(self, transfer: _Transfer, chunk: Chunk) -> None:
        if chunk.info.sha != transfer.sha:
            raise ProtocolError("chunk describes another blob than its topic")
        transfer.check(chunk.info)
        if transfer.assembler is None:  # chunks describe their blob: no need to wait for the meta
            transfer.assembler = Assembler(chunk.info, self.max_size)
        blob = transfer.assembler.add(chunk.info, chunk.index, chunk.data)
        self.link.unsubscribe(topics.blob_chunk(transfer.swarm, transfer.sha, chunk.index))
        transfer.requested.discard(chunk.index)
        if blob is not None:
            self.store.put_verified(blob, transfer.sha)  # the assembler checked its sha256
            transfer.done.set()
        else:
            self._request_more(transfer)

    def _request_more(self, transfer: _Transfer) -> None:
        assert transfer.assembler is not None
        count = transfer.assembler.info.count
        beyond = sorted(i for i in transfer.requested if i >= count)  # asked for before the count was known
        if beyond:
            self.link.unsubscribe([topics.blob_chunk(transfer.swarm, transfer.sha, i) for i in beyond])
            transfer.requested -= set(beyond)
        new = []
        while len(transfer.requested) < self.window and transfer.next_index < count:
            transfer.requested.add(transfer.next_index)
            new.append(topics.blob_chunk(transfer.swarm, transfer.sha, transfer.next_index))
            transfer.next_index += 1
        if new:
            self.link.subscribe(new)


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
