"""Any interleaving of events keeps the engine's invariants (a hypothesis state machine).

Three nodes come and go, restart, send results that are on time, early, late, duplicated,
forged, for other swarms, failed, or waiting for uploads; coordinator tasks end well or badly
and schedule or stop; time jumps. After every event the engine must still hold what a run
promises: no crash, one outcome per node and step, nothing taken from a result it refused,
no step left open past its deadline, no busy timer, a checkpoint that survives JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from manta_mqtt.coordinator.engine import (
    COORDINATOR_NODE,
    Checkpoint,
    EnvelopeArrived,
    Phase,
    StatusChanged,
    TaskFinished,
    TaskWrites,
    Timing,
)
from manta_mqtt.coordinator.engine import actions as act
from manta_mqtt.protocol import codec
from manta_mqtt.protocol.chunking import sha256
from manta_mqtt.protocol.messages import BlobRef, NodeStatus, ResultEnvelope, Value
from manta_mqtt.protocol.rejections import REASONS
from tests.engine_world import INITIAL, SWARM, World, fl_graph, only

NODES = ["n1", "n2", "n3"]
BLOBS = [sha256(f"upload-{i}".encode()) for i in range(3)]
MAX_ITERATIONS = 4


@dataclass(frozen=True)
class Sent:
    """What the machine knows about an envelope it sent, to check what the engine took from it."""

    envelope: ResultEnvelope
    topic: str
    may_set_globals: bool

    @property
    def acceptable(self) -> bool:
        e = self.envelope
        return e.status == "ok" and e.node == self.topic and e.swarm == SWARM

    @property
    def global_acceptable(self) -> bool:
        return self.acceptable and self.may_set_globals


class EngineMachine(RuleBasedStateMachine):
    world: World

    @initialize(
        quorum=st.sampled_from([1, 2, None, 0.5]),
        deadline=st.sampled_from([None, 5.0, 20.0]),
        on_short=st.sampled_from(["wait", "retry", "fail"]),
        retries=st.integers(0, 2),
        max_wait=st.sampled_from([0.0, 10.0]),
        min_nodes=st.integers(1, 3),
        trusted=st.booleans(),
        quarantine=st.booleans(),
    )
    def begin(
        self,
        quorum: object,
        deadline: object,
        on_short: str,
        retries: int,
        max_wait: float,
        min_nodes: int,
        trusted: bool,
        quarantine: bool,
    ) -> None:
        self.trusted = trusted  # the worker lets nodes set globals and make control requests
        graph = fl_graph(
            quorum=quorum,
            deadline=deadline,
            on_short=on_short,
            retries=retries,
            max_wait=max_wait,
            globals_from_nodes=trusted,
            control_from_nodes=trusted,
            aggregator={"on_error": "quarantine" if quarantine else "fail"},
        )
        timing = Timing(
            grace=10.0, reconnect_grace=5.0, wait_nodes=30.0, min_nodes=min_nodes, max_iterations=MAX_ITERATIONS
        )
        self.world = World(graph, timing)
        self.status: dict[str, str] = {}
        self.stored: set[str] = set()  # blobs "in the run store"
        self.sent: list[EnvelopeArrived] = []
        self.by_value: dict[str, Sent] = {}  # sha of a value an envelope carried -> that envelope
        self.local_writes: set[str] = set()
        self.counter = 0
        self.last_iteration = 0
        self.local_pending = False
        self.feed_checked(lambda: self.world.start())

    # --- feeding ---------------------------------------------------------------------------

    def feed_checked(self, feed) -> list[act.Action]:  # type: ignore[no-untyped-def]
        was_ended = self.world.engine.ended
        out: list[act.Action] = feed()
        if was_ended:
            assert out == [], "an ended engine took an event"
        for action in out:
            if isinstance(action, act.Assign):
                assert self.status.get(action.node) == "online", f"assigned to {action.node}, which is not online"
            if isinstance(action, act.RunLocal):
                self.local_pending = True
            if isinstance(action, act.Reject):
                assert action.reason in REASONS, f"undocumented rejection reason {action.reason!r}"
            if isinstance(action, (act.RecordResult, act.RecordLateResult)) and action.sha in BLOBS:
                assert action.sha in self.stored, "a result was recorded before its upload arrived"
        return out

    def unique(self, label: str) -> bytes:
        self.counter += 1
        return codec.encode(f"{label}-{self.counter}")

    # --- rules ------------------------------------------------------------------------------

    @rule(node=st.sampled_from(NODES), online=st.booleans(), session=st.integers(1, 2))
    def status_changes(self, node: str, online: bool, session: int) -> None:
        state = "online" if online else "offline"
        self.status[node] = state
        status = NodeStatus(node, state, ["numbers.npy"], session)
        self.feed_checked(lambda: self.world.feed(StatusChanged(status)))

    @rule(
        node=st.sampled_from(NODES),
        topic=st.sampled_from([None, None, None, None, *NODES]),  # mostly its own topic
        delta=st.sampled_from([0, 0, 0, -1, 1]),
        task=st.sampled_from(["worker", "worker", "worker", "aggregator"]),
        ok=st.sampled_from([True, True, True, False]),
        other_swarm=st.sampled_from([False] * 5 + [True]),
        with_global=st.booleans(),
        blob=st.sampled_from([None, None, None, None, *BLOBS]),
        schedule=st.sampled_from([None, [], ["n1"], NODES]),
        stop=st.booleans(),
    )
    def result_arrives(
        self,
        node: str,
        topic: str | None,
        delta: int,
        task: str,
        ok: bool,
        other_swarm: bool,
        with_global: bool,
        blob: str | None,
        schedule: list[str] | None,
        stop: bool,
    ) -> None:
        metrics = self.unique("metrics")
        results: dict[str, Value] = {"metrics": metrics}
        if blob is not None:
            results["model"] = BlobRef(blob, 10)
        writes: dict[str, Value] = {"model": self.unique("global")} if with_global else {}
        e = ResultEnvelope(
            "elsewhere" if other_swarm else SWARM,
            max(0, self.world.engine.iteration + delta),
            task,
            node,
            0,
            "ok" if ok else "failed",
            results,
            writes,
            [("worker", schedule)] if schedule is not None else [],
            stop,
            "" if ok else "boom",
            1.0,
        )
        sent = Sent(e, topic or node, self.trusted)
        for value in [metrics, *writes.values()]:
            assert isinstance(value, bytes)
            self.by_value[sha256(value)] = sent
        missing = frozenset({blob} - self.stored) if blob is not None else frozenset()
        event = EnvelopeArrived(topic or node, e, missing)
        self.sent.append(event)
        self.feed_checked(lambda: self.world.feed(event))

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def result_again(self, data: st.DataObject) -> None:
        event = data.draw(st.sampled_from(self.sent))
        refs = [v.sha for v in event.envelope.results.values() if isinstance(v, BlobRef)]
        again = EnvelopeArrived(event.node, event.envelope, frozenset(refs) - self.stored)
        self.feed_checked(lambda: self.world.feed(again))

    @rule(sha=st.sampled_from(BLOBS))
    def upload_completes(self, sha: str) -> None:
        if sha not in self.stored:  # the intake reports a blob once, when it is stored
            self.stored.add(sha)
            self.feed_checked(lambda: self.world.uploaded(sha))

    @rule(seconds=st.sampled_from([0.0, 0.5, 3.0, 5.0, 10.0, 30.0, 130.0]))
    def time_passes(self, seconds: float) -> None:
        self.feed_checked(lambda: self.world.tick(seconds))

    @precondition(lambda self: self.local_pending)
    @rule(ok=st.booleans(), schedule=st.sampled_from([None, ["n1"], NODES, ["nope"]]), stop=st.booleans())
    def coordinator_task_ends(self, ok: bool, schedule: list[str] | None, stop: bool) -> None:
        self.local_pending = False
        sha = sha256(self.unique("local"))
        self.local_writes.add(sha)
        alias = "nope" if schedule == ["nope"] else "worker"
        sched = [(alias, ["n1"] if alias == "nope" else schedule)] if schedule is not None else []
        writes = TaskWrites(global_refs={"model": sha}, schedule=sched, stop=stop)  # type: ignore[arg-type]
        task = only(self.world.log, act.RunLocal)[-1].task
        self.feed_checked(lambda: self.world.feed(TaskFinished(task, ok, "" if ok else "boom", 0.1, writes)))

    # --- invariants -------------------------------------------------------------------------------

    @invariant()
    def quarantined_nodes_are_never_asked_again(self) -> None:
        quarantined: set[str] = set()
        for action in self.world.log:
            if isinstance(action, act.Quarantine):
                quarantined.add(action.node)
            elif isinstance(action, act.Assign):
                assert action.node not in quarantined, f"{action.node} was quarantined, then asked again"
            elif isinstance(action, act.RunLocal):
                assert quarantined <= action.exclude, "a coordinator task saw a quarantined node's results"

    @invariant()
    def ends_once(self) -> None:
        assert len(only(self.world.log, act.SwarmEnded)) <= 1

    @invariant()
    def one_success_per_node_and_step(self) -> None:
        seen: set[tuple[int, str, str]] = set()
        for run in only(self.world.log, act.RecordRun):
            if run.ok and run.node != COORDINATOR_NODE:
                key = (run.iteration, run.task, run.node)
                assert key not in seen, f"success counted twice: {key}"
                seen.add(key)

    @invariant()
    def results_only_from_assigned_nodes_and_acceptable_envelopes(self) -> None:
        assigned = {(a.assignment.iteration, a.assignment.task, a.node) for a in only(self.world.log, act.Assign)}
        for record in only(self.world.log, act.RecordResult):
            if record.node == COORDINATOR_NODE:
                continue
            assert (record.iteration, record.task, record.node) in assigned
            if record.sha in self.by_value:
                sent = self.by_value[record.sha]
                assert sent.acceptable, f"took a result from a refused envelope: {sent}"
                e = sent.envelope
                assert (e.iteration, e.task, e.node) == (record.iteration, record.task, record.node)
            else:
                assert record.sha in BLOBS  # an uploaded model

    @invariant()
    def globals_come_only_from_accepted_writers(self) -> None:
        allowed = set(INITIAL.values()) | self.local_writes
        for sha in self.world.engine.global_refs.values():
            if sha not in allowed:
                assert sha in self.by_value and self.by_value[sha].global_acceptable

    @invariant()
    def steps_end_with_a_success(self) -> None:
        for done in only(self.world.log, act.StepDone):
            assert done.total == 0 or 1 <= done.ok <= done.total

    @invariant()
    def no_step_outlives_its_deadline(self) -> None:
        step = self.world.engine.nodes.step
        if step is not None and not self.world.engine.ended:
            assert step.round.give_up > self.world.now

    @invariant()
    def timers_are_in_the_future(self) -> None:
        timer = self.world.engine.next_timer()
        if not self.world.engine.ended and timer is not None:
            assert timer > self.world.now

    @invariant()
    def phases_agree(self) -> None:
        engine = self.world.engine
        if self.local_pending and not engine.ended:
            assert engine.phase is Phase.LOCAL
        if engine.phase is Phase.ON_NODES:
            assert engine.nodes.step is not None

    @invariant()
    def checkpoint_survives_json(self) -> None:
        cp = self.world.engine.checkpoint()
        assert Checkpoint.from_dict(json.loads(json.dumps(cp.to_dict()))) == cp

    @invariant()
    def iterations_move_forward_within_the_limit(self) -> None:
        it = self.world.engine.iteration
        assert self.last_iteration <= it < MAX_ITERATIONS
        self.last_iteration = it


EngineMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestEngineMachine = EngineMachine.TestCase
