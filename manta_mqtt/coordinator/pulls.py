"""The thin adapter around the :class:`~.grants.GrantScheduler`: what the engine waits for in, grants out.

Owned by the coordinator's main thread (the pump), like the engine it reads: after the engine
handled an event, :meth:`UploadPuller.sync` asks for exactly the uploads that results parked in
the open step still lack, so only results the engine accepted for that step cost upload
bandwidth (forged, refused, duplicate, early and late ones get no grant). The network thread
reports the chunks that came (``ChunksArrived``, through the intake's queue) so the window frees
and the next grants go out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..ownership import Owner
from ..protocol import topics
from ..protocol.messages import BlobRef, NodeStatus, UploadGrant
from ..transport.mqtt import MqttLink
from . import engine as eng
from .grants import GrantScheduler, Key
from .intake import ChunksArrived, Received

log = logging.getLogger("manta_mqtt.coordinator")


def awaited_uploads(engine: eng.Engine, max_size: int) -> dict[Key, int]:
    """(node, sha) -> size of every upload a result parked in the open step still lacks.

    Not for nodes whose outcome the step already recorded (past the deadline: their result would
    now be a duplicate), nor blobs larger than the receiver takes (they could never complete)."""
    step = engine.nodes.step
    if step is None:
        return {}
    wanted: dict[Key, int] = {}
    for node, parked in step.parked.items():
        if node in step.round.outcomes and node not in step.round.lost:
            continue
        e = parked.envelope
        for value in (*e.results.values(), *e.global_writes.values()):
            if isinstance(value, BlobRef) and value.sha in parked.missing and value.size <= max_size:
                wanted[(node, value.sha)] = value.size
    return wanted


class UploadPuller:
    """Sends the scheduler's grants on ``link``; follows node statuses and the link's reconnections."""

    def __init__(
        self,
        link: MqttLink,
        swarm: str,
        scheduler: GrantScheduler,
        max_size: int,
        expect: Callable[[frozenset[Key]], None] | None = None,
    ) -> None:
        self.link = link  # thread-safe
        self._expect = expect  # told what we ask for (the intake, which then reports only those chunks)
        self._expected: frozenset[Key] = frozenset()
        self.swarm = swarm
        self.scheduler = scheduler
        self.max_size = max_size
        self.sent = 0  # grants published
        self._expired = 0  # the scheduler's count, as last logged
        self._sessions: dict[str, NodeStatus] = {}  # node -> its last status
        self._owner = Owner("the upload puller")

    def observe(self, item: Received | None, engine: eng.Engine, now: float) -> bool:
        """Learn from an intake item (None: none came); False when the engine has nothing to learn
        from it: a chunk's arrival is ours alone, unless a deadline of the engine is due (chunks
        streaming in must not hold a deadline back)."""
        self._owner.check()
        if isinstance(item, ChunksArrived):
            for node, sha, index in item.chunks:
                self.scheduler.arrived(node, sha, index, now)
            due = engine.next_timer()
            return due is not None and due <= now
        if isinstance(item, eng.UploadCompleted):
            self.scheduler.completed(item.sha)
        elif isinstance(item, eng.StatusChanged):
            status = item.status
            known = self._sessions.get(status.node)
            if known is not None and status.superseded_by(known):
                return True  # an earlier connection's late will (the engine ignores it too)
            if status.state == "offline":
                self.scheduler.pause(status.node)
            else:  # a new connection (or run) of the node: grants sent to it may be lost
                relinked = known is not None and known.connection() != status.connection()
                self.scheduler.resume(status.node, requeue=relinked)
            self._sessions[status.node] = status
        elif isinstance(item, eng.Reconnected):
            self.scheduler.requeue()  # grants sent while we were away may be lost
        return True

    def sync(self, engine: eng.Engine, now: float) -> None:
        """Want exactly what the engine waits for (after it handled an event)."""
        self._owner.check()
        wanted = awaited_uploads(engine, self.max_size)
        self.scheduler.wanted(wanted, now)
        keys = frozenset(wanted)
        if keys != self._expected and self._expect is not None:
            self._expect(keys)
        self._expected = keys

    def send(self, now: float) -> None:
        """Publish the grants that are due."""
        self._owner.check()
        grants = self.scheduler.grants(now)
        if self.scheduler.expired != self._expired:
            log.warning("asking again for %d upload chunk(s) that did not come", self.scheduler.expired - self._expired)
            self._expired = self.scheduler.expired
        for g in grants:
            grant = UploadGrant(self.swarm, g.node, g.sha, g.size, g.chunk_size, g.first, g.count)
            self.link.publish(topics.upload_grant(self.swarm, g.node), grant.to_bytes())
            self.sent += 1

    def next_timer(self) -> float | None:
        return self.scheduler.next_timer()
