"""The coordinator process: a thin pump around the sans-I/O :class:`~.engine.Engine`.

network events -> engine -> actions carried out. Threads: paho's network thread runs the
:class:`~.intake.Intake` only (parse, reassemble uploads, queue); the main thread (``run``) owns
the engine, the upload puller (grants), the blob server, the progress display and every write
to the run store, and runs coordinator-placed tasks (each in a child process, answered by a serve thread).
It owns those processes too (:class:`~..runtime.pool.TaskProcesses`): kept warm between runs, ended
with the swarm.
"""

from __future__ import annotations

import logging
import queue
import shutil
import signal
import threading
import time
from collections import deque

from ..protocol import codec, topics
from ..protocol.messages import BlobRef, CodeRef, Discover
from ..protocol.rejections import Rejections
from ..protocol.signing import OwnerKey
from ..runtime.pool import TaskProcesses
from ..swarm.graph import SwarmGraph
from ..swarm.swarm import Swarm
from ..transport.blob_server import BlobServer
from ..transport.blobs import UploadReceiver, chunk_size_for
from ..transport.mqtt import BrokerAddress, MqttLink
from . import engine as eng
from .assignments import AssignmentEncoder
from .engine import actions as act
from .grants import GrantScheduler
from .host import CoordinatorHost
from .intake import ChunksArrived, Intake, Received, ReceivedEnvelope
from .metrics import step_metrics
from .options import CoordinatorOptions, RunSummary, SwarmFailed, make_swarm_id
from .progress import ConsoleProgress, ProgressView
from .pulls import UploadPuller
from .resume import open_run
from .state import StateBoard
from .state_rate import StateRate
from .store import RunStore

log = logging.getLogger("manta_mqtt.coordinator")

#: The longest the pump waits for an event before it ticks the engine anyway.
MAX_WAIT = 1.0
UNSIGNED_WARNING = (
    "assignments are NOT signed (no signing key): only nodes with allow_unsigned = true run them; "
    "anyone who can publish on the broker could make those nodes run code. See docs/security.md."
)

__all__ = ["Coordinator", "CoordinatorOptions", "RunSummary", "SwarmFailed"]


