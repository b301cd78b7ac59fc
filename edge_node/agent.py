"""The agent: announce, take assignments, fetch what they need, run, publish the results.

Four threads. Every mutable thing has one owner; the others hand data over through queues:

    structure                                   owner             how data reaches it
    job book: jobs queued or running by key,    main thread       inbox events: AssignmentArrived, SwarmEnded,
      finished swarms, the running job            (run, pump)       Connected (network thread); JobStarted,
                                                                    JobFinished, WorkerCrashed (worker)
    the retained status (publishing it)         main thread       the job book's Announce actions
    outbox, the "a delivery failed" flag        worker thread     the worker's queue: jobs, "deliver"
    warm task processes (one per swarm's task)  worker thread     the worker's queue: jobs, swarm ends (main)
    deleting blobs from the cache (its budget); worker thread     none: it prunes before a job fetches and after
      the fetcher, a task and the upload                            the job; what is in use is pinned (the job's
      server only add or read blobs                                 blobs, the outbox's uploads, warm tasks' code)
    offers: which cached blobs are our results  upload server     its queue: offers (worker), grants (network thread)
    a job's cancel event                        set by main only  travels with the Job (a thread-safe flag)
    rejection counters, blob transfers          any (locked)      called directly

paho's network thread parses and checks what arrives, counts what it refuses and queues the
rest (:mod:`.intake`); it touches no agent state. The main thread applies the rules
(:class:`.jobs.JobBook`) and alone publishes the status, the final offline one included (the
broker publishes the will). The worker (:mod:`.worker`) runs tasks one at a time, each in its own
process: whatever a task does, the agent lives on. ``Owner`` checks catch a wrong-thread call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from manta_mqtt import __version__
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.ownership import Owner
from manta_mqtt.protocol import topics
from manta_mqtt.protocol.limits import DISCOVER_MIN_INTERVAL_SECONDS
from manta_mqtt.protocol.messages import NodeState, NodeStatus
from manta_mqtt.protocol.rejections import Rejections
from manta_mqtt.transport.blob_fetcher import BlobFetcher
from manta_mqtt.transport.mqtt import MqttLink, Will

from .check import connection_problem, failure_kind
from .config import NodeConfig
from .events import DiscoverRequested, Event, SwarmEnded, WorkerCrashed
from .health import HealthProbe, TaskClock
from .intake import Intake
from .jobs import Action, Announce, Cancel, DeliverPending, Dispatch, JobBook, Reject
from .remote_log import RemoteLog
from .uploads import UploadServer
from .worker import Worker

log = logging.getLogger("edge_node")

AGENT = f"manta-mqtt {__version__}"
#: The status is published at least this often (``[node] heartbeat`` overrides it), so that a
#: coordinator can tell a live node from a retained status nobody refreshes (it treats a node
#: silent for 90 s, or 3 of the intervals its status states, as gone).
HEARTBEAT_SECONDS = 30.0


class EdgeAgent:
    def __init__(self, config: NodeConfig) -> None:
        # set here, read-only afterwards: shared freely
        self.config = config
        self.node_id = config.node_id
        self.session = int(time.time() * 1000)
        self.reject = Rejections(log)  # thread-safe
        self.cache = BlobStore(config.data_dir / "cache")
        self.owner = Owner("edge agent")  # the main thread: run(), the pump, the status
        self.inbox: queue.Queue[Event] = queue.Queue()  # any thread puts, the main thread takes
        self.book = JobBook(max_queued=config.max_queued)  # main thread only (checked)
        self.heartbeat_seconds = config.heartbeat
        self.health = HealthProbe(config.data_dir)  # main thread only: it keeps the last CPU sample
        self.task_clock = TaskClock()  # main thread only
        self._next_heartbeat = 0.0  # main thread only: when to publish the status again
        self._announced = 0.0  # main thread only: when it last did
        will = NodeStatus(self.node_id, "offline", sorted(config.datasets), self.session, agent=AGENT)
        self.link = MqttLink(
            self.node_id,
            config.broker,
            will=Will(topics.node_status(self.node_id), will.to_bytes()),
            version=config.mqtt_version,
        )
        self.link.will_for = self._will  # each connection's will names it (link), so a late one is told
        self.fetcher = BlobFetcher(self.link, self.cache, self.node_id, on_reject=self.reject)
        self.intake = Intake(self.node_id, self.reject, self.inbox, self.session)  # the network thread's handlers
        self.uploads = UploadServer(self.node_id, self.link, self.cache, self.reject)
        self.worker = Worker(config, self.link, self.cache, self.fetcher, self.inbox, self.reject, self.uploads)
        self.link.route(topics.my_assignments(self.node_id), self.intake.on_assignment)
        self.link.route(topics.my_grants(self.node_id), self.uploads.on_grant)
        self.link.route(topics.all_swarm_states(), self.intake.on_swarm_state)
        self.link.route(topics.discover(), self.intake.on_discover)
        self.link.route(topics.node_status(self.node_id), self.intake.on_own_status)
        self.link.on_connect(self.intake.on_connect)
        self.remote_log = RemoteLog(  # the root logger's while run() runs; thread-safe
            self.node_id,
            self.link,
            publish=config.log_publish,
            level=config.log_level,
            per_minute=config.log_per_minute,
        )

    # --- main thread ---------------------------------------------------------------------------

    def connect(self, stop: threading.Event) -> bool:
        """Connect, retrying with exponential back-off until connected or ``stop`` is set.

        Each new reason is logged once (ERROR when a person must act: credentials, certificates),
        its repeats at INFO, so that a refused node does not fill the journal line by line.
        """
        delay, said = 1.0, ""
        while not stop.is_set():
            if self.link.start():
                filters = [
                    topics.my_assignments(self.node_id),
                    topics.all_swarm_states(),
                    topics.my_grants(self.node_id),
                    topics.discover(),
                ]
                if self.link.subscribe(filters, wait=10.0):
                    # our own status: a will published while we are connected gets an answer; not
                    # required (an older ACL may not let us read it)
                    self.link.subscribe(topics.node_status(self.node_id), qos=0)
                    return True
                refusal = self.link.refusal
                self.link.stop()
                problem = refusal or f"broker {self.config.broker} did not acknowledge our subscriptions"
                level = logging.WARNING
            else:
                problem = connection_problem(self.config, self.link.failure)
                needs_a_person = failure_kind(self.link.failure) in ("not authorised", "TLS")
                level = logging.ERROR if needs_a_person else logging.WARNING
            if problem != said:
                log.log(level, "%s; retrying with back-off", problem)
                said = problem
            else:
                log.info("still cannot connect (%s); retrying in %.0f s", failure_kind(self.link.failure), delay)
            stop.wait(delay)
            delay = min(delay * 2, 60.0)
        return False

    def run(self, stop: threading.Event, kill: threading.Event | None = None) -> None:
        """Until ``stop``; then give the running job ``stop_grace`` seconds (none once ``kill`` is
        set) and kill it, start no queued one, go offline, disconnect."""
        self.owner.check()
        self.remote_log.install()  # our warnings and errors go out on our log topic too, once connected
        if not self.connect(stop):
            self.remote_log.uninstall()
            return
        log.info("node %s ready (datasets: %s)", self.node_id, ", ".join(sorted(self.config.datasets)) or "none")
        trust = self.config.trust
        log.log(logging.INFO if trust.keys and not trust.allow_unsigned else logging.WARNING, "%s", trust.describe())
        self.uploads.start()
        self.worker.start()
        try:
            while not stop.is_set():
                self.pump(0.5)
                if time.monotonic() >= self._next_heartbeat:
                    self.announce()  # a coordinator takes a node it has not heard of for a while as gone
            self._wind_down(kill if kill is not None else threading.Event())
        except BaseException:
            for job in self.book.jobs():  # a crash: kill the running task rather than wait for it
                job.cancel.set()
            raise
        finally:
            self.worker.stop()
            self.worker.join()
            self.uploads.stop()
            offline = self._status("offline", running=None)
            self.remote_log.uninstall()  # what it queued goes out first
            self.link.stop(final=[(topics.node_status(self.node_id), offline.to_bytes())])

    def _wind_down(self, kill: threading.Event) -> None:
        """Start no other job; the running one gets ``stop_grace`` seconds, then its task is killed."""
        self.worker.stop()
        running = self.book.running
        grace = self.config.stop_grace
        if running is not None:
            log.warning("stopping: waiting up to %.0f s for task %s (stop again to kill it now)", grace, running.label)
        else:
            log.info("stopping")
        deadline = time.monotonic() + grace
        killed = False
        while self.worker.is_alive():  # keep handling events (and announcing) while the last job ends
            self.pump(0.2)
            if not killed and (kill.is_set() or time.monotonic() >= deadline):
                killed = True
                for job in self.book.jobs():
                    job.cancel.set()
                running = self.book.running
                if running is not None:
                    log.warning("task %s killed", running.label)

    def pump(self, timeout: float) -> None:
        """Handle one inbox event, if one comes within ``timeout`` seconds."""
        self.owner.check()
        try:
            event = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        if isinstance(event, WorkerCrashed):
            raise RuntimeError(f"the worker thread died: {event.error}")
        if isinstance(event, DiscoverRequested):  # answered by the heartbeat, within the rate limit
            self.intake.discover_pending.clear()
            self._next_heartbeat = min(self._next_heartbeat, self._announced + DISCOVER_MIN_INTERVAL_SECONDS)
            return
        for action in self.book.handle(event):
            self._act(action)
        if isinstance(event, SwarmEnded):
            self.worker.end_swarm(event.swarm)  # its warm task processes go too

    def _act(self, action: Action) -> None:
        if isinstance(action, Reject):
            self.reject(action.reason, action.detail)
        elif isinstance(action, Dispatch):
            self.worker.submit(action.job)
        elif isinstance(action, Cancel):
            running = self.book.running is action.job
            log.info("%s: cancelling %s %s", action.why, "its running task" if running else "queued", action.job.label)
            action.job.cancel.set()
        elif isinstance(action, Announce):
            self.announce()
        elif isinstance(action, DeliverPending):
            self.worker.deliver_pending()

    def announce(self) -> None:
        self.owner.check()
        running = self.book.running
        state: NodeState = "busy" if running is not None else "online"
        status = self._status(state, running=running.label if running is not None else None)
        self._announced = time.monotonic()
        self._next_heartbeat = self._announced + self.heartbeat_seconds
        self.link.publish(topics.node_status(self.node_id), status.to_bytes(), retain=True)

    def _will(self, link: int) -> Will:
        """The offline status the broker publishes if connection number ``link`` breaks (any thread)."""
        will = NodeStatus(self.node_id, "offline", sorted(self.config.datasets), self.session, agent=AGENT, link=link)
        return Will(topics.node_status(self.node_id), will.to_bytes())

    def _status(self, state: NodeState, running: str | None) -> NodeStatus:
        return NodeStatus(
            node=self.node_id,
            state=state,
            datasets=sorted(self.config.datasets),
            session=self.session,
            running=running,
            rejected=self.reject.as_dict(),
            agent=AGENT,
            heartbeat=round(time.time(), 3),
            link=self.link.connections,
            server=self.link.server,
            interval=self.heartbeat_seconds,
            task_started=self.task_clock.started(self.book.running if running is not None else None),
            last_error=self.remote_log.last_error,
            **self.health.read().fields(),
        )
