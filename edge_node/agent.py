"""The agent loop: announce, take assignments, fetch what they need, run, publish the results.

paho's thread only validates and queues; one worker (the main thread) runs tasks one at a time,
each in its own process. Whatever a task does, the agent lives on; whatever the network sends,
it logs and counts what it refuses.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from manta_mqtt import __version__
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.messages import (
    Assignment,
    BlobRef,
    NodeStatus,
    ProtocolError,
    ResultEnvelope,
    SwarmState,
    Value,
)
from manta_mqtt.protocol.rejections import Rejections
from manta_mqtt.runtime.executor import TaskOutcome, run_task
from manta_mqtt.transport.blobs import BlobFetcher, upload
from manta_mqtt.transport.mqtt import MqttLink, Will

from .config import NodeConfig
from .host import EdgeHost
from .outbox import Entry, Key, Outbox

log = logging.getLogger("edge_node")

AGENT = f"manta-mqtt {__version__}"
MAX_ASSIGNMENT_BYTES = 1024 * 1024
FETCH_TIMEOUT = 600.0


class EdgeAgent:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        self.session = int(time.time() * 1000)
        self.reject = Rejections(log)
        self.cache = BlobStore(config.data_dir / "cache")
        self.jobs: queue.Queue[Assignment] = queue.Queue()
        self.finished_swarms: set[str] = set()
        self.outbox = Outbox(config.data_dir / "outbox")
        self._queued: set[Key] = set()
        self._wake = threading.Event()  # set on (re)connection: time to deliver the outbox
        self._undelivered = False  # a delivery failed while connected: try again
        self.running: Assignment | None = None
        self.cancel = threading.Event()
        self.tasks_run = 0
        will = NodeStatus(self.node_id, "offline", sorted(config.datasets), self.session, agent=AGENT)
        self.link = MqttLink(
            self.node_id,
            config.broker,
            will=Will(topics.node_status(self.node_id), will.to_bytes()),
            version=config.mqtt_version,
            tls_ca=config.tls_ca,
        )
        self.fetcher = BlobFetcher(self.link, self.cache, on_reject=self.reject)
        self.link.route(topics.my_assignments(self.node_id), self._on_assignment)
        self.link.route(topics.all_swarm_states(), self._on_swarm_state)
        self.link.on_connect(self.announce)
        self.link.on_connect(self._wake.set)

    # --- status -----------------------------------------------------------------------------

    def _status(self, state: str) -> NodeStatus:
        running = None
        if self.running is not None:
            r = self.running
            running = f"{r.swarm}/{r.iteration}/{r.task}"
        rejected = self.reject.as_dict()
        return NodeStatus(
            node=self.node_id,
            state=state,
            datasets=sorted(self.config.datasets),
            session=self.session,
            running=running,
            rejected=rejected,
            agent=AGENT,
        )

    def announce(self) -> None:
        state = "busy" if self.running is not None else "online"
        self.link.publish(topics.node_status(self.node_id), self._status(state).to_bytes(), retain=True)

    # --- network thread -----------------------------------------------------------------------

    def _on_assignment(self, topic: str, payload: bytes, _retained: bool) -> None:
        if not payload:
            return
        if len(payload) > MAX_ASSIGNMENT_BYTES:
            self.reject("oversized", f"assignment of {len(payload)} bytes on {topic}")
            return
        try:
            parsed = topics.parse(topic)
            assignment = Assignment.parse(payload)
        except (topics.TopicError, ProtocolError) as exc:
            self.reject("malformed", f"assignment on {topic}: {exc}")
            return
        if parsed.node != self.node_id or assignment.swarm != parsed.swarm:
            self.reject("forged", f"assignment on {topic} names swarm {assignment.swarm!r}")
            return
        if assignment.swarm in self.finished_swarms:
            self.reject("late", f"assignment for finished swarm {assignment.swarm}")
            return
        key = _key(assignment)
        running = self.running
        if key in self._queued or (running is not None and _key(running) == key):
            self.reject("duplicate", f"assignment {key} is already queued or running")
            return
        self._queued.add(key)
        self.jobs.put(assignment)

    def _on_swarm_state(self, topic: str, payload: bytes, _retained: bool) -> None:
        if not payload:
            return
        try:
            state = SwarmState.parse(payload)
        except ProtocolError as exc:
            self.reject("malformed", f"swarm state on {topic}: {exc}")
            return
        if state.terminal:
            self.finished_swarms.add(state.swarm)
            running = self.running
            if running is not None and running.swarm == state.swarm:
                log.info("swarm %s is %s: cancelling its task", state.swarm, state.state)
                self.cancel.set()

    # --- main thread ----------------------------------------------------------------------------

    def connect(self, stop: threading.Event) -> bool:
        """Connect, retrying with exponential back-off until connected or ``stop`` is set."""
        delay = 1.0
        while not stop.is_set():
            if self.link.start():
                filters = [topics.my_assignments(self.node_id), topics.all_swarm_states()]
                if self.link.subscribe(filters, wait=10.0):
                    return True
                log.warning("broker %s did not acknowledge our subscriptions; reconnecting", self.config.broker)
                self.link.stop()
            log.warning("broker %s unreachable; retrying in %.0f s", self.config.broker, delay)
            stop.wait(delay)
            delay = min(delay * 2, 60.0)
        return False

    def run(self, stop: threading.Event) -> None:
        if not self.connect(stop):
            return
        log.info("node %s ready (datasets: %s)", self.node_id, ", ".join(sorted(self.config.datasets)) or "none")
        try:
            while not stop.is_set():
                if self._wake.is_set() or (self._undelivered and self.link.connected.is_set()):
                    self._wake.clear()
                    self.deliver_pending()
                try:
                    assignment = self.jobs.get(timeout=0.5)
                except queue.Empty:
                    continue
                self._queued.discard(_key(assignment))
                if assignment.swarm in self.finished_swarms:
                    continue
                self.execute(assignment)
        finally:
            self.link.stop(final=[(topics.node_status(self.node_id), self._status("offline").to_bytes())])

    def execute(self, assignment: Assignment) -> None:
        a = assignment
        done = self.outbox.find(_key(a))
        if done is not None:  # asked again (e.g. by a resumed coordinator): answer from disk
            log.info("%s iteration %d already done: sending its result again", a.task, a.iteration)
            self.deliver(done)
            return
        log.info("running %s iteration %d of swarm %s", a.task, a.iteration, a.swarm)
        self.running = a
        self.cancel.clear()
        self.announce()
        host = EdgeHost(self.node_id, a, self.cache, {k: str(v) for k, v in self.config.datasets.items()})
        missing = self.fetcher.fetch(
            a.swarm, [a.code.sha, *a.global_refs.values()], timeout=min(a.timeout, FETCH_TIMEOUT)
        )
        if missing:
            outcome = TaskOutcome(
                False, f"could not fetch blob(s) {', '.join(s[:12] for s in missing)} from the broker"
            )
        else:
            outcome = run_task(
                self.cache.path(a.code.sha),
                a.code.entry,
                host,
                timeout=min(a.timeout, self.config.task_timeout),
                workdir=self.config.data_dir / "work" / a.swarm,
                cancel=self.cancel,
                label=f"{a.task}@{a.iteration}",
            )
        self.tasks_run += 1
        if self.cancel.is_set():
            log.info("%s iteration %d cancelled; no result sent", a.task, a.iteration)
        else:
            self.publish_result(a, host, outcome)
            level = logging.INFO if outcome.ok else logging.WARNING
            log.log(
                level,
                "%s iteration %d %s in %.1f s",
                a.task,
                a.iteration,
                "done" if outcome.ok else "FAILED",
                outcome.duration,
            )
            if not outcome.ok:
                log.warning("%s", outcome.error)
        self.running = None
        self.announce()

    def _to_wire(self, values: dict[str, bytes], uploads: list[str]) -> dict[str, Value]:
        """Small values inline; large ones into the blob cache, to be uploaded as chunks."""
        out: dict[str, Value] = {}
        for tag, data in values.items():
            if len(data) > self.config.inline_limit:
                sha = self.cache.put(data)
                uploads.append(sha)
                out[tag] = BlobRef(sha, len(data))
            else:
                out[tag] = data
        return out

    def publish_result(self, a: Assignment, host: EdgeHost, outcome: TaskOutcome) -> None:
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
        entry = Entry(_key(a), envelope.to_bytes(), uploads)
        self.outbox.put(entry)
        self.deliver(entry)

    def deliver_pending(self) -> None:
        self._undelivered = False
        for entry in self.outbox.pending():
            if not self.deliver(entry):
                return

    def deliver(self, entry: Entry) -> bool:
        """Uploads, then the envelope; the entry leaves ``pending`` once the broker has it all."""
        if not self.link.connected.is_set():
            log.info("link down: result %s kept in the outbox", entry.name)
            return False
        swarm = entry.key[0]
        for sha in entry.uploads:
            upload(self.link, swarm, self.node_id, self.cache.get(sha), self.config.chunk_size)
        self.link.publish(topics.results(swarm, self.node_id), entry.envelope)
        if not self.link.flush(60):
            log.warning("result %s not acknowledged yet; it stays in the outbox", entry.name)
            self._undelivered = True
            return False
        self.outbox.mark_sent(entry)
        return True


def _key(a: Assignment) -> Key:
    return (a.swarm, a.iteration, a.task, a.attempt)
