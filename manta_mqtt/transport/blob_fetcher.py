"""The node's side of blob delivery: one QoS 0 subscription per blob, and requests for windows.

A fetch subscribes to ``blobs/{sha}/+`` (QoS 0: no JetStream consumer on NATS, ~1 ms to set up
in a cluster against ~1 s at QoS 1), waits for the SUBACK, then asks the coordinator for the
first ``window`` chunks (``BlobRequest``). As chunks arrive it asks for more, half a window at a
time, so the broker queues about a window of chunks per blob toward the device. Chunks other
nodes asked for are taken too (they are the same bytes). A chunk lost on the way (QoS 0, a broker
that failed over) is asked for again after ``FETCH_RETRY_SECONDS`` without news.

Chunks in order go to a spool in the store (a temp file past a few MiB), hashed on the way, and
the blob is renamed into place once its sha256 matches: never half, never corrupt.

Threads: the network thread feeds chunks; the fetching thread (the node's worker) asks, waits
and retries; both hold ``_lock`` while they touch a transfer, and neither publishes under it (a
publish may wait for acknowledgements, which the network thread reads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..blobstore import BlobSpool, BlobStore
from ..protocol import topics
from ..protocol.chunking import Assembler, BlobInfo, ChunkError, DigestMismatch
from ..protocol.limits import FETCH_RETRY_SECONDS, FETCH_WINDOW, MAX_BLOB_BYTES
from ..protocol.messages import BlobRequest, Chunk, ProtocolError
from ..protocol.rejections import Rejections
from .mqtt import MqttLink

log = logging.getLogger("manta_mqtt.blobs")

#: Times a transfer starts over after chunks that do not fit together (a forged chunk set it up,
#: or the blob failed its sha256 check) before the fetch fails: chunks can be asked for again.
MAX_RESTARTS = 3

Ask = tuple[str, str, int, int]  # swarm, sha, first, count


@dataclass
class Transfer:
    """One blob being fetched: what was asked for and not received, and what to ask for next
    (also the bench's simulated nodes' bookkeeping, bench/simnodes.py)."""

    swarm: str
    sha: str
    size: int | None = None  # as the assignment announced it, if it did
    assembler: Assembler | None = None
    asked: set[int] = field(default_factory=set)  # asked for, not yet here
    next_index: int = 0  # the first index never asked for
    heard: float = 0.0  # when a chunk last arrived (or we last asked)
    done: bool = False
    error: str = ""
    conflicts: int = 0  # chunks that disagreed with the assembler since it was set up
    restarts: int = 0

    def check(self, info: BlobInfo) -> None:
        """Refuse a chunk declaring another size than announced, before allocating anything."""
        if self.size is not None and info.size != self.size:
            raise ChunkError(f"declares {info.size} bytes; the assignment announced {self.size}")

    def restart(self, why: str) -> bool:
        """Drop what arrived and start again from chunk 0; False (the fetch failed) past the limit."""
        if self.assembler is not None:
            self.assembler.discard()
        self.assembler, self.asked, self.next_index, self.conflicts = None, set(), 0, 0
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            self.error, self.done = f"{why} ({MAX_RESTARTS} restarts)", True
            return False
        return True

    def more(self, window: int) -> list[int]:
        """Indexes to ask for now: up to a full window once half of it came (or at the start)."""
        count = self.assembler.info.count if self.assembler is not None else None
        if count is not None:
            self.asked = {i for i in self.asked if i < count}
        if len(self.asked) > window // 2:
            return []
        new: list[int] = []
        while len(self.asked) < window and (count is None or self.next_index < count):
            if self.assembler is None or not self.assembler.has(self.next_index):
                self.asked.add(self.next_index)
                new.append(self.next_index)
            self.next_index += 1
        return new


def runs(indexes: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted indexes as (first, count) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for i in sorted(indexes):
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


class BlobFetcher:
    """Fetches a swarm's blobs into a :class:`BlobStore`, asking for at most ``window`` chunks each."""

    def __init__(
        self,
        link: MqttLink,
        store: BlobStore,
        node: str,
        *,
        window: int = FETCH_WINDOW,
        retry: float = FETCH_RETRY_SECONDS,
        max_size: int = MAX_BLOB_BYTES,
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        self.link = link
        self.store = store
        self.node = topics.check_id(node, "node id")
        self.window = max(2, window)
        self.retry = retry
        self.max_size = max_size
        self.on_reject = on_reject if on_reject is not None else Rejections(log)
        self.requests_sent = 0
        self._lock = threading.Lock()
        self._news = threading.Condition(self._lock)
        self._transfers: dict[str, Transfer] = {}  # under _lock
        link.route(f"{topics.ROOT}/swarms/+/blobs/#", self._on_message)
        link.on_connect(self._on_reconnect)
        link.on_refused(self._on_refused)

    def fetch(
        self,
        swarm: str,
        shas: list[str],
        timeout: float,
        sizes: Mapping[str, int] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[str]:
        """Make every blob of ``shas`` available locally; return those that could not be had.

        ``sizes``: what the (signed) assignment announced; a chunk declaring another size is
        refused (``bad_chunk``) and the transfer waits for the right one. ``cancel``: the job was
        dropped (its swarm's coordinator was lost, say): stop waiting (the blobs come only when
        a coordinator answers, and a resumed one asks again with the same job)."""
        wanted = [sha for sha in dict.fromkeys(shas) if sha not in self.store]
        if not wanted:
            return []
        deadline = time.monotonic() + timeout
        transfers = []
        with self._lock:
            for sha in wanted:
                size = sizes.get(sha) if sizes else None
                transfer = self._transfers.setdefault(sha, Transfer(swarm, sha, size))
                transfers.append(transfer)
        filters = [topics.blob_chunks(swarm, sha) for sha in wanted]
        stop = cancel if cancel is not None else threading.Event()
        try:
            if self._subscribe(filters, transfers, deadline, stop):
                self._wait(transfers, deadline, stop)
        finally:
            self.link.unsubscribe(filters)
        return self._finish(transfers)

    def _subscribe(self, filters: list[str], transfers: list[Transfer], deadline: float, stop: threading.Event) -> bool:
        """Subscribe before asking (a chunk published earlier would be missed); again until the
        broker acknowledges (a SUBSCRIBE sent while the link is down is lost) unless it refuses
        (``_on_refused`` then failed the transfers)."""
        while time.monotonic() < deadline and not stop.is_set():
            if self.link.connected.is_set() and self.link.subscribe(filters, qos=0, wait=5.0):
                return True
            with self._lock:
                if any(t.done for t in transfers):  # refused
                    return False
            stop.wait(0.5)
        return False

    def _wait(self, transfers: list[Transfer], deadline: float, stop: threading.Event) -> None:
        """Ask, and ask again for what does not come, until every transfer is done or time is up."""
        while True:
            asks: list[Ask] = []
            now = time.monotonic()
            with self._lock:
                pending = [t for t in transfers if not t.done]
                if not pending or now >= deadline or stop.is_set():
                    return
                for t in pending:
                    if t.heard == 0.0:  # the first window
                        asks += self._asks(t, t.more(self.window), now)
                    elif now - t.heard >= self.retry:  # nothing for a while: a request or chunks lost
                        asks += self._asks(t, set(t.asked) or t.more(self.window), now)
            self._send(asks)
            with self._lock:
                if any(not t.done for t in transfers):
                    self._news.wait(min(0.5, max(0.0, deadline - time.monotonic())))

    def _finish(self, transfers: list[Transfer]) -> list[str]:
        failed = []
        with self._lock:
            for transfer in transfers:
                self._transfers.pop(transfer.sha, None)
                if transfer.assembler is not None and transfer.sha not in self.store:
                    transfer.assembler.discard()
                if transfer.sha not in self.store:
                    failed.append(transfer.sha)
                    log.warning("blob %s not fetched: %s", transfer.sha[:12], transfer.error or "timed out")
        return failed

    def _asks(self, transfer: Transfer, indexes: Iterable[int], now: float) -> list[Ask]:
        transfer.heard = now
        return [(transfer.swarm, transfer.sha, first, count) for first, count in runs(indexes)]

    def _send(self, asks: list[Ask]) -> None:
        for swarm, sha, first, count in asks:
            request = BlobRequest(swarm, self.node, sha, first, count)
            self.link.publish(topics.blob_request(swarm, self.node), request.to_bytes())
            self.requests_sent += 1

    # --- the network thread --------------------------------------------------------------------

    def _on_reconnect(self) -> None:
        """Requests and chunks may have been lost with the connection: ask again at once."""
        now = time.monotonic()
        asks: list[Ask] = []
        with self._lock:
            for t in self._transfers.values():
                if not t.done and t.heard:
                    asks += self._asks(t, set(t.asked) or t.more(self.window), now)
        self._send(asks)

    def _on_refused(self, filters: list[str], reason: str) -> None:
        """A blob the broker will not let us subscribe to fails now, with the reason."""
        with self._lock:
            for topic_filter in filters:
                for t in self._transfers.values():
                    if not t.done and topic_filter == topics.blob_chunks(t.swarm, t.sha):
                        t.error, t.done = f"the broker refused the subscription to {reason}", True
            self._news.notify_all()

    def _on_message(self, topic: str, payload: bytes, _retained: bool) -> None:
        if not payload:
            return
        try:
            parsed = topics.parse(topic)
        except topics.TopicError as exc:
            self.on_reject("malformed", f"blob topic: {exc}")
            return
        asks: list[Ask] = []
        with self._lock:
            transfer = self._transfers.get(parsed.sha or "")
            if parsed.kind is not topics.Kind.BLOB_CHUNK or transfer is None or transfer.done:
                return  # not ours (any more)
            try:
                asks = self._on_chunk(transfer, Chunk.parse(payload), parsed.index)
            except (ProtocolError, ChunkError, ValueError, OSError) as exc:
                asks = self._on_bad_chunk(transfer, exc)
        self._send(asks)

    def _on_bad_chunk(self, transfer: Transfer, exc: Exception) -> list[Ask]:
        """Count it; start over when the chunks that came cannot make the blob (a forged first
        chunk fixed another chunking, or the sha256 failed): never deliver them, never wait forever."""
        if isinstance(exc, OSError):
            log.error("blob %s: %s", transfer.sha[:12], exc)
            transfer.error, transfer.done = str(exc), True
            self._news.notify_all()
            return []
        self.on_reject("bad_chunk" if isinstance(exc, ChunkError) else "malformed", f"blob {transfer.sha[:12]}: {exc}")
        mismatch = isinstance(exc, ChunkError) and transfer.assembler is not None and "different blob" in str(exc)
        transfer.conflicts += mismatch
        if not isinstance(exc, DigestMismatch) and transfer.conflicts < 2:
            return []
        if not transfer.restart(str(exc)):
            self._news.notify_all()
            return []
        log.warning("blob %s: starting over (%s)", transfer.sha[:12], exc)
        return self._asks(transfer, transfer.more(self.window), time.monotonic())

    def _on_chunk(self, transfer: Transfer, chunk: Chunk, index: int | None) -> list[Ask]:
        if chunk.info.sha != transfer.sha or chunk.index != index:
            raise ProtocolError("chunk does not match its topic")
        transfer.check(chunk.info)
        if transfer.assembler is None:  # chunks describe their blob: the first one sets it up
            transfer.assembler = Assembler(chunk.info, self.max_size, spool=self.store.spool())
        now = time.monotonic()
        transfer.heard = now
        transfer.asked.discard(chunk.index)
        if transfer.assembler.feed(chunk.info, chunk.index, chunk.data):
            spool = transfer.assembler.spool
            assert isinstance(spool, BlobSpool)
            self.store.adopt(spool, transfer.sha)  # the assembler checked its sha256
            transfer.done = True
            self._news.notify_all()
            return []
        return self._asks(transfer, more, now) if (more := transfer.more(self.window)) else []
