"""The node's upload server: answers the coordinator's grants with chunks of its own results.

A node publishes a result's envelope first and sends the chunks of its large values only when the
coordinator grants them (``UploadGrant`` on ``swarms/{swarm}/grants/{node}``), so the coordinator
paces every node's uploads (docs/protocol.md, *Flow control*).

Threads: paho's network thread runs :meth:`UploadServer.on_grant` (parse, check, count what it
refuses, queue); the server's own thread ("edge-uploads") owns the offers (which blobs of the
cache are our results, of which swarm) and reads the chunks from the cache file, one at a time.
It is not the worker thread, which may be running another task for hours; the worker owns the
outbox and hands over what it holds through :meth:`offer`, before it publishes the envelope.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass

from manta_mqtt.blobstore import BlobStore
from manta_mqtt.ownership import Owner
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import Chunk, ProtocolError, UploadGrant
from manta_mqtt.protocol.rejections import Rejections
from manta_mqtt.transport.blobs import chunk_size_for
from manta_mqtt.transport.mqtt import MqttLink

log = logging.getLogger("edge_node")

#: Blobs the server remembers as ours (the outbox keeps 200 sent results, each with a few uploads);
#: past it the oldest offer is forgotten, and a grant for it refused as ``unexpected``.
MAX_OFFERS = 1024
#: Grants queued for the server thread; past it a grant is refused (``overflow``): the
#: coordinator grants its chunks again after its retry time.
MAX_QUEUED_GRANTS = 256
#: A grant is a few hundred bytes; anything much larger is no grant.
MAX_GRANT_BYTES = 4096


@dataclass(frozen=True)
class _Offer:
    swarm: str
    shas: tuple[str, ...]


@dataclass(frozen=True)
class _Ready:
    """Every result in the outbox at start was offered: grants held until now may be answered."""


_Item = _Offer | _Ready | UploadGrant | None  # None: stop


class UploadServer:
    def __init__(self, node_id: str, link: MqttLink, cache: BlobStore, reject: Rejections) -> None:
        self.node_id = node_id
        self.link = link  # thread-safe
        self.cache = cache  # files written atomically: read freely
        self.reject = reject  # thread-safe
        self.served = 0  # grants answered (read by tests)
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._grants = 0  # grants in _queue
        self._lock = threading.Lock()  # guards _grants
        self._owner = Owner("the upload server")
        self._offers: OrderedDict[str, set[str]] = OrderedDict()  # sha -> swarms; the server thread's
        self._ready = False
        self._held: list[UploadGrant] = []  # grants that came before _Ready
        self._thread = threading.Thread(target=self._main, name="edge-uploads", daemon=True)

    # --- any thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread after the grant in hand (a daemon: one stuck on a dead link is left behind)."""
        self._queue.put(None)
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def offer(self, swarm: str, shas: list[str]) -> None:
        """Blobs of the cache that are a result of ours for ``swarm``: grants for them are answered."""
        if shas:
            self._queue.put(_Offer(swarm, tuple(shas)))

    def offered_all(self) -> None:
        """Every result held at start was offered (the worker read its outbox)."""
        self._queue.put(_Ready())

    # --- paho's network thread -------------------------------------------------------------------

    def on_grant(self, topic: str, payload: bytes, retained: bool) -> None:
        if not payload:
            return
        if retained or len(payload) > MAX_GRANT_BYTES:
            self.reject("unexpected" if retained else "oversized", f"upload grant on {topic}")
            return
        try:
            parsed = topics.parse(topic)
            grant = UploadGrant.parse(payload)
        except (topics.TopicError, ProtocolError) as exc:
            self.reject("malformed", f"upload grant on {topic}: {exc}")
            return
        if parsed.node != self.node_id or grant.node != self.node_id or grant.swarm != parsed.swarm:
            self.reject("forged", f"upload grant on {topic} names {grant.swarm!r}/{grant.node!r}")
            return
        with self._lock:
            room = self._grants < MAX_QUEUED_GRANTS
            self._grants += room
        if not room:
            self.reject("overflow", f"upload grant for {grant.sha[:12]}: {MAX_QUEUED_GRANTS} queued already")
            return
        self._queue.put(grant)

    # --- the server thread -----------------------------------------------------------------------

    def _main(self) -> None:
        self._owner.check()
        while (item := self._queue.get()) is not None:
            if isinstance(item, UploadGrant):
                with self._lock:
                    self._grants -= 1
            try:
                self._handle(item)
            except Exception:  # a bug here must not end the server: the grant is granted again
                log.exception("answering an upload grant failed")

    def _handle(self, item: _Offer | _Ready | UploadGrant) -> None:
        if isinstance(item, _Offer):
            for sha in item.shas:
                self._offers.setdefault(sha, set()).add(item.swarm)
                self._offers.move_to_end(sha)
            while len(self._offers) > MAX_OFFERS:
                self._offers.popitem(last=False)
        elif isinstance(item, _Ready):
            self._ready = True
            held, self._held = self._held, []
            for grant in held:
                self._serve(grant)
        elif not self._ready:
            if len(self._held) < MAX_QUEUED_GRANTS:
                self._held.append(item)
        else:
            self._serve(item)

    def _serve(self, grant: UploadGrant) -> None:
        what = f"upload grant for {grant.sha[:12]} of swarm {grant.swarm}"
        if grant.swarm not in self._offers.get(grant.sha, ()) or grant.sha not in self.cache:
            self.reject("unexpected", f"{what}: not a result of ours that we still hold")
            return
        if not self.link.connected.is_set():
            log.info("%s: link down; the coordinator will ask again", what)
            return
        try:
            send_chunks(self.link, self.node_id, grant, self.cache)
        except (ValueError, OSError) as exc:
            self.reject("unexpected", f"{what}: {exc}")
            return
        self.served += 1


def send_chunks(link: MqttLink, node: str, grant: UploadGrant, store: BlobStore) -> None:
    """Publish the chunks ``grant`` names, read from ``store`` one at a time (never the whole blob).

    The caller checked that the blob is one of its own results; raises ``ValueError`` when the
    stored blob has another size than the grant says or the chunk does not fit the broker's
    packet limit, and ``OSError`` when the file is gone."""
    path = store.path(grant.sha)
    size = path.stat().st_size
    if size != grant.size:
        raise ValueError(f"blob {grant.sha[:12]} has {size} bytes, the grant says {grant.size}")
    if chunk_size_for(link, grant.chunk_size) != grant.chunk_size:
        raise ValueError(f"chunks of {grant.chunk_size} bytes do not fit the broker's packet limit")
    info = grant.info
    with path.open("rb") as handle:
        for index in grant.indexes:
            start, end = info.span(index)
            handle.seek(start)
            piece = handle.read(end - start)
            payload = Chunk(info, index, piece).to_bytes()  # QoS 0: what does not come is granted again
            link.publish(topics.upload_chunk(grant.swarm, node, grant.sha, index), payload, qos=0)
