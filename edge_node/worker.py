"""The worker thread: runs jobs one at a time, each task in its own process, and delivers results.

It owns the outbox and the "a delivery failed, retry" flag; nothing else touches them. It offers
the upload server (:mod:`.uploads`) the large values of every result it holds, which the
coordinator then pulls with grants; a result's envelope goes out alone. Jobs and
delivery requests reach it through its queue; it reports to the main thread through the
main thread's inbox (:class:`JobStarted`, :class:`JobFinished`, :class:`WorkerCrashed`) and
reads only the cancel event of the job in hand.

It also owns the warm task processes (:class:`~manta_mqtt.runtime.pool.TaskProcesses`): it runs
one task at a time, so it alone starts, reuses and ends them. And it alone deletes blobs from the
cache (:class:`~.cache.BlobCache`, within ``[cache] max_mib``): before a job fetches its blobs and
after the job, never while a fetch or a task (which write to the cache) is under way; what the
job, the outbox (the upload server reads its uploads) and the warm processes use stays.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from manta_mqtt.blobstore import BlobStore
from manta_mqtt.ownership import Owner
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.limits import BLOB_FETCH_TIMEOUT_SECONDS
from manta_mqtt.protocol.messages import Assignment, BlobRef, ResultEnvelope, Value
from manta_mqtt.protocol.rejections import Rejections
from manta_mqtt.protocol.signing import Untrusted
from manta_mqtt.runtime.executor import TaskOutcome
from manta_mqtt.runtime.host import Value as HostValue
from manta_mqtt.runtime.pool import TaskProcesses
from manta_mqtt.transport.blob_fetcher import BlobFetcher
from manta_mqtt.transport.mqtt import MqttLink

from .cache import BlobCache, prune_quietly
from .config import NodeConfig
from .events import Event, Job, JobFinished, JobStarted, WorkerCrashed, key_of
from .host import EdgeHost
from .outbox import Entry, Outbox
from .uploads import UploadServer

log = logging.getLogger("edge_node")


@dataclass(frozen=True)
class SwarmOver:
    """The swarm ended: the worker ends its warm task processes."""

    swarm: str


Item = Job | SwarmOver | Literal["deliver", "wake"]


class Worker:
    def __init__(
        self,
        config: NodeConfig,
        link: MqttLink,
        cache: BlobStore,
        fetcher: BlobFetcher,
        inbox: queue.Queue[Event],
        reject: Callable[[str, str], None] | None = None,
        uploads: UploadServer | None = None,
    ) -> None:
        self.config = config
        self.reject = reject if reject is not None else Rejections(log)  # thread-safe
        self.node_id = config.node_id
        self.link = link  # thread-safe
        self.cache = cache  # content-addressed files, written atomically: shared with the fetcher
        self.fetcher = fetcher  # locked inside; its network-thread half fills the cache
        self.inbox = inbox  # the main thread's: we only put
        self.uploads = uploads  # thread-safe hand-over (offers); None: nobody answers grants
        self.owner = Owner("worker")
        self.outbox = Outbox(config.data_dir / "outbox")  # worker thread only (checked by the outbox)
        self._undelivered = False  # worker thread only: a delivery failed while connected, retry
        self.tasks = TaskProcesses(config.task_reuse)  # worker thread only (checked): warm task processes
        self.blob_cache = BlobCache(cache, config.cache_max_bytes)  # worker thread only (checked): deletes blobs
        self._queue: queue.Queue[Item] = queue.Queue()  # any thread puts, the worker takes
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="edge-worker")

    # --- any thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def deliver_pending(self) -> None:
        self._queue.put("deliver")

    def end_swarm(self, swarm: str) -> None:
        """The swarm is over: its warm task processes go (after the job in hand)."""
        self._queue.put(SwarmOver(swarm))

    def stop(self) -> None:
        """Finish the job in hand, start no other, and end the thread."""
        self._stopping.set()
        self._queue.put("wake")

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        if self._thread.ident is not None:
            self._thread.join()

    # --- worker thread ---------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the agent must not live on without its worker
            log.exception("the worker thread failed")
            self.inbox.put(WorkerCrashed(repr(exc)))
        finally:
            self.tasks.close()  # no task process outlives the worker

    def _loop(self) -> None:
        self.owner.check()
        if self.uploads is not None:  # results held from before a restart may still be pulled
            for entry in self.outbox.held():
                self.uploads.offer(entry.key[0], entry.uploads)
            self.uploads.offered_all()
        self.cache.clear_spools()  # results a task was streaming when the agent died (only tasks spool here)
        pins, last = self._pins()
        prune_quietly(self.blob_cache, pins, last=last)  # a cache that grew past a lowered budget
        while not self._stopping.is_set():
            if self._undelivered and self.link.connected.is_set():
                self._deliver_pending()
            self.tasks.reap()  # warm task processes idle too long
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if self._stopping.is_set():
                break
            if item == "deliver":
                self._deliver_pending()
            elif isinstance(item, SwarmOver):
                self.tasks.end_swarm(item.swarm)
            elif isinstance(item, Job):
                self.run(item)

    def run(self, job: Job) -> None:
        """Skip a cancelled job, answer a repeated one from the outbox, or run it."""
        self.owner.check()
        a = job.assignment
        try:
            if job.cancel.is_set():
                log.info("%s iteration %d of swarm %s cancelled before it started", a.task, a.iteration, a.swarm)
            elif (done := self.outbox.find(job.key)) is not None:
                # asked again (e.g. by a resumed coordinator): answer from disk
                log.info("%s iteration %d already done: sending its result again", a.task, a.iteration)
                self._deliver(done)
            else:
                self.inbox.put(JobStarted(job.key))
                self._execute(job)
                pins, last = self._pins()
                prune_quietly(self.blob_cache, pins, last=last)  # its results are in the outbox now
        finally:
            self.inbox.put(JobFinished(job.key))

    def _execute(self, job: Job) -> None:
        a = job.assignment
        datasets = {k: str(v) for k, v in self.config.datasets.items()}
        host = EdgeHost(self.node_id, a, self.cache, datasets, self.config.inline_limit)
        try:  # before fetching anything: only code the swarm's owner signed for this node runs here
            self.config.trust.check(self.node_id, a)
        except Untrusted as exc:
            self.reject("untrusted", f"{a.task}@{a.iteration} of swarm {a.swarm}: {exc}")
            self._publish_result(a, host, TaskOutcome(False, str(exc)))  # the coordinator shows why
            return
        log.info("running %s iteration %d of swarm %s", a.task, a.iteration, a.swarm)
        self.blob_cache.touch(a.blobs)  # used again: the last to go
        incoming = sum(size for sha, size in a.sizes.items() if sha in a.blobs and sha not in self.cache)
        pins, last = self._pins(a.blobs)
        prune_quietly(self.blob_cache, pins, incoming, last)  # room for what it fetches
        timeout = min(a.timeout, BLOB_FETCH_TIMEOUT_SECONDS)
        missing = self.fetcher.fetch(a.swarm, a.blobs, timeout, a.sizes, cancel=job.cancel)
        if job.cancel.is_set():
            outcome = TaskOutcome(False, "cancelled")
        elif missing:
            outcome = TaskOutcome(
                False, f"could not fetch blob(s) {', '.join(s[:12] for s in missing)} from the broker"
            )
        else:
            outcome = self.tasks.run(
                self.cache.path(a.code.sha),
                a.code.entry,
                host,
                swarm=a.swarm,
                code=a.code.sha,
                timeout=min(a.timeout, self.config.task_timeout),
                workdir=self.config.data_dir / "work" / a.swarm,
                cancel=job.cancel,
                label=f"{a.task}@{a.iteration}",
            )
        if job.cancel.is_set():
            log.info("%s iteration %d cancelled; no result sent", a.task, a.iteration)
            return
        self._publish_result(a, host, outcome)
        level = logging.INFO if outcome.ok else logging.WARNING
        verdict = "done" if outcome.ok else "FAILED"
        log.log(level, "%s iteration %d %s in %.1f s", a.task, a.iteration, verdict, outcome.duration)
        if not outcome.ok:
            log.warning("%s", outcome.error)

    def _pins(self, job_blobs: list[str] | None = None) -> tuple[set[str], set[str]]:
        """Blobs the cache must keep: the job's code and globals, the uploads of each swarm's
        latest result and of results not delivered yet (the coordinator pulls a result's uploads
        after its envelope arrives), the code bundles of warm task processes; and those to delete
        last: the uploads of older results (only a resumed coordinator pulls them again)."""
        pins = set(job_blobs or [])
        held = self.outbox.held()
        latest: dict[str, Entry] = {}
        for entry in held:
            swarm, iteration, _task, attempt = entry.key
            kept = latest.get(swarm)
            if kept is None or (iteration, attempt) >= (kept.key[1], kept.key[3]):
                latest[swarm] = entry
        for entry in [*self.outbox.pending(), *latest.values()]:
            pins.update(entry.uploads)
        pins.update(key.code for key in self.tasks.pids())
        return pins, {sha for entry in held for sha in entry.uploads} - pins

    def _to_wire(self, values: dict[str, HostValue], uploads: list[str]) -> dict[str, Value]:
        """Small values inline; large ones (in the blob cache already: the host put them there
        as they arrived) by reference, to be uploaded as chunks."""
        out: dict[str, Value] = {}
        for tag, data in values.items():
            if isinstance(data, Path):  # named by its sha in the cache
                uploads.append(data.name)
                out[tag] = BlobRef(data.name, data.stat().st_size)
            else:
                out[tag] = bytes(data)
        return out

    def _publish_result(self, a: Assignment, host: EdgeHost, outcome: TaskOutcome) -> None:
        """Write the result to the outbox (durable), then try to deliver it."""
        uploads: list[str] = []
        envelope = ResultEnvelope(
            swarm=a.swarm,
            iteration=a.iteration,
            task=a.task,
            node=self.node_id,
            attempt=a.attempt,
            status="ok" if outcome.ok else "failed",
            results=self._to_wire(host.results, uploads) if outcome.ok else {},
            global_writes=self._to_wire(host.global_writes, uploads) if outcome.ok else {},
            schedule=host.schedule if outcome.ok else [],
            stop=host.stop and outcome.ok,
            error=outcome.error,
            duration=outcome.duration,
        )
        entry = Entry(key_of(a), envelope.to_bytes(), uploads)
        self.outbox.put(entry)
        self._deliver(entry)

    def _deliver_pending(self) -> None:
        self._undelivered = False
        for entry in self.outbox.pending():
            if not self._deliver(entry):
                return

    def _deliver(self, entry: Entry) -> bool:
        """The envelope alone (its uploads are offered, for the coordinator to pull); the entry
        leaves ``pending`` once the broker has it."""
        if not self.link.connected.is_set():
            log.info("link down: result %s kept in the outbox", entry.name)
            return False
        swarm = entry.key[0]
        if self.uploads is not None:  # offered before the envelope goes, so no grant can come first
            self.uploads.offer(swarm, entry.uploads)
        self.link.publish(topics.results(swarm, self.node_id), entry.envelope)
        if not self.link.flush(60):
            log.warning("result %s not acknowledged yet; it stays in the outbox", entry.name)
            self._undelivered = True
            return False
        self.outbox.mark_sent(entry)
        return True
