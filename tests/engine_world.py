"""A small world for driving the coordinator's engine without a broker, a store or a clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from manta_mqtt.coordinator.engine import (
    Checkpoint,
    Engine,
    EnvelopeArrived,
    Event,
    Plan,
    StatusChanged,
    TaskFinished,
    TaskWrites,
    Tick,
    Timing,
    UploadCompleted,
)
from manta_mqtt.coordinator.engine import actions as act
from manta_mqtt.protocol import codec
from manta_mqtt.protocol.chunking import sha256
from manta_mqtt.protocol.limits import MAX_NODE_RESULT_BYTES, MAX_TOTAL_RESULT_BYTES
from manta_mqtt.protocol.messages import BlobRef, CodeRef, NodeStatus, ResultEnvelope, Value
from manta_mqtt.swarm import Module, Task
from manta_mqtt.swarm.graph import SwarmGraph

COUNTER = Path(__file__).resolve().parent / "swarms" / "counter"
SWARM = "sw-1"
A = TypeVar("A")


def blob(name: str) -> str:
    return sha256(name.encode())


INITIAL = {"model": blob("model-0")}


def fl_graph(aggregator: dict[str, Any] | None = None, **worker: Any) -> SwarmGraph:
    """worker (on nodes, with ``worker`` options) -> aggregator -> scheduler (on the coordinator)."""
    w = Task(Module(COUNTER / "worker.py", datasets=["numbers.npy"]), alias="worker", timeout=100, **worker)
    agg = Task(
        Module(COUNTER / "aggregator.py"), alias="aggregator", placement="coordinator", timeout=50, **(aggregator or {})
    )
    sched = Task(Module(COUNTER / "aggregator.py"), alias="scheduler", placement="coordinator", timeout=50)
    return SwarmGraph(sched(agg(w)))


@dataclass
class World:
    """An engine, a clock and everything the engine asked for so far."""

    graph: SwarmGraph
    timing: Timing = field(default_factory=lambda: Timing(grace=10.0, reconnect_grace=5.0, wait_nodes=30.0))
    checkpoint: Checkpoint | None = None
    resumed: dict[str, float] | None = None
    now: float = 1000.0
    log: list[act.Action] = field(default_factory=list)
    result_bytes: tuple[int, int] = (MAX_NODE_RESULT_BYTES, MAX_TOTAL_RESULT_BYTES)  # per node, total

    def __post_init__(self) -> None:
        code = {alias: CodeRef(blob(f"code-{alias}"), "main") for alias in self.graph.tasks}
        start = self.checkpoint or Checkpoint(iteration=0, starts=self.graph.roots(), global_refs=dict(INITIAL))
        plan = Plan(SWARM, self.graph, code, self.timing, *self.result_bytes)
        self.engine = Engine(plan, start, resumed=self.resumed)

    def start(self) -> list[act.Action]:
        out = self.engine.start(self.now)
        self.log += out
        return out

    def feed(self, event: Event, after: float = 0.0) -> list[act.Action]:
        self.now += after
        out = self.engine.handle(event, self.now)
        self.log += out
        return out

    def tick(self, after: float) -> list[act.Action]:
        return self.feed(Tick(), after)

    def online(
        self, *nodes: str, session: int = 1, datasets: Sequence[str] = ("numbers.npy",), after: float = 0.0
    ) -> list[act.Action]:
        """Each node's status says online (a first status, a heartbeat, or a return)."""
        self.now += after
        out = []
        for node in nodes:
            out += self.feed(StatusChanged(NodeStatus(node, "online", list(datasets), session)))
        return out

    def offline(self, node: str, session: int = 1) -> list[act.Action]:
        return self.feed(StatusChanged(NodeStatus(node, "offline", ["numbers.npy"], session)))

    def result(
        self,
        node: str,
        *,
        iteration: int | None = None,
        task: str = "worker",
        status: str = "ok",
        topic: str | None = None,
        results: dict[str, Value] | None = None,
        global_writes: dict[str, Value] | None = None,
        schedule: list[tuple[str, list[str]]] | None = None,
        stop: bool = False,
        missing: Sequence[str] = (),
        swarm: str = SWARM,
        after: float = 0.0,
        size: int = 0,
    ) -> list[act.Action]:
        it = self.engine.iteration if iteration is None else iteration
        values = {"metrics": codec.encode({"acc": 0.5})} if results is None else results
        e = ResultEnvelope(
            swarm,
            it,
            task,
            node,
            0,
            status,
            values,
            global_writes or {},
            schedule or [],
            stop,
            "boom" if status == "failed" else "",
            1.5,
        )
        return self.feed(EnvelopeArrived(topic or node, e, frozenset(missing), size), after)

    def uploaded(self, sha: str) -> list[act.Action]:
        return self.feed(UploadCompleted(sha))

    def finish_local(self, ok: bool = True, writes: TaskWrites | None = None, error: str = "") -> list[act.Action]:
        running = [a for a in self.log if isinstance(a, act.RunLocal)]
        assert running, "no coordinator task was started"
        return self.feed(
            TaskFinished(running[-1].task, ok, error or ("" if ok else "Traceback: boom"), 0.5, writes or TaskWrites())
        )


def only(actions: Sequence[object], kind: type[A]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


def assigned(actions: Sequence[object]) -> dict[str, int]:
    """{node: attempt} of the assignments among ``actions``."""
    return {a.node: a.assignment.attempt for a in only(actions, act.Assign)}


def ref(data: bytes) -> BlobRef:
    return BlobRef(sha256(data), len(data))
