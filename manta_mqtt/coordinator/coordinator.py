"""The coordinator process: the I/O around the round state in :mod:`.rounds`.

One MQTT connection; paho's thread only parses topics, reassembles uploads and queues events;
the main thread runs the iteration loop, the store and the coordinator-placed tasks.
"""

from __future__ import annotations

import logging
import queue
import random
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import codec, topics
from ..protocol.chunking import DEFAULT_CHUNK_SIZE
from ..protocol.messages import (
    Assignment,
    BlobRef,
    CodeRef,
    NodeStatus,
    ProtocolError,
    ResultEnvelope,
    SwarmState,
    Value,
)
from ..protocol.rejections import Rejections
from ..runtime.executor import run_task
from ..swarm.graph import SwarmGraph, Task
from ..swarm.swarm import Swarm
from ..transport.blobs import BlobPublisher, UploadReceiver
from ..transport.mqtt import BrokerAddress, MqttLink
from .checkpoint import Checkpoint, rng_state_from_json, rng_state_to_json
from .host import COORDINATOR_NODE, CoordinatorHost
from .intake import Intake
from .metrics import summarize
from .placement import eligible_nodes, select_nodes
from .progress import ConsoleProgress, ProgressView
from .rounds import Decisions, NodeOutcome, StepRound, Verdict, decide, quorum_size
from .store import RunStore

log = logging.getLogger("manta_mqtt.coordinator")

#: Results up to this size are decoded to show their metrics; larger ones (models) are not.
METRICS_MAX_BYTES = 64 * 1024


@dataclass
class CoordinatorOptions:
    runs_dir: Path = Path("manta_runs")
    min_nodes: int = 1
    wait_nodes: float = 60.0  # how long to wait for min_nodes (and for any eligible node later)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    mqtt_version: str = "auto"
    seed: int = 0
    max_iterations: int = 1000
    grace: float = 60.0  # added to a task's timeout for fetching and uploading
    swarm_id: str | None = None
    max_upload: int = 1 << 30
    resume: Path | None = None  # a run directory to continue from its last completed step
    reconnect_grace: float = 15.0  # a node gone offline mid-step may come back and report within this


@dataclass
class RunSummary:
    swarm_id: str
    state: str
    reason: str
    iterations: int
    store_path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)


class SwarmFailed(Exception):
    """The swarm cannot go on; the message says why."""