class Coordinator:
    def __init__(
        self,
        swarm: Swarm,
        broker: BrokerAddress,
        options: CoordinatorOptions | None = None,
        progress: ProgressView | None = None,
    ) -> None:
        self.swarm = swarm
        self.broker = broker
        self.options = options or CoordinatorOptions()
        self.progress = progress or ConsoleProgress()
        self.graph: SwarmGraph = swarm.graph()
        if self.options.resume is not None:
            try:
                self.swarm_id = RunStore.open(self.options.resume).meta("swarm", {}).get("id", "")
            except FileNotFoundError as exc:
                raise SwarmFailed(f"cannot resume: {exc}") from None
        else:
            self.swarm_id = self.options.swarm_id or make_swarm_id(swarm.name)
        topics.check_id(self.swarm_id, "swarm id")
        self.reject = Rejections(log)
        self.metrics: dict[str, float] = {}  # the last node step's, shown in the swarm state
        self.engine: eng.Engine | None = None
        self._ended: tuple[eng.RunState, str] = (eng.RunState.FAILED, "the run ended unexpectedly")
        self._owner_key = OwnerKey.load(self.options.signing_key) if self.options.signing_key else None
        self._assignments: AssignmentEncoder | None = None  # sized, signed, encoded (main thread)
        self._store: RunStore | None = None
        self._link: MqttLink | None = None
        self._server: BlobServer | None = None
        self._intake: Intake | None = None
        self._pulls: UploadPuller | None = None
        self._interrupt = threading.Event()  # set by interrupt(), from a signal handler or any thread
        self._tasks = TaskProcesses(self.options.task_reuse)  # main thread only (checked): warm task processes
        self._signal = 0
        self._board = StateBoard(self.swarm_id, swarm.name)
        self._state_rate = StateRate()  # progress states coalesced (main thread)

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """Stop the run soon (within a second, killing a running coordinator task), as interrupted:
        thread-safe, and safe in a signal handler. ``--resume`` continues it."""
        self._signal = self._signal or signum
        self._interrupt.set()

    # --- the run ----------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Run the swarm until a task stops it, it completes, or it fails."""
        options = self.options
        store, checkpoint, resumed, self.metrics = open_run(self.swarm, self.graph, self.swarm_id, options)
        self._store = store
        self._assignments = AssignmentEncoder(store.blobs, self._owner_key)
        store.batch()  # results committed in groups, and with every checkpoint (store.py)
        uploads = UploadReceiver(
            store.blobs,
            max_size=options.max_upload,
            max_bytes_per_node=options.upload_budget_per_node,
            max_bytes_total=options.upload_budget_total,
            on_reject=self.reject,
        )
        self._intake = Intake(
            self.reject,
            uploads,
            bytes_per_node=options.result_budget_per_node,
            bytes_total=options.result_budget_total,
        )
        link = self._link = MqttLink(
            f"coordinator-{self.swarm_id}", self.broker, version=options.mqtt_version, will=self._board.will()
        )
        server = self._server = BlobServer(link, self.swarm_id, options.chunk_size, on_reject=self.reject)
        filters = self._intake.attach(link, self.swarm_id)
        # bulk at QoS 0: what does not come is asked for again (grants, blob requests), and a QoS 1
        # subscription costs a JetStream write per message on NATS (x3 in a cluster)
        bulk = [topics.swarm_uploads(self.swarm_id), *server.filters]
        link.on_connect(lambda: self._board.republish(link))
        link.on_connect(lambda: link.publish(topics.discover(), Discover(link.client_id).to_bytes(), qos=1))
        if not link.start():
            self._abandon(store)
            raise ConnectionError(link.failure_line)
        reliable = [f for f in filters if f not in bulk]
        if not (link.subscribe(reliable, wait=10.0) and link.subscribe(bulk, qos=0, wait=10.0)):
            refusal = link.refusal
            link.stop()
            self._abandon(store)
            raise ConnectionError(
                f"{refusal} at {self.broker}"
                if refusal
                else f"the broker at {self.broker} did not acknowledge our subscriptions (check its ACL)"
            )
        server.start()
        grants = GrantScheduler(window=options.upload_window, chunk_size=chunk_size_for(link, options.chunk_size))
        self._pulls = UploadPuller(link, self.swarm_id, grants, options.max_upload, self._intake.expect)
        verb = "resuming" if options.resume is not None else "swarm"
        self.progress.info(f"{verb} {self.swarm_id} ({self.swarm.name}) on {self.broker}; results in {store.root}")
        if self._owner_key is None:
            self.progress.warn(UNSIGNED_WARNING)
        else:
            self.progress.info(f"assignments signed with key {self._owner_key.id}")
        state, reason = eng.RunState.FAILED, ""
        try:
            self.engine = self._prepare(store, checkpoint, resumed)
            state, reason = self._pump(self.engine)
        except SwarmFailed as exc:
            state, reason = eng.RunState.FAILED, str(exc)
        except (KeyboardInterrupt, _Interrupted):
            self._signal = self._signal or signal.SIGINT
            state, reason = eng.RunState.INTERRUPTED, f"interrupted by {signal.Signals(self._signal).name}"
            if options.resume is not None or (self.engine is not None and self.engine.started):
                reason += f"; continue it with --resume {store.root}"
        finally:
            self._tasks.close()  # the swarm is over: so are its task processes
            iterations, kept = self._finish(state, reason)
        metrics, rejected = dict(self.metrics), self.reject.as_dict()
        started = self.engine is not None and self.engine.started
        return RunSummary(
            self.swarm_id, state.value, reason, iterations, store.root, metrics, rejected, started, kept, self._signal
        )

    def _iteration(self) -> int:
        return self.engine.iteration if self.engine is not None else 0

    def _abandon(self, store: RunStore) -> None:
        """The run never started: close its store, and remove its folder unless it is resumed."""
        store.close()
        if self.options.resume is None:
            shutil.rmtree(store.root, ignore_errors=True)

    def _prepare(self, store: RunStore, checkpoint: eng.Checkpoint | None, resumed: dict[str, float]) -> eng.Engine:
        """Store every task's code bundle and (for a new run) the initial globals."""
        code = {}
        for alias, task in self.graph.tasks.items():
            code[alias] = CodeRef(store.put_value(task.module.bundle()), task.module.entry)
        if checkpoint is None:
            refs = {tag: store.blobs.put_stream(codec.encode_parts(value)) for tag, value in self.swarm.globals.items()}
            store.set_meta("initial_globals", refs)
            checkpoint = eng.Checkpoint(iteration=0, starts=self.graph.roots(), global_refs=refs)
        opts = self.options
        plan = eng.Plan(
            self.swarm_id, self.graph, code, opts.timing(), opts.result_budget_per_node, opts.result_budget_total
        )
        return eng.Engine(plan, checkpoint, seed=self.options.seed, resumed=resumed)

    def _pump(self, engine: eng.Engine) -> tuple[eng.RunState, str]:
        """Feed the engine every event (a tick when none comes before its next deadline)."""
        assert self._intake is not None and self._pulls is not None
        pulls = self._pulls
        self._carry_out(engine.start(time.monotonic()))
        while not engine.ended:
            if self._interrupt.is_set():
                raise _Interrupted
            self._tasks.reap()  # task processes idle too long
            timers = [t for t in (engine.next_timer(), self._state_rate.due(), pulls.next_timer()) if t is not None]
            wait = min([MAX_WAIT, *(max(0.0, t - time.monotonic()) for t in timers)])
            try:
                received: Received | None = self._intake.next(timeout=wait)
            except queue.Empty:
                received = None
            now = time.monotonic()
            if pulls.observe(received, engine, now):  # not for a mere upload chunk's arrival
                self._carry_out(engine.handle(self._event(received), now))
                pulls.sync(engine, time.monotonic())  # grants for what the engine now waits for
            pulls.send(time.monotonic())
            waiting = self._state_rate.flush(time.monotonic())
            if waiting is not None:
                self._publish_state(waiting)
            if self._store is not None:  # batched results: committed within a second or so
                self._store.commit_if_due(time.monotonic())
        return self._ended

    def _event(self, received: Received | None) -> eng.Event:
        if received is None or isinstance(received, ChunksArrived):
            return eng.Tick()
        if not isinstance(received, ReceivedEnvelope):
            return received
        assert self._store is not None
        e = received.envelope
        refs = [v.sha for v in (*e.results.values(), *e.global_writes.values()) if isinstance(v, BlobRef)]
        missing = frozenset(sha for sha in refs if sha not in self._store.blobs)
        return eng.EnvelopeArrived(received.node, e, missing, received.size)

    # --- carrying out actions ------------------------------------------------------------------

    def _carry_out(self, actions: list[act.Action]) -> None:
        todo = deque(actions)
        while todo:
            follow_up = self._do(todo.popleft())
            if follow_up is not None:
                assert self.engine is not None
                todo.extend(self.engine.handle(follow_up, time.monotonic()))

    def _do(self, action: act.Action) -> eng.Event | None:
        """Carry out one action; a coordinator-placed task's end comes back as an event."""
        store, link, server, assignments = self._store, self._link, self._server, self._assignments
        assert store is not None and link is not None and server is not None and assignments is not None
        match action:
            case act.PublishBlob(sha=sha) if not server.offers(sha):
                server.offer_file(store.blobs.path(sha), sha)
            case act.ClearBlobs(keep=keep):
                server.withdraw_all_except(set(keep))
            case act.Assign(node=node, assignment=assignment):
                link.publish(topics.assignment(self.swarm_id, node), assignments.encode(assignment, node))
            case act.PublishState():
                ready = self._state_rate.offer(action, time.monotonic())
                if ready is not None:
                    self._publish_state(ready)
            case act.KeepValue(data=data):
                store.put_value(data)
            case act.RecordResult(iteration=it, task=task, node=node, tag=tag, sha=sha):
                store.add_result(it, task, node, tag, sha)
            case act.RecordLateResult(iteration=it, task=task, node=node, tag=tag, sha=sha):
                store.add_late_result(it, task, node, tag, sha)
            case act.RecordRun(iteration=it, task=task, node=node, ok=ok, error=error, duration=duration):
                store.add_run(it, task, node, ok, error, duration)
            case act.RecordGlobals(iteration=it, global_refs=refs):
                store.set_globals(it, refs)
            case act.SaveCheckpoint(checkpoint=checkpoint):
                store.set_meta("checkpoint", checkpoint.to_dict())
            case act.RunLocal():
                return self._run_local(action)
            case act.Quarantine(iteration=it, task=task, node=node, error=error):
                store.add_quarantine(it, task, node, error)
            case act.Reject(reason=reason, detail=detail):
                self.reject(reason, detail)
            case act.Info(text=text):
                self.progress.info(text)
            case act.Warn(task_error=act.TaskError() as failure):
                self.progress.task_error(failure.task, failure.node, failure.error)
            case act.Warn(text=text):
                self.progress.warn(text)
            case act.Log(text=text):
                log.info("%s", text)
            case act.StepStarted(iteration=it, task=task, nodes=nodes):
                self.progress.step_started(it, task, nodes)
            case act.NodeDone(node=node, ok=ok):
                self.progress.node_done(node, ok)
            case act.StepDone():
                self._step_done(action)
            case act.SwarmEnded(state=state, reason=reason):
                self._ended = (state, reason)
        return None

    def _run_local(self, action: act.RunLocal) -> eng.TaskFinished:
        store = self._store
        assert store is not None and self.engine is not None
        store.commit()  # a coordinator task may run for minutes: nothing waits uncommitted meanwhile
        code, task = self.engine.plan.code[action.task], self.graph.tasks[action.task]
        host = CoordinatorHost(
            store,
            self.swarm_id,
            action.iteration,
            action.task,
            action.global_refs,
            only=action.only,
            exclude=action.exclude,
        )
        outcome = self._tasks.run(
            store.blobs.path(code.sha),
            code.entry,
            host,
            swarm=self.swarm_id,
            code=code.sha,
            timeout=task.timeout,
            workdir=store.root / "work",
            label=action.task,
            cancel=self._interrupt,
        )
        if self._interrupt.is_set():  # killed by interrupt(): not the task's failure
            raise _Interrupted
        return eng.TaskFinished(action.task, outcome.ok, outcome.error, outcome.duration, host.writes())

    def _step_done(self, done: act.StepDone) -> None:
        assert self._store is not None
        metrics = step_metrics(self._store, done.iteration, done.task)
        if done.total and metrics:  # the swarm state shows the last node step's metrics
            self.metrics = metrics
            self._store.set_meta("metrics", metrics)
        self.progress.step_finished(done.iteration, done.task, done.ok, done.total, metrics)

    def _publish_state(self, state: act.PublishState) -> None:
        assert self._link is not None
        self._board.publish(self._link, state, self.metrics)

    def _finish(self, state: eng.RunState, reason: str) -> tuple[int, bool]:
        """Record and publish the end; remove a new run that never started. Returns the number
        of iterations the store holds, and whether the run folder is kept."""
        store, link = self._store, self._link
        assert store is not None and link is not None
        kept = self.options.resume is not None or (self.engine is not None and self.engine.started)
        iterations = len(store.iterations())
        final = {
            "state": state.value,
            "reason": reason,
            "iterations": iterations,
            "metrics": self.metrics,
            "rejected": self.reject.as_dict(),
            "finished": time.time(),
        }
        store.set_meta("final", final)
        try:
            if link.connected.is_set():
                if kept:
                    self._publish_state(act.PublishState(state, self._iteration(), reason=reason))
                else:  # nothing ran: leave no retained state behind for a run that is not kept
                    self._board.clear(link)
        finally:  # a run that ended leaves no session on the broker; an interrupted one keeps it to --resume
            if self._server is not None:
                self._server.stop()
            link.stop(end_session=state is not eng.RunState.INTERRUPTED)
            if kept:
                store.close()
            else:
                self._abandon(store)
        counts = sorted(self.reject.as_dict().items())
        if counts:
            self.progress.warn("rejected messages: " + ", ".join(f"{k}={v}" for k, v in counts))
        self.progress.finished(state.value, reason, iterations)
        if not kept:
            self.progress.info(f"nothing ran: no run kept (removed {store.root})")
        return iterations, kept


class _Interrupted(Exception):
    """Raised in the pump once :meth:`Coordinator.interrupt` was called."""
