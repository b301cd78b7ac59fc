"""What a result costs the coordinator must not grow with the number of nodes (bench_scale.py).

Each test counts the work per result (calls, rows, commits), never time: the old code fails
each of them by doing that work once per node of the step.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from manta_mqtt.coordinator.engine import Phase, Timing
from manta_mqtt.coordinator.engine import actions as act
from manta_mqtt.coordinator.engine.node_steps import RunData
from manta_mqtt.coordinator.engine.rounds import NodeOutcome, StepRound
from manta_mqtt.coordinator.engine.staleness import StaleClock
from manta_mqtt.coordinator.host import CoordinatorHost
from manta_mqtt.coordinator.store import COMMIT_EVERY, COMMIT_WITHIN, RunStore
from manta_mqtt.protocol import codec
from tests.engine_world import World, fl_graph, only

NODES = [f"n{i:03d}" for i in range(200)]


# --- the stale clock ---------------------------------------------------------------------------


def test_the_stale_clock_fires_each_silent_node_once_and_a_status_puts_it_off() -> None:
    clock = StaleClock()
    clock.touch("a", 10.0)
    clock.touch("b", 20.0)
    clock.touch("a", 30.0)  # a heartbeat: a's first entry is superseded
    assert clock.next_due(0.0) == 20.0
    assert clock.fired(15.0) == set()
    assert clock.fired(25.0) == {"b"}
    assert clock.fired(26.0) == set()  # once
    assert clock.next_due(26.0) == 30.0
    assert clock.next_due(31.0) is None  # a fired; kept until drained
    assert clock.fired(31.0) == {"a"}
    clock.touch("a", 40.0)  # it came back
    assert clock.next_due(31.0) == 40.0


def test_a_node_that_speaks_again_before_being_drained_is_not_reported() -> None:
    clock = StaleClock()
    clock.touch("a", 10.0)
    assert clock.next_due(11.0) is None  # fired, waiting to be drained
    clock.touch("a", 50.0)
    assert clock.fired(12.0) == set()


def test_the_stale_clock_heap_stays_bounded_under_heartbeats() -> None:
    clock = StaleClock()
    for beat in range(100):
        for node in NODES:
            clock.touch(node, 90.0 + beat)
    assert len(clock._heap) <= 4 * len(NODES) + 64
    assert clock.next_due(0.0) == 90.0 + 99
    assert clock.fired(200.0) == set(NODES)


# --- a step's round: counts kept, not scanned ------------------------------------------------


def test_round_counts_follow_outcomes() -> None:
    rnd = StepRound("sw", 0, "worker", ["b", "a", "c", "a"], deadline=100.0, quorum=2)
    assert rnd.asked("a") and not rnd.asked("z")
    assert rnd.in_order(["c", "z", "a", "b"]) == ["b", "a", "c"]
    assert rnd.record("a", NodeOutcome(True))
    assert rnd.node_lost("b", 1.0)
    assert (rnd.succeeded_count, rnd.complete, rnd.is_missing("c"), rnd.is_missing("b")) == (1, False, True, False)
    assert rnd.record("b", NodeOutcome(True))  # a lost node reports after all
    assert rnd.record("c", NodeOutcome(False, "boom"))
    assert rnd.succeeded_count == len(rnd.succeeded) == 2
    assert rnd.complete and rnd.missing == [] and rnd.expire(1000.0) == []


# --- the engine: per result, no scan of the step's nodes ---------------------------------------


def big_step(monkeypatch: pytest.MonkeyPatch) -> tuple[World, list[str]]:
    """200 nodes, the worker step open on all of them; every later stale() call is recorded."""
    world = World(fl_graph(quorum=None), Timing(grace=10.0, reconnect_grace=5.0, min_nodes=len(NODES)))
    world.start()
    world.online(*NODES)
    assert world.engine.phase is Phase.ON_NODES
    world.tick(0.0)  # the once-per-step look at every node
    calls: list[str] = []
    stale = RunData.stale

    def counted(self: RunData, node: str) -> bool:
        calls.append(node)
        return stale(self, node)

    monkeypatch.setattr(RunData, "stale", counted)
    return world, calls


def test_a_result_looks_at_no_other_node_for_staleness(monkeypatch: pytest.MonkeyPatch) -> None:
    world, calls = big_step(monkeypatch)
    for node in NODES[:50]:
        world.result(node, after=0.01)
        world.engine.next_timer()
    assert calls == []


def test_a_silent_node_is_still_lost_at_its_time_and_only_it_is_looked_at(monkeypatch: pytest.MonkeyPatch) -> None:
    world, calls = big_step(monkeypatch)
    world.online(*NODES[1:], after=60.0)  # every node but the first keeps talking
    assert world.engine.next_timer() == 1000.0 + 90.0
    out = world.tick(30.0)
    assert calls == [NODES[0]]
    assert act.RecordRun(0, "worker", NODES[0], False, "no status from the node for 90 s", 0.0) in out


def test_gathering_scans_the_fleet_only_once_enough_nodes_were_heard_of(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(fl_graph(), Timing(min_nodes=len(NODES), wait_nodes=30.0))
    world.start()
    calls: list[int] = []
    online = RunData.online

    def counted(self: RunData) -> dict[str, list[str]]:
        calls.append(len(self.fleet))
        return online(self)

    monkeypatch.setattr(RunData, "online", counted)
    world.online(*NODES)
    assert calls and min(calls) == len(NODES)
    assert only(world.log, act.StepStarted)[0].nodes == NODES


# --- the run store: batched commits ------------------------------------------------------------


def visible(root: Path, sql: str = "SELECT COUNT(*) FROM results") -> int:
    """What another process reading the run sees: committed rows only."""
    db = sqlite3.connect(root / "index.sqlite")
    try:
        return int(db.execute(sql).fetchone()[0])
    finally:
        db.close()


def fill(store: RunStore, count: int, iteration: int = 0) -> None:
    sha = store.put_value(codec.encode(1))
    for i in range(count):
        store.add_result(iteration, "worker", f"n{i}", "model", sha)
        store.add_run(iteration, "worker", f"n{i}", True, "", 0.1)


def test_batched_writes_are_committed_with_the_next_checkpoint(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "run", {})
    store.batch()
    fill(store, 10)
    assert visible(store.root) == 0
    assert store.result_shas(0, "model").keys() == {f"n{i}" for i in range(10)}  # the coordinator sees its own
    store.set_meta("checkpoint", {"iteration": 0})
    assert visible(store.root) == 10
    assert store.commit_due() is None
    store.close()


def test_batched_writes_are_committed_when_due_or_many(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "run", {})
    store.batch()
    fill(store, 1)
    due = store.commit_due()
    assert due is not None
    assert not store.commit_if_due(due - COMMIT_WITHIN / 2) and visible(store.root) == 0
    assert store.commit_if_due(due) and visible(store.root) == 1
    fill(store, COMMIT_EVERY // 2 + 1, iteration=1)  # two writes each: past COMMIT_EVERY
    assert visible(store.root) >= COMMIT_EVERY // 2
    store.close()
    assert visible(store.root) == 1 + COMMIT_EVERY // 2 + 1


def test_unbatched_writes_are_committed_each(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "run", {})
    fill(store, 3)
    assert visible(store.root) == 3
    store.close()
    store.close()  # a second close does nothing


def _killed_mid_batch(root: str) -> None:
    store = RunStore.open(root)
    store.batch()
    fill(store, 5)
    store.set_meta("checkpoint", {"iteration": 0})
    fill(store, 7, iteration=1)  # not committed yet
    os._exit(9)  # as kill -9: no close, no commit


def test_a_kill_keeps_every_result_committed_with_a_checkpoint(tmp_path: Path) -> None:
    root = RunStore.create(tmp_path, "run", {}).root
    child = multiprocessing.get_context("spawn").Process(target=_killed_mid_batch, args=(str(root),))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    store = RunStore.open(root)
    assert store.meta("checkpoint") == {"iteration": 0}
    assert set(store.results("model")) == {0}  # iteration 1's batch is asked for again on --resume
    assert len(store.results("model")[0]) == 5
    store.close()


def test_one_result_is_looked_up_by_its_node(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "run", {})
    fill(store, 3)
    sha = store.put_value(codec.encode(2))
    store.add_result(0, "later", "n1", "model", sha)  # the latest task's wins, as in result_shas
    assert store.result_sha(0, "model", "n1") == sha == store.result_shas(0, "model")["n1"]
    with pytest.raises(KeyError):
        store.result_sha(0, "model", "n9")
    plan = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT sha FROM results WHERE iteration = 0 AND tag = 'model' AND node = 'n1'"
    ).fetchall()
    assert "results_by_tag" in str(plan)  # an index lookup, not a scan of the iteration
    store.close()


def test_the_coordinator_host_reads_one_node_without_listing_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore.create(tmp_path, "run", {})
    fill(store, 3)
    host = CoordinatorHost(store, "run", 0, "agg", {}, exclude=frozenset({"n2"}))
    monkeypatch.setattr(store, "result_shas", lambda *a: pytest.fail("every node's shas were read"))
    assert codec.decode(host.get_result("model", "n1").read_bytes()) == 1
    with pytest.raises(KeyError):
        host.get_result("model", "n2")  # excluded
    with pytest.raises(KeyError):
        host.get_result("model", "n7")
    store.close()
