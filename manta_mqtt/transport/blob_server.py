"""The coordinator's side of blob delivery: chunks are published when a node asks for them.

Protocol v2 keeps no blob on the broker. A retained blob reached nobody on brokers that keep
retained messages per cluster member (RabbitMQ) or do not deliver them to wildcard
subscriptions, and fetching one needed a subscription per chunk (NATS: ~1 s each in a cluster).
Now a fetching node subscribes once per blob at QoS 0 and asks for windows of chunks
(``BlobRequest`` on ``want/{node}``); this server publishes them (QoS 1, not retained).

Nodes fetching the same global at once all receive every chunk published for any of them, so a
chunk asked for by many nodes while it waits in the queue is published once: the queue holds
(blob, index) pairs, not requests. A request that comes after a chunk left the queue gets it
again: its sender subscribed before asking, so it may have missed the earlier copy.

Threads: the network thread parses requests and hands them over through a bounded queue; the
server's own thread owns the queue of chunks and publishes (a publish may wait for the broker's
acknowledgements, which the network thread reads). The offered blobs are set by the main thread
and read by the server thread, under ``_lock``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from ..protocol import topics
from ..protocol.chunking import DEFAULT_CHUNK_SIZE, BlobInfo, sha256
from ..protocol.limits import FETCH_WINDOW, MAX_QUEUED_BLOB_CHUNKS
from ..protocol.messages import BlobRequest, Chunk, ProtocolError
from ..protocol.rejections import Rejections
from .blobs import chunk_size_for
from .mqtt import MqttLink

log = logging.getLogger("manta_mqtt.blobs")

_STOP = None

#: Seconds a chunk asked for again just after it was published waits before it is published again:
#: nodes fetching in step ask for it within a few ms of each other, and one copy then serves all.
REPEAT_HOLD = 0.05

Key = tuple[str, int]  # sha, index


class BlobServer:
    """Serves one swarm's offered blobs, chunk by chunk, to the nodes that ask."""

    def __init__(
        self,
        link: MqttLink,
        swarm: str,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        window: int = FETCH_WINDOW,
        max_queued: int = MAX_QUEUED_BLOB_CHUNKS,
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        self.link = link
        self.swarm = swarm
        self.chunk_size = chunk_size
        self.window = window
        self.max_queued = max_queued
        self.on_reject = on_reject if on_reject is not None else Rejections(log)
        self.chunks_sent = 0  # written by the server thread only
        self._lock = threading.Lock()
        self._offered: dict[str, tuple[BlobInfo, Path | bytes]] = {}  # under _lock
        self._requests: queue.Queue[BlobRequest | None] = queue.Queue(maxsize=max_queued)
        # the server thread's: chunks to publish (in order; a value is the time to publish it, not
        # before), and when each chunk was last published (within REPEAT_HOLD: bounded)
        self._queued: OrderedDict[Key, float] = OrderedDict()
        self._sent: dict[Key, float] = {}
        self._thread: threading.Thread | None = None
        link.route(topics.swarm_blob_requests(swarm), self._on_request)

    @property
    def filters(self) -> list[str]:
        """What the coordinator subscribes to for this server."""
        return [topics.swarm_blob_requests(self.swarm)]

    def offers(self, sha: str) -> bool:
        with self._lock:
            return sha in self._offered

    # --- the main thread -----------------------------------------------------------------------

    def start(self) -> BlobServer:
        self._thread = threading.Thread(target=self._serve, name=f"blob-server-{self.swarm}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        try:
            self._requests.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("blob server: its queue stayed full; left it running")
            return
        self._thread.join(timeout)
        self._thread = None

    def offer_file(self, path: Path, sha: str) -> None:
        """Offer a stored blob whose content the store verified hashes to ``sha``; read per chunk."""
        size = path.stat().st_size
        self._offer(BlobInfo(sha, size, chunk_size_for(self.link, self.chunk_size)), path)

    def offer(self, data: bytes) -> str:
        """Offer bytes held in memory (small ones: code bundles); their sha."""
        sha = sha256(data)
        self._offer(BlobInfo(sha, len(data), chunk_size_for(self.link, self.chunk_size)), bytes(data))
        return sha

    def _offer(self, info: BlobInfo, source: Path | bytes) -> None:
        with self._lock:
            self._offered.setdefault(info.sha, (info, source))

    def withdraw_all_except(self, keep: set[str]) -> None:
        """Stop serving the blobs not in ``keep`` (the globals an earlier iteration replaced)."""
        with self._lock:
            for sha in [s for s in self._offered if s not in keep]:
                del self._offered[sha]

    # --- the network thread --------------------------------------------------------------------

    def _on_request(self, topic: str, payload: bytes, retained: bool) -> None:
        if not payload:
            return
        try:
            request = BlobRequest.parse(payload)
        except ProtocolError as exc:
            self.on_reject("malformed", f"blob request on {topic}: {exc}")
            return
        try:
            node = topics.parse(topic).node
        except topics.TopicError as exc:
            self.on_reject("malformed", f"blob request: {exc}")
            return
        if retained or request.swarm != self.swarm or node != request.node:
            self.on_reject("forged", f"blob request on {topic} for {request.node} of swarm {request.swarm}")
            return
        try:
            self._requests.put_nowait(request)
        except queue.Full:
            self.on_reject("overflow", f"blob request from {request.node}: {self.max_queued} requests queued")

    # --- the server thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            ready = self._ready(time.monotonic())
            wait = (
                None if not self._queued else 0.0 if ready else max(0.0, min(self._queued.values()) - time.monotonic())
            )
            try:
                request = self._requests.get(block=wait != 0.0, timeout=wait)
            except queue.Empty:
                if ready is not None:
                    self._publish(*ready)
                continue
            if request is _STOP:
                return
            self._take(request)

    def _ready(self, now: float) -> Key | None:
        """The first queued chunk due now, if any (forgetting publish times past the hold)."""
        for key in [k for k, at in self._sent.items() if at < now - REPEAT_HOLD]:
            del self._sent[key]
        return next((key for key, due in self._queued.items() if due <= now), None)

    def _take(self, request: BlobRequest) -> None:
        with self._lock:
            offered = self._offered.get(request.sha)
        if offered is None:
            self.on_reject("unexpected", f"{request.node} asked for blob {request.sha[:12]}, not on offer")
            return
        count = offered[0].count
        if request.count > self.window:
            asked = f"{request.node} asked for {request.count} chunks at once"
            self.on_reject("overflow", f"{asked} (at most {self.window})")
        for index in request.indexes[: self.window]:
            if index >= count:
                break
            if len(self._queued) >= self.max_queued:
                self.on_reject("overflow", f"blob request from {request.node}: {self.max_queued} chunks queued")
                return
            key = (request.sha, index)
            if key not in self._queued:  # already queued: one publish serves both
                self._queued[key] = self._sent.get(key, 0.0) + REPEAT_HOLD

    def _publish(self, sha: str, index: int) -> None:
        del self._queued[(sha, index)]
        self._sent[(sha, index)] = time.monotonic()
        with self._lock:
            offered = self._offered.get(sha)
        if offered is None:  # withdrawn meanwhile
            return
        info, source = offered
        start, end = info.span(index)
        try:
            data = source[start:end] if isinstance(source, bytes) else _read(source, start, end - start)
        except OSError as exc:
            log.error("blob %s: chunk %d unreadable: %s", sha[:12], index, exc)
            return
        self.link.publish(topics.blob_chunk(self.swarm, sha, index), Chunk(info, index, data).to_bytes(), qos=0)
        self.chunks_sent += 1


def _read(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)
