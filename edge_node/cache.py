"""The node's blob cache within a byte budget (``[cache] max_mib``): least recently used goes first.

``data_dir/cache`` holds code bundles and globals (fetched once, used by every later run) and the
task's large results (read by the upload server when the coordinator pulls them). Each job adds
its new globals and results; with 100 MiB models that is some 200 MiB a round, which fills an
SD card. So the worker prunes it before a job fetches its blobs (making room for what the job
will fetch) and after the job: the blobs least recently used (by mtime; a job touches its code
and globals, even when they were cached already) are deleted until the cache fits its budget.

Pinned blobs are never deleted, whatever the budget: the current job's code and globals, the
uploads of results the outbox has not delivered yet and of each swarm's latest result (the
coordinator pulls them after the envelope arrived), and the code bundles of warm task
processes (a zip on their ``sys.path``, read at each lazy import). If those alone exceed the
budget, one warning says so and they stay. The uploads of older results (the outbox keeps up to
``OUTBOX_KEEP_SENT`` of them, for a resumed coordinator that pulls them again; a running one
pulls only the open step's) go last, oldest first: with 100 MiB results, pinning them all would
let 200 of them fill 20 GiB. A pull of one that went is refused as ``unexpected``.

:func:`plan` is the rule (no I/O: blobs in, blobs to delete out); :class:`BlobCache` lists the
store's folder, deletes what the plan says and counts it.

Threads, and why deleting cannot pull a file from under a reader or writer:

- the worker thread owns the :class:`BlobCache` (checked) and alone deletes blobs; it prunes
  only between jobs' steps, never while a fetch or a task runs (both are its own synchronous
  calls);
- the fetcher (paho's network thread) writes blobs of the transfers the worker is waiting for,
  inside :meth:`BlobFetcher.fetch`; when that returns, its transfers are dropped under its lock,
  so no write of it runs while the worker prunes (and its blobs are the job's: pinned);
- a task's serve thread (:class:`.host.EdgeHost`) writes results and reads globals only while
  the worker waits for the task (should one outlive its task past the executor's drain bound, it
  can only add a blob, through the spool, or read one it opened: deleting a name never breaks
  an open file on POSIX);
- the upload server thread reads results, and only those offered by the worker: the uploads of
  outbox entries, all pinned. An offer it remembers for an entry the outbox has dropped may find
  its blob deleted: the grant is then refused as ``unexpected`` (it checks, and a file deleted
  while open stays readable on POSIX).

The ``.partial`` spool folder holds blobs being written; it is counted against the budget but
nothing in it is deleted here. Shard folders (``ab/``) are left in place (at most 256).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from manta_mqtt.blobstore import PARTIAL_DIR, BlobStore
from manta_mqtt.ownership import Owner
from manta_mqtt.protocol.limits import KiB, MiB

log = logging.getLogger("edge_node")


@dataclass(frozen=True)
class Blob:
    sha: str
    size: int  # bytes
    mtime: float  # last used (written, or touched by a job)


@dataclass(frozen=True)
class Plan:
    evict: list[Blob]  # least recently used first
    total: int  # bytes before: the blobs, the spool and what is about to be fetched
    pinned: int  # bytes that cannot go: pinned blobs present, the spool and what is about to be fetched
    budget: int

    @property
    def after(self) -> int:
        return self.total - sum(b.size for b in self.evict)

    @property
    def over(self) -> bool:
        """Still over the budget once every unpinned blob that should go has gone."""
        return self.after > self.budget


def plan(
    blobs: Iterable[Blob],
    pins: set[str],
    budget: int,
    *,
    last: frozenset[str] | set[str] = frozenset(),
    incoming: int = 0,
    spool: int = 0,
) -> Plan:
    """The blobs to delete, oldest first, so that the cache plus ``spool`` (bytes being written)
    plus ``incoming`` (bytes about to be fetched) fits ``budget``; never one of ``pins``, and
    those in ``last`` only once every other one has gone."""
    blobs = list(blobs)
    total = sum(b.size for b in blobs) + spool + incoming
    pinned = sum(b.size for b in blobs if b.sha in pins) + spool + incoming
    evict: list[Blob] = []
    excess = total - budget
    order = sorted((b for b in blobs if b.sha not in pins), key=lambda b: (b.sha in last, b.mtime, b.sha))
    for blob in order:
        if excess <= 0:
            break
        evict.append(blob)
        excess -= blob.size
    return Plan(evict, total, pinned, budget)


def _size(size: int) -> str:
    if size >= MiB:
        return f"{size / MiB:.1f} MiB"
    return f"{size / KiB:.1f} KiB" if size >= KiB else f"{size} bytes"


class BlobCache:
    """Keeps one :class:`BlobStore` within ``budget`` bytes. Owned by the node's worker thread."""

    def __init__(self, store: BlobStore, budget: int) -> None:
        self.store = store  # shared: files written atomically by others; deleted only here
        self.budget = budget
        self.owner = Owner("the blob cache")
        self.evicted = 0  # blobs deleted since start (read by tests)
        self.evicted_bytes = 0
        self._warned = False  # said that the pinned blobs alone exceed the budget (until they no longer do)

    def touch(self, shas: Iterable[str]) -> None:
        """Mark ``shas`` used now (those present), so they go last."""
        self.owner.check()
        for sha in shas:
            try:
                os.utime(self.store.path(sha))
            except (OSError, ValueError):  # not cached (yet), or no sha: nothing to keep fresh
                continue

    def blobs(self) -> list[Blob]:
        """Every blob in the store (temp files and the spool folder left out)."""
        out = []
        with os.scandir(self.store.root) as shards:
            for shard in shards:
                if shard.name == PARTIAL_DIR or not shard.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(shard.path) as files:
                    for entry in files:
                        if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                            continue
                        try:
                            stat = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        out.append(Blob(entry.name, stat.st_size, stat.st_mtime))
        return out

    def spool_bytes(self) -> int:
        """Bytes in the spool folder: blobs being written piece by piece."""
        folder = self.store.root / PARTIAL_DIR
        total = 0
        try:
            with os.scandir(folder) as files:
                for entry in files:
                    try:
                        total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
        except FileNotFoundError:
            pass
        return total

    def prune(self, pins: set[str], incoming: int = 0, last: frozenset[str] | set[str] = frozenset()) -> Plan:
        """Delete the least recently used blobs not in ``pins`` (those in ``last`` after all the
        others) until the cache, plus ``incoming`` bytes about to be fetched, fits the budget."""
        self.owner.check()
        result = plan(self.blobs(), pins, self.budget, last=last, incoming=incoming, spool=self.spool_bytes())
        for blob in result.evict:
            path = self.store.root / blob.sha[:2] / blob.sha
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            self.evicted += 1
            self.evicted_bytes += blob.size
            log.debug("blob cache: deleted %s (%s, least recently used)", blob.sha[:12], _size(blob.size))
        if result.over and not self._warned:
            self._warned = True
            log.warning(
                "blob cache: %s needed now (the running job's code and globals, results not delivered "
                "yet, warm tasks' code) exceed its budget of %s ([cache] max_mib); kept anyway",
                _size(result.pinned),
                _size(self.budget),
            )
        elif not result.over:
            self._warned = False
        if result.evict:
            log.debug("blob cache: %d blob(s) deleted, %s now", len(result.evict), _size(result.after))
        return result


def prune_quietly(
    cache: BlobCache, pins: set[str], incoming: int = 0, last: frozenset[str] | set[str] = frozenset()
) -> None:
    """:meth:`BlobCache.prune`, with a disk error logged rather than raised: a cache that could
    not be pruned must not stop the node from running its jobs."""
    try:
        cache.prune(pins, incoming, last)
    except OSError as exc:
        log.warning("blob cache: could not prune %s: %s", cache.store.root, exc)