def make_swarm_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "swarm"
    return f"{slug}-{secrets.token_hex(4)}"


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
            self.swarm_id = RunStore.open(self.options.resume).meta("swarm", {}).get("id", "")
        else:
            self.swarm_id = self.options.swarm_id or make_swarm_id(swarm.name)
        topics.check_id(self.swarm_id, "swarm id")
        self.rng = random.Random(self.options.seed)
        self.nodes: dict[str, NodeStatus] = {}
        self.reject = Rejections(log)
        self.intake = Intake(self.reject)
        self.globals: dict[str, str] = {}
        self.code: dict[str, CodeRef] = {}
        self.previous_nodes: dict[str, list[str]] = {}
        self.iteration = 0
        self.metrics: dict[str, float] = {}
        self._round: StepRound | None = None
        self._decisions = Decisions()
        self._parked: dict[str, tuple[ResultEnvelope, list[str]]] = {}
        self._closed: dict[tuple[int, str], set[str]] = {}  # closed steps -> their stragglers
        self._early: list[tuple[str, bytes]] = []  # results that came before their step opened
        self._assignment = b""  # the open step's assignment, sent again to a node that restarted
        self.checkpoint = Checkpoint()
        self.store: RunStore | None = None
        self.link: MqttLink | None = None
        self.publisher: BlobPublisher | None = None

    # --- main thread -------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Run the swarm until a task stops it, it completes, or it fails."""
        options = self.options
        description = {
            "id": self.swarm_id,
            "name": self.swarm.name,
            "tasks": {a: _describe(t) for a, t in self.graph.tasks.items()},
            "order": self.graph.order,
            "started": time.time(),
        }
        if options.resume is not None:
            store = self.store = RunStore.open(options.resume)
            self._restore(store, description)
        else:
            store = self.store = RunStore.create(options.runs_dir, self.swarm_id, description)
        uploads = UploadReceiver(store.blobs, max_size=options.max_upload, on_reject=self.reject)
        link = self.link = MqttLink(f"coordinator-{self.swarm_id}", self.broker, version=options.mqtt_version)
        filters = self.intake.attach(link, self.swarm_id, uploads)
        if not link.start():
            store.close()
            raise ConnectionError(f"cannot connect to the broker at {self.broker}")
        if not link.subscribe(filters, wait=10.0):
            link.stop()
            store.close()
            raise ConnectionError(f"the broker at {self.broker} did not acknowledge our subscriptions")
        self.publisher = BlobPublisher(link, self.swarm_id, options.chunk_size)
        verb = "resuming" if options.resume is not None else "swarm"
        self.progress.info(f"{verb} {self.swarm_id} ({self.swarm.name}) on {self.broker}; results in {store.root}")
        state, reason = "failed", ""
        try:
            self._prepare()
            state, reason = self._loop()
        except SwarmFailed as exc:
            state, reason = "failed", str(exc)
        except KeyboardInterrupt:
            state, reason = "stopped", "interrupted by the user"
        finally:
            self._finish(state, reason)
        return RunSummary(
            self.swarm_id, state, reason, self.iteration + 1, store.root, dict(self.metrics), self.reject.as_dict()
        )

    def _prepare(self) -> None:
        assert self.store is not None and self.publisher is not None
        for alias, task in self.graph.tasks.items():
            bundle = task.module.bundle()
            sha = self.store.put_value(bundle)
            self.code[alias] = CodeRef(sha, task.module.entry)
            if task.placement == "nodes":
                self.publisher.publish(bundle)
        if self.options.resume is None:
            for tag, value in self.swarm.globals.items():
                self.globals[tag] = self.store.put_value(codec.encode(value))
            self.store.set_meta("initial_globals", self.globals)
            self.checkpoint = Checkpoint(iteration=0, starts=self.graph.roots(), globals=dict(self.globals))
            self._save_checkpoint()
        self._publish_state("running")
        self._wait_for_nodes()

    def _restore(self, store: RunStore, description: dict[str, Any]) -> None:
        """Continue a run: same swarm id (so the broker kept our session's queued results)."""
        before = store.meta("swarm", {})
        if sorted(before.get("tasks", {})) != sorted(description["tasks"]):
            raise SwarmFailed(f"cannot resume {self.swarm_id}: the swarm file defines other tasks")
        final = store.meta("final")
        if final and final.get("state") in ("stopped", "completed"):
            raise SwarmFailed(f"cannot resume {self.swarm_id}: it already {final['state']}")
        data = store.meta("checkpoint")
        if data is None:
            raise SwarmFailed(f"cannot resume {self.swarm_id}: no checkpoint in {store.root}")
        self.checkpoint = Checkpoint.from_dict(data)
        cp = self.checkpoint
        self.iteration = cp.iteration
        self.globals = dict(cp.globals)
        self.previous_nodes = {k: list(v) for k, v in cp.previous_nodes.items()}
        self.metrics = dict(cp.metrics)
        if cp.rng:
            self.rng.setstate(rng_state_from_json(cp.rng))

    def _wait_for_nodes(self) -> None:
        roots = [self.graph.tasks[a] for a in self.graph.roots() if self.graph.tasks[a].placement == "nodes"]
        if not roots:
            return
        want = self.options.min_nodes
        deadline = time.monotonic() + self.options.wait_nodes
        self.progress.info(f"waiting for {want} eligible node(s)...")
        while time.monotonic() < deadline:
            have = min(len(eligible_nodes(t, self._online())) for t in roots)
            if have >= want:
                self.progress.info(f"{have} node(s) online: {', '.join(sorted(self._online()))}")
                return
            self._pump(0.2)
        have = min(len(eligible_nodes(t, self._online())) for t in roots)
        if have == 0:
            raise SwarmFailed(f"no eligible node came online within {self.options.wait_nodes:.0f} s")
        self.progress.warn(f"only {have} of {want} node(s) online; starting anyway")

    def _online(self) -> dict[str, list[str]]:
        return {n: s.datasets for n, s in self.nodes.items() if s.state != "offline"}

    def _save_checkpoint(self, **changes: Any) -> None:
        assert self.store is not None
        cp = self.checkpoint
        for key, value in changes.items():
            setattr(cp, key, value)
        cp.globals = dict(self.globals)
        cp.schedule = {k: list(v) for k, v in self._decisions.schedule.items()}
        cp.stop_by = self._decisions.stop_by
        cp.previous_nodes = {k: list(v) for k, v in self.previous_nodes.items()}
        cp.rng = rng_state_to_json(self.rng.getstate())
        cp.metrics = dict(self.metrics)
        self.store.set_meta("checkpoint", cp.to_dict())

    def _loop(self) -> tuple[str, str]:
        assert self.store is not None and self.publisher is not None
        cp = self.checkpoint
        self._decisions = Decisions(schedule={k: list(v) for k, v in cp.schedule.items()}, stop_by=cp.stop_by)
        while True:
            for alias in self.graph.steps_from(cp.starts):
                if alias in cp.done_steps:
                    continue  # completed before a restart
                task = self.graph.tasks[alias]
                if task.placement == "coordinator":
                    self._run_local(task)
                else:
                    self._run_on_nodes(task, cp.forced.get(alias))
                self._save_checkpoint(done_steps=[*cp.done_steps, alias], current=None)
            self.store.set_globals(self.iteration, self.globals)
            nxt = decide(self.graph, self._decisions)
            if nxt.state != "running":
                return nxt.state, nxt.reason
            if self.iteration + 1 >= self.options.max_iterations:
                return "stopped", f"reached the limit of {self.options.max_iterations} iterations"
            self.iteration += 1
            self._decisions = Decisions()
            self._save_checkpoint(iteration=self.iteration, starts=nxt.starts, forced=nxt.forced, done_steps=[])
            self.publisher.clear_all_except({c.sha for c in self.code.values()} | set(self.globals.values()))

    # --- steps -------------------------------------------------------------------------------

    def _run_local(self, task: Task) -> None:
        assert self.store is not None
        self._publish_state("running", step=task.name)
        host = CoordinatorHost(self.store, self.swarm_id, self.iteration, task.name, self.globals, self._decisions)
        code = self.code[task.name]
        outcome = run_task(
            self.store.blobs.path(code.sha),
            code.entry,
            host,
            timeout=task.timeout,
            workdir=self.store.root / "work",
            label=task.name,
        )
        self.store.add_run(self.iteration, task.name, COORDINATOR_NODE, outcome.ok, outcome.error, outcome.duration)
        if not outcome.ok:
            raise SwarmFailed(f"task {task.name} failed on the coordinator:\n{outcome.error}")
        metrics = self._step_metrics(task.name)
        self.progress.step_finished(self.iteration, task.name, 0, 0, metrics)

    def _choose_nodes(self, task: Task, forced: list[str] | None) -> list[str]:
        deadline = time.monotonic() + self.options.wait_nodes
        while True:
            online = self._online()
            if forced is not None:
                eligible = set(eligible_nodes(task, online))
                nodes = sorted(n for n in forced if n in eligible)
                gone = sorted(set(forced) - eligible)
                if gone:
                    self.progress.warn(f"scheduled node(s) not available for {task.name}: {', '.join(gone)}")
            else:
                nodes = select_nodes(task, online, previous=self.previous_nodes.get(task.name), rng=self.rng)
            if nodes or time.monotonic() > deadline:
                return nodes
            self._pump(0.2)

    def _run_on_nodes(self, task: Task, forced: list[str] | None) -> None:
        assert self.store is not None and self.publisher is not None
        current = self.checkpoint.current
        if current and current.get("task") == task.name:  # resuming this very step
            nodes, attempt = list(current["nodes"]), int(current["attempt"])
        else:
            nodes, attempt = self._choose_nodes(task, forced), 0
        if not nodes:
            raise SwarmFailed(f"no eligible node online for task {task.name}")
        self.previous_nodes[task.name] = nodes
        for sha in self.globals.values():
            if sha not in self.publisher.published:
                self.publisher.publish(self.store.blobs.get(sha))
        quorum = quorum_size(task.quorum, len(nodes))
        step = self._open_step(task, nodes, attempt, quorum)
        while True:
            state = self._wait_step(step, task)
            if state == "proceed":
                break
            if task.on_short == "retry" and step.attempt < task.retries:
                step = self._retry_step(task, step, quorum)
                continue
            errors = [o.error for o in step.outcomes.values() if not o.ok]
            first = errors[0] if errors else "no node answered"
            raise SwarmFailed(
                f"task {task.name}: {len(step.succeeded)} of {len(step.nodes)} node(s) succeeded, "
                f"{quorum} needed; first error:\n{first}"
            )
        self._round = None
        self._parked.clear()
        self._closed[(self.iteration, task.name)] = set(step.stragglers)
        for node in step.missing:  # stragglers past the deadline: their results will be late
            self.store.add_run(self.iteration, task.name, node, False, "missed the step deadline (straggler)", 0.0)
        metrics = self._step_metrics(task.name)
        self.metrics = metrics or self.metrics
        self.progress.step_finished(self.iteration, task.name, len(step.succeeded), len(step.nodes), metrics)

    def _open_step(self, task: Task, nodes: list[str], attempt: int, quorum: int) -> StepRound:
        """Assign ``task`` to ``nodes``; outcomes already in the store (a resumed step) count."""
        assert self.link is not None and self.store is not None
        now = time.monotonic()
        hard = now + task.timeout + self.options.grace
        soft = now + task.deadline if task.deadline is not None else hard
        if task.on_short == "wait":
            hard += task.max_wait
        step = self._round = StepRound(
            self.swarm_id,
            self.iteration,
            task.name,
            nodes,
            soft,
            hard,
            quorum=quorum,
            attempt=attempt,
            reconnect_grace=self.options.reconnect_grace,
        )
        for node, duration in self.store.succeeded_nodes(self.iteration, task.name).items():
            step.record(node, NodeOutcome(True, "", duration))  # ignored for nodes not in this step
        self._save_checkpoint(current={"task": task.name, "nodes": nodes, "attempt": attempt})
        assignment = Assignment(
            swarm=self.swarm_id,
            iteration=self.iteration,
            task=task.name,
            attempt=attempt,
            code=self.code[task.name],
            global_refs=dict(self.globals),
            datasets=list(task.module.datasets),
            timeout=task.timeout,
        )
        self.progress.step_started(self.iteration, task.name, nodes)
        self._publish_progress()
        payload = self._assignment = assignment.to_bytes()
        for node in step.missing:
            self.link.publish(topics.assignment(self.swarm_id, node), payload)
        early, self._early = self._early, []
        for node, data in early:
            self._handle_results(node, data)
        return step

    def _wait_step(self, step: StepRound, task: Task) -> str:
        while True:
            now = time.monotonic()
            state = step.state(now, wait_for_lost=task.on_short == "wait")
            if state != "waiting":
                return state
            self._pump(0.25)
            for node in step.expire(time.monotonic()):
                self._node_failed(node, "no result before the step deadline")
            if self.intake.uploads is not None:
                self.intake.uploads.sweep()

    def _retry_step(self, task: Task, step: StepRound, quorum: int) -> StepRound:
        """Run the step again on every eligible online node without a success (attempt + 1)."""
        done = step.succeeded
        online = eligible_nodes(task, self._online())
        nodes = sorted(set(done) | set(online))
        self.progress.warn(
            f"{task.name}: {len(done)} of {quorum} needed succeeded; retrying on {len(nodes) - len(done)} node(s)"
        )
        self.previous_nodes[task.name] = nodes
        return self._open_step(task, nodes, step.attempt + 1, quorum)

    def _step_metrics(self, task: str) -> dict[str, float]:
        assert self.store is not None
        values: dict[str, Any] = {}
        for node, tag, sha, size in self.store.step_results(self.iteration, task):
            if size <= METRICS_MAX_BYTES:
                try:
                    values[f"{node}/{tag}"] = self.store.value(sha)
                except codec.CodecError:
                    continue
        return summarize(values)

    # --- events --------------------------------------------------------------------------------

    def _pump(self, timeout: float) -> None:
        """Handle queued events for up to ``timeout`` seconds (at least one wait)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, a, b = self.intake.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if kind == "status":
                self._handle_status(a)
            elif kind == "results":
                self._handle_results(a, b)
            elif kind == "blob":
                self._handle_blob(a)
            if time.monotonic() >= deadline:
                return

    def _handle_status(self, status: NodeStatus) -> None:
        before = self.nodes.get(status.node)
        self.nodes[status.node] = status
        if (before is None or before.state == "offline") and status.state != "offline":
            log.info("node %s online (datasets: %s)", status.node, ", ".join(status.datasets) or "none")
        step = self._round
        if step is None or status.node not in step.nodes:
            return
        if status.state == "offline":
            if step.node_lost(status.node, time.monotonic()):
                self._node_failed(status.node, "node went offline during the step")
            return
        restarted = before is not None and before.session != status.session
        if (status.node in step.lost or restarted) and status.node not in step.succeeded:
            # back (or restarted, having lost its task): ask again; a node that has the result
            # in its outbox sends it, one that is still working ignores the duplicate
            assert self.link is not None
            self.link.publish(topics.assignment(self.swarm_id, status.node), self._assignment)

    def _node_failed(self, node: str, error: str) -> None:
        """Report a node the round already marked failed (offline, or past the deadline)."""
        assert self.store is not None and self._round is not None
        self.store.add_run(self.iteration, self._round.task, node, False, error, 0.0)
        self.progress.warn(f"{self._round.task} on {node}: {error}")
        self.progress.node_done(node, False)
        self._publish_progress()

    def _handle_results(self, node: str, payload: bytes) -> None:
        try:
            envelope = ResultEnvelope.parse(payload)
        except ProtocolError as exc:
            self.reject("malformed", f"results from {node}: {exc}")
            return
        if envelope.swarm != self.swarm_id:
            self.reject("unknown_swarm", f"results from {node} for swarm {envelope.swarm!r}")
            return
        step = self._round
        if step is None and envelope.iteration == self.iteration and envelope.node == node:
            if len(self._early) < 10_000:  # e.g. queued for us while we restarted: replayed at step open
                self._early.append((node, payload))
            return
        verdict = step.judge(envelope, node) if step is not None else Verdict.LATE
        if verdict is Verdict.LATE and envelope.node == node:
            self._late(envelope)
            return
        if verdict is not Verdict.ACCEPTED:
            self.reject(verdict.value, f"results from {node} for {envelope.task}@{envelope.iteration}")
            return
        assert self.store is not None
        refs = [v.sha for v in [*envelope.results.values(), *envelope.global_writes.values()] if isinstance(v, BlobRef)]
        missing = [sha for sha in refs if sha not in self.store.blobs]
        if missing:
            self._parked[node] = (envelope, missing)
            return
        self._accept(envelope)

    def _late(self, envelope: ResultEnvelope) -> None:
        """A straggler's result for a step that closed without it: kept apart, never mixed in."""
        assert self.store is not None
        stragglers = self._closed.get((envelope.iteration, envelope.task), set())
        detail = f"results from {envelope.node} for {envelope.task}@{envelope.iteration}"
        if envelope.node not in stragglers or envelope.status != "ok":
            self.reject("late", detail)
            return
        stragglers.discard(envelope.node)
        for tag, value in envelope.results.items():
            if isinstance(value, BlobRef) and value.sha not in self.store.blobs:
                continue  # its upload did not make it; the late result is recorded without it
            sha = self._value_sha(value)
            self.store.add_late_result(envelope.iteration, envelope.task, envelope.node, tag, sha)
        self.reject("late", detail + " (recorded as late)")

    def _handle_blob(self, sha: str) -> None:
        for node, (envelope, missing) in list(self._parked.items()):
            if sha in missing:
                missing.remove(sha)
            if not missing:
                del self._parked[node]
                if self._round is not None and self._round.judge(envelope, node) is Verdict.ACCEPTED:
                    self._accept(envelope)

    def _value_sha(self, value: Value) -> str:
        assert self.store is not None
        return value.sha if isinstance(value, BlobRef) else self.store.put_value(value)

    def _accept(self, envelope: ResultEnvelope) -> None:
        assert self.store is not None and self._round is not None
        ok = envelope.status == "ok"
        if ok:
            for tag, value in envelope.results.items():
                self.store.add_result(envelope.iteration, envelope.task, envelope.node, tag, self._value_sha(value))
            for tag, value in envelope.global_writes.items():
                self.globals[tag] = self._value_sha(value)
            for alias, node_ids in envelope.schedule:
                self._decisions.add_schedule(alias, node_ids)
            if envelope.stop:
                self._decisions.stop(f"{envelope.task}@{envelope.node}")
        self.store.add_run(envelope.iteration, envelope.task, envelope.node, ok, envelope.error, envelope.duration)
        self._round.record(envelope.node, NodeOutcome(ok, envelope.error, envelope.duration))
        if not ok:
            self.progress.warn(f"{envelope.task} failed on {envelope.node}:\n{envelope.error}")
        self.progress.node_done(envelope.node, ok)
        self._publish_progress()

    # --- state -------------------------------------------------------------------------------

    def _publish_progress(self) -> None:
        step = self._round
        if step is not None:
            self._publish_state("running", step=step.task, done=len(step.outcomes), expected=len(step.nodes))

    def _publish_state(self, state: str, step: str = "", done: int = 0, expected: int = 0, reason: str = "") -> None:
        assert self.link is not None
        message = SwarmState(
            swarm=self.swarm_id,
            name=self.swarm.name,
            state=state,
            iteration=self.iteration,
            step=step,
            done=done,
            expected=expected,
            metrics=self.metrics,
            reason=reason,
        )
        self.link.publish(topics.swarm_state(self.swarm_id), message.to_bytes(), retain=True)

    def _finish(self, state: str, reason: str) -> None:
        assert self.store is not None and self.link is not None
        final = {
            "state": state,
            "reason": reason,
            "iterations": self.iteration + 1,
            "metrics": self.metrics,
            "rejected": self.reject.as_dict(),
            "finished": time.time(),
        }
        self.store.set_meta("final", final)
        try:
            if self.link.connected.is_set():
                self._publish_state(state, reason=reason)
                if self.publisher is not None:
                    self.publisher.clear_all_except(set())
        finally:
            self.link.stop()
            self.store.close()
        if self.reject:
            counts = sorted(self.reject.as_dict().items())
            self.progress.warn("rejected messages: " + ", ".join(f"{k}={v}" for k, v in counts))
        self.progress.finished(state, reason, self.iteration + 1)


def _describe(task: Task) -> dict[str, Any]:
    return {
        "module": task.module.name,
        "datasets": task.module.datasets,
        "method": task.method,
        "placement": task.placement,
        "maximum": task.maximum,
        "fixed": task.fixed,
        "previous": [p.name for p in task.previous],
    }
