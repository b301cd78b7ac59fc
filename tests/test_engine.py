"""The coordinator's engine, rule by rule, with no broker, no store and no clock."""

from __future__ import annotations

import threading

import pytest

from manta_mqtt.coordinator.engine import (
    Checkpoint,
    OpenStep,
    Phase,
    RunState,
    StatusChanged,
    TaskFinished,
    TaskWrites,
    Timing,
)
from manta_mqtt.coordinator.engine import actions as act
from manta_mqtt.ownership import WrongThread
from manta_mqtt.protocol import codec
from manta_mqtt.protocol.chunking import sha256
from manta_mqtt.protocol.messages import NodeStatus
from tests.engine_world import INITIAL, SWARM, World, assigned, blob, fl_graph, only, ref


def running(**worker: object) -> World:
    """Two nodes online, the first worker step open on both."""
    timing = Timing(grace=10.0, reconnect_grace=5.0, wait_nodes=30.0, min_nodes=2, stale_after=1000.0)
    world = World(fl_graph(**worker), timing)
    world.start()
    world.online("n1", "n2")
    assert world.engine.phase is Phase.ON_NODES
    return world


def end(world: World) -> act.SwarmEnded:
    ended = only(world.log, act.SwarmEnded)
    assert len(ended) == 1
    return ended[0]


def reasons(actions: list[act.Action]) -> list[str]:
    return [r.reason for r in only(actions, act.Reject)]


# --- starting -----------------------------------------------------------------------------------


def test_start_publishes_node_code_and_state_then_waits_for_nodes() -> None:
    world = World(fl_graph())
    out = world.start()
    assert only(out, act.PublishBlob) == [act.PublishBlob(blob("code-worker"))]  # not the coordinator's code
    assert only(out, act.SaveCheckpoint)[0].checkpoint.iteration == 0
    assert only(out, act.PublishState) == [act.PublishState(RunState.RUNNING, 0)]
    assert only(out, act.Info) == [act.Info("waiting for 1 eligible node(s)...")]
    assert not only(out, act.Assign)
    assert world.engine.next_timer() == world.now + 30.0


def test_gathering_waits_for_min_nodes_with_the_datasets() -> None:
    world = World(fl_graph(), Timing(wait_nodes=30.0, min_nodes=2))
    world.start()
    assert not assigned(world.online("n1"))
    assert not assigned(world.online("nodata", datasets=[]))  # not eligible: lacks numbers.npy
    out = world.online("n2")
    assert act.Info("2 node(s) online: n1, n2, nodata") in out  # eligible count, every name (issue 8)
    assert assigned(out) == {"n1": 0, "n2": 0}
    assert only(out, act.PublishBlob) == [act.PublishBlob(INITIAL["model"])]  # globals before the assignments


def test_gathering_starts_with_fewer_at_the_deadline() -> None:
    world = World(fl_graph(), Timing(wait_nodes=30.0, min_nodes=3))
    world.start()
    world.online("n1")
    assert not assigned(world.tick(29.9))
    out = world.tick(0.1)
    assert act.Warn("only 1 of 3 node(s) online; starting anyway") in out
    assert assigned(out) == {"n1": 0}


def test_gathering_fails_when_no_node_comes() -> None:
    world = World(fl_graph(), Timing(wait_nodes=30.0))
    world.start()
    world.tick(30.0)
    assert end(world) == act.SwarmEnded(RunState.FAILED, "no eligible node came online within 30 s")
    assert world.engine.ended and world.online("n1") == []


# --- a whole iteration ----------------------------------------------------------------------------


def test_an_iteration_runs_workers_then_coordinator_tasks_in_order() -> None:
    world = running()
    out = world.result("n1")
    metrics = codec.encode({"acc": 0.5})
    assert act.KeepValue(metrics) in out
    assert act.RecordResult(0, "worker", "n1", "metrics", sha256(metrics)) in out
    assert act.RecordRun(0, "worker", "n1", True, "", 1.5) in out
    assert act.NodeDone("n1", True) in out
    assert act.PublishState(RunState.RUNNING, 0, "worker", done=1, expected=2) in out
    assert not only(out, act.StepDone)
    out = world.result("n2")
    assert act.StepDone(0, "worker", 2, 2) in out
    assert only(out, act.SaveCheckpoint)[0].checkpoint.done_steps == ["worker"]
    assert only(out, act.RunLocal) == [act.RunLocal("aggregator", 0, dict(INITIAL))]
    assert world.engine.phase is Phase.LOCAL


def test_coordinator_tasks_write_globals_and_schedule_the_next_iteration() -> None:
    world = running()
    world.result("n1")
    world.result("n2")
    model = blob("model-1")
    out = world.finish_local(writes=TaskWrites(results={"summary": blob("s")}, global_refs={"model": model}))
    assert act.RecordResult(0, "aggregator", "coordinator", "summary", blob("s")) in out
    assert act.StepDone(0, "aggregator", 0, 0) in out
    assert only(out, act.RunLocal) == [act.RunLocal("scheduler", 0, {"model": model})]
    out = world.finish_local(writes=TaskWrites(schedule=[("worker", ["n2"])]))
    assert act.RecordGlobals(0, {"model": model}) in out
    cp = only(out, act.SaveCheckpoint)[-1].checkpoint
    assert (cp.iteration, cp.starts, cp.forced, cp.done_steps) == (1, ["worker"], {"worker": ["n2"]}, [])
    keep = frozenset({blob("code-worker"), blob("code-aggregator"), blob("code-scheduler"), model})
    assert act.ClearBlobs(keep) in out
    assert assigned(out) == {"n2": 0}  # only the node the scheduler named
    assert only(out, act.Assign)[0].assignment.global_refs == {"model": model}


def test_stop_swarm_ends_the_run_after_the_iteration() -> None:
    world = running()
    world.result("n1")
    world.result("n2")
    world.finish_local()
    world.finish_local(writes=TaskWrites(stop=True, schedule=[("worker", ["n1"])]))
    assert end(world) == act.SwarmEnded(RunState.STOPPED, "stopped by task scheduler")


def test_no_schedule_completes_and_an_unknown_alias_fails() -> None:
    world = running()
    world.result("n1")
    world.result("n2")
    world.finish_local()
    world.finish_local()
    assert end(world) == act.SwarmEnded(RunState.COMPLETED, "no task scheduled another iteration")
    world = running()
    world.result("n1")
    world.result("n2")
    world.finish_local()
    world.finish_local(writes=TaskWrites(schedule=[("nope", ["n1"])]))
    assert end(world) == act.SwarmEnded(RunState.FAILED, "schedule_next_iter named unknown task 'nope'")


def test_max_iterations_stops_the_run() -> None:
    world = World(fl_graph(), Timing(max_iterations=1))
    world.start()
    world.online("n1")
    world.result("n1")
    world.finish_local()
    world.finish_local(writes=TaskWrites(schedule=[("worker", ["n1"])]))
    assert end(world) == act.SwarmEnded(RunState.STOPPED, "reached the limit of 1 iterations")


def test_a_failed_coordinator_task_fails_the_swarm_and_its_writes_are_dropped() -> None:
    world = running()
    world.result("n1")
    world.result("n2")
    out = world.finish_local(ok=False, writes=TaskWrites(results={"x": blob("x")}), error="Traceback: boom")
    assert not only(out, act.RecordResult)
    assert act.RecordRun(0, "aggregator", "coordinator", False, "Traceback: boom", 0.5) in out
    assert end(world) == act.SwarmEnded(RunState.FAILED, "task aggregator failed on the coordinator:\nTraceback: boom")


def test_a_task_end_that_was_not_asked_for_is_ignored() -> None:
    world = running()
    out = world.feed(TaskFinished("aggregator", True))
    assert only(out, act.Log) and not only(out, act.StepDone)


# --- judging results ------------------------------------------------------------------------------


def test_duplicates_forgeries_strangers_and_other_swarms_change_nothing() -> None:
    world = running()
    world.online("n3")
    world.result("n1")
    assert reasons(world.result("n1")) == ["duplicate"]
    assert reasons(world.result("n2", topic="n1")) == ["forged"]
    assert reasons(world.result("n3")) == ["unexpected"]
    assert reasons(world.result("n2", swarm="other-swarm")) == ["unknown_swarm"]
    assert reasons(world.result("n2", task="aggregator")) == ["late"]
    assert [r.node for r in only(world.log, act.RecordRun)] == ["n1"]


def test_a_failed_result_carries_nothing_but_its_outcome() -> None:
    world = running()
    out = world.result(
        "n1", status="failed", global_writes={"model": b"evil"}, schedule=[("worker", ["n1"])], stop=True
    )
    assert not only(out, act.RecordResult) and not only(out, act.KeepValue)
    assert act.RecordRun(0, "worker", "n1", False, "boom", 1.5) in out
    assert act.Warn("worker failed on n1:\nboom") in out
    assert world.engine.global_refs == INITIAL
    assert world.engine.run.decisions.schedule == {} and not world.engine.run.decisions.stop_by


def test_results_that_come_before_their_step_are_judged_when_it_opens() -> None:
    world = World(fl_graph())
    world.start()
    assert world.result("n1") == []  # e.g. queued by the broker for a restarting coordinator
    out = world.online("n1")
    assert act.RecordRun(0, "worker", "n1", True, "", 1.5) in out
    assert act.StepDone(0, "worker", 1, 1) in out


def test_a_result_waits_for_its_uploads() -> None:
    world = running()
    model = b"weights" * 100
    out = world.result("n1", results={"model": ref(model)}, missing=[sha256(model)])
    assert not only(out, act.RecordRun)
    assert world.uploaded(blob("other")) == []
    out = world.uploaded(sha256(model))
    assert act.RecordResult(0, "worker", "n1", "model", sha256(model)) in out
    assert not only(out, act.KeepValue)  # the upload is already stored


def test_a_result_replayed_with_its_upload_still_missing_is_parked() -> None:
    world = World(fl_graph())
    world.start()
    model = b"m" * 10
    world.result("n1", results={"model": ref(model)}, missing=[sha256(model)])
    out = world.online("n1")
    assert not only(out, act.RecordRun)
    assert act.StepDone(0, "worker", 1, 1) in world.uploaded(sha256(model))


# --- what a node may write -----------------------------------------------------------------------


def test_by_default_a_node_sets_no_global_and_makes_no_control_request() -> None:
    """A compromised node cannot rewrite the swarm's globals or steer it: those parts of its
    result are refused and counted, its results still count, the step goes on."""
    world = running()
    out = world.result(
        "n1", global_writes={"model": b"evil", "rounds": b"1e9"}, schedule=[("worker", ["n1"])], stop=True
    )
    assert reasons(out) == ["forbidden"] * 4
    assert only(out, act.Reject)[0].detail == "results from n1 for worker@0: may not set global 'model'"
    assert act.RecordRun(0, "worker", "n1", True, "", 1.5) in out and only(out, act.RecordResult)
    assert world.engine.global_refs == INITIAL
    assert world.engine.run.decisions.schedule == {} and not world.engine.run.decisions.stop_by
    assert act.StepDone(0, "worker", 2, 2) in world.result("n2")


def test_a_task_may_let_nodes_set_named_globals() -> None:
    world = running(globals_from_nodes=["lr"])
    out = world.result("n1", global_writes={"lr": codec.encode(0.1), "model": b"evil"})
    assert reasons(out) == ["forbidden"]
    assert world.engine.global_refs == {**INITIAL, "lr": sha256(codec.encode(0.1))}
    world = running(globals_from_nodes=True)
    world.result("n1", global_writes={"model": codec.encode(1)})
    assert world.engine.global_refs == {"model": sha256(codec.encode(1))}


def test_a_task_may_let_nodes_make_control_requests() -> None:
    world = running(control_from_nodes=True)
    out = world.result("n1", schedule=[("worker", ["n1"])], stop=True)
    assert reasons(out) == []
    assert world.engine.run.decisions.schedule == {"worker": ["n1"]}
    assert world.engine.run.decisions.stop_by == "worker@n1"


@pytest.mark.parametrize("value", ["lr", [""], [3]])
def test_globals_from_nodes_must_be_a_bool_or_tags(value: object) -> None:
    with pytest.raises(ValueError):
        fl_graph(globals_from_nodes=value)


# --- deadlines, stragglers and lost nodes --------------------------------------------------------


def test_a_straggler_is_recorded_then_its_late_result_kept_apart_once() -> None:
    world = running(quorum=1, deadline=5.0)
    world.result("n1", after=1.0)
    assert not only(world.tick(3.9), act.StepDone)
    out = world.tick(0.1)
    assert act.RecordRun(0, "worker", "n2", False, "missed the step deadline (straggler)", 0.0) in out
    assert act.StepDone(0, "worker", 1, 2) in out
    world.finish_local()  # the aggregator ran without n2
    out = world.result("n2", iteration=0)
    assert only(out, act.RecordLateResult)[0].node == "n2"
    assert [r.detail for r in only(out, act.Reject)] == ["results from n2 for worker@0 (recorded as late)"]
    assert reasons(world.result("n2", iteration=0)) == ["late"]
    assert not only(world.log, act.RecordResult)[1:]  # only n1's result counts for the step


def test_a_lost_node_may_come_back_and_report() -> None:
    world = running()
    world.result("n1")
    out = world.offline("n2")
    assert act.RecordRun(0, "worker", "n2", False, "node went offline during the step", 0.0) in out
    assert not only(out, act.StepDone)
    assert world.engine.next_timer() == world.now + 5.0  # the reconnect grace
    assert assigned(world.online("n2")) == {"n2": 0}  # asked again
    assert act.StepDone(0, "worker", 2, 2) in world.result("n2")


def test_a_restarted_node_is_asked_again() -> None:
    world = running()
    assert assigned(world.online("n1", session=1)) == {}  # a status repeated: nothing
    assert assigned(world.online("n1", session=2)) == {"n1": 0}  # a new session: it lost its task


def test_a_node_that_reconnected_is_asked_again_and_its_late_will_is_ignored() -> None:
    """A new ``link`` (the node reconnected, maybe to another cluster member that never had its
    session): what was sent to it may be lost, so it is asked again. The will of its earlier
    connection, delivered after that (a cluster member delivers it late), changes nothing."""
    world = running()
    status = NodeStatus("n1", "online", ["numbers.npy"], 1, link=1)
    world.feed(StatusChanged(status))
    assert assigned(world.feed(StatusChanged(status))) == {}  # a heartbeat of the same connection
    assert assigned(world.feed(StatusChanged(NodeStatus("n1", "online", ["numbers.npy"], 1, link=2)))) == {"n1": 0}
    out = world.feed(StatusChanged(NodeStatus("n1", "offline", ["numbers.npy"], 1, link=1)))
    assert not only(out, act.RecordRun) and not only(out, act.Warn)
    assert world.engine.run.fleet["n1"].state == "online"
    assert act.StepDone(0, "worker", 2, 2) in (world.result("n2") + world.result("n1"))


def test_past_the_hard_deadline_missing_nodes_fail_and_on_short_fail_ends_the_swarm() -> None:
    world = running(on_short="fail", quorum=None)
    world.result("n1")
    assert world.engine.next_timer() == world.now + 110.0  # timeout 100 + grace 10
    out = world.tick(110.0)
    assert act.RecordRun(0, "worker", "n2", False, "no result before the step deadline", 0.0) in out
    reason = "task worker: 1 of 2 node(s) succeeded, 2 needed; first error:\nno result before the step deadline"
    assert end(world) == act.SwarmEnded(RunState.FAILED, reason)


def test_on_short_wait_gives_lost_nodes_max_wait_more() -> None:
    world = running(on_short="wait", quorum=None, max_wait=20.0)
    world.result("n1")
    world.offline("n2")
    assert not only(world.tick(129.0), act.SwarmEnded)
    world.tick(1.0)
    assert end(world).state is RunState.FAILED


def test_on_short_retry_asks_other_nodes_and_keeps_successes() -> None:
    world = running(on_short="retry", quorum=2, retries=1)
    world.online("n3")
    world.result("n1")
    out = world.result("n2", status="failed")
    assert act.Warn("worker: 1 of 2 needed succeeded; retrying on 2 node(s)") in out
    assert assigned(out) == {"n2": 1, "n3": 1}
    assert only(out, act.SaveCheckpoint)[-1].checkpoint.current == OpenStep("worker", ["n1", "n2", "n3"], 1)
    assert not only(world.result("n3"), act.StepDone)  # n2 is still working on its second attempt
    assert act.StepDone(0, "worker", 3, 3) in world.result("n2")


def test_on_short_retry_gives_up_after_its_retries() -> None:
    world = running(on_short="retry", quorum=2, retries=1)
    world.result("n1", status="failed")
    world.result("n2", status="failed")  # retry 1 on n1, n2
    world.result("n1", status="failed")
    world.result("n2", status="failed")
    assert end(world).state is RunState.FAILED


def test_a_node_that_falls_silent_is_lost_and_the_step_goes_on() -> None:
    """A node whose status stops coming (a retained status of a dead node, or a fake one) is
    treated as gone after stale_after, instead of holding the step until its hard deadline."""
    world = World(fl_graph(quorum=1), Timing(grace=10.0, reconnect_grace=5.0, min_nodes=2, stale_after=90.0))
    world.start()
    world.online("n1", "n2")
    world.result("n1", after=1.0)
    world.online("n1", after=29.0)  # n1's heartbeats keep coming; n2's do not
    world.online("n1", after=30.0)
    assert world.engine.next_timer() == 1090.0
    out = world.tick(30.0)
    assert act.RecordRun(0, "worker", "n2", False, "no status from the node for 90 s", 0.0) in out
    assert not only(out, act.StepDone)  # it may still come back within the reconnect grace
    assert act.StepDone(0, "worker", 1, 2) in world.tick(5.0)


def test_a_silent_node_is_not_chosen_and_a_heartbeat_keeps_a_node_eligible() -> None:
    world = World(fl_graph(), Timing(min_nodes=1, stale_after=90.0))
    world.start()
    world.online("ghost")  # e.g. a retained status nobody refreshes
    assert assigned(world.log) == {"ghost": 0}
    world.result("ghost")
    world.finish_local()
    world.online("n1", after=89.0)
    world.tick(2.0)  # ghost was last heard of 91 s ago, n1 2 s ago
    out = world.finish_local(writes=TaskWrites(schedule=[("worker", ["ghost", "n1"])]))
    assert act.Warn("scheduled node(s) not available for worker: ghost") in out
    assert assigned(out) == {"n1": 0}


# --- quarantine: a result that makes the aggregator fail ------------------------------------------


def four_nodes_done(**aggregator: object) -> World:
    world = World(fl_graph(aggregator=dict(aggregator)), Timing(min_nodes=4, stale_after=1000.0))
    world.start()
    world.online("n1", "n2", "n3", "n4")
    for node in ("n1", "n2", "n3", "n4"):
        world.result(node)
    return world


def probe(world: World, ok: bool) -> act.RunLocal:
    """Answer the running probe; return the next coordinator run asked for."""
    out = world.finish_local(ok=ok, error="" if ok else "ValueError: bad shape")
    return only(out, act.RunLocal)[0]


def test_the_nodes_whose_results_make_the_aggregator_fail_are_quarantined() -> None:
    world = four_nodes_done(on_error="quarantine")
    out = world.finish_local(ok=False, error="ValueError: bad shape")
    assert only(out, act.Warn)[0].text.startswith("aggregator failed; looking for the node(s)")
    assert only(out, act.RunLocal)[0].only == {"n1", "n2"}
    assert probe(world, ok=False).only == {"n1"}  # the first half fails: split it
    assert probe(world, ok=True).only == {"n2"}
    assert probe(world, ok=False).only == {"n3", "n4"}  # n2 is guilty; the second half next
    final = probe(world, ok=True)
    assert (final.only, final.exclude) == (None, {"n2"})  # the real run, without n2
    assert act.Quarantine(0, "aggregator", "n2", "ValueError: bad shape") in world.log
    out = world.finish_local()
    assert act.StepDone(0, "aggregator", 0, 0) in out
    assert only(out, act.RunLocal)[0].exclude == {"n2"}  # the scheduler does not see n2 either
    assert world.engine.checkpoint().quarantined == ["n2"]
    out = world.finish_local(writes=TaskWrites(schedule=[("worker", ["n1", "n2"])]))
    assert assigned(out) == {"n1": 0}  # and n2 is chosen for nothing more


def test_quarantine_gives_up_when_every_node_or_no_single_node_is_to_blame() -> None:
    world = four_nodes_done(on_error="quarantine")
    world.finish_local(ok=False)
    runs = 0
    while not world.engine.ended:  # every probe fails: n1, n2 | n1 | n2 | n3, n4 | n3 | n4
        world.finish_local(ok=False)
        runs += 1
    assert runs == 6
    assert end(world).reason.startswith("task aggregator fails on every node's results alone")
    world = four_nodes_done(on_error="quarantine")
    world.finish_local(ok=False)
    probe(world, ok=True)
    world.finish_local(ok=True)
    assert end(world).reason.startswith("task aggregator failed, and on no single node's results alone")


def test_without_quarantine_a_failing_aggregator_fails_the_swarm() -> None:
    world = four_nodes_done()
    world.finish_local(ok=False, error="ValueError: bad shape")
    assert end(world) == act.SwarmEnded(
        RunState.FAILED, "task aggregator failed on the coordinator:\nValueError: bad shape"
    )


def test_quarantine_is_only_for_coordinator_tasks() -> None:
    with pytest.raises(ValueError, match="quarantine"):
        fl_graph(on_error="quarantine")
    with pytest.raises(ValueError, match="on_error"):
        fl_graph(aggregator={"on_error": "ignore"})


# --- choosing nodes and resuming --------------------------------------------------------------------


def test_scheduled_nodes_that_are_gone_are_reported_once() -> None:
    world = running()
    world.result("n1")
    world.result("n2")
    world.finish_local()
    world.offline("n2")
    world.tick(5.0)  # longer ago than the reconnect grace
    out = world.finish_local(writes=TaskWrites(schedule=[("worker", ["n1", "n2"])]))
    assert act.Warn("scheduled node(s) not available for worker: n2") in out
    assert assigned(out) == {"n1": 0}


def scheduled_just_after_n2_went_offline() -> World:
    """n2's will came moments before the scheduler named it (a node moving to another cluster
    member: its new status may arrive after its result did)."""
    world = running()
    world.result("n1")
    world.result("n2")
    world.finish_local()
    world.offline("n2")
    world.tick(1.0)
    out = world.finish_local(writes=TaskWrites(schedule=[("worker", ["n1", "n2"])]))
    assert act.Info("worker waits up to 4 s for n2, offline moments ago") in out  # reconnect_grace 5 s
    assert not assigned(out) and not only(out, act.Warn)
    assert world.engine.next_timer() == world.now + 4.0
    return world


def test_a_scheduled_node_lost_moments_ago_is_waited_for_up_to_the_reconnect_grace() -> None:
    world = scheduled_just_after_n2_went_offline()
    assert assigned(world.online("n2", after=2.0)) == {"n1": 0, "n2": 0}


def test_a_scheduled_node_lost_moments_ago_that_stays_away_is_left_out_after_the_grace() -> None:
    world = scheduled_just_after_n2_went_offline()
    assert not assigned(world.tick(3.9))
    out = world.tick(0.1)
    assert act.Warn("scheduled node(s) not available for worker: n2") in out
    assert assigned(out) == {"n1": 0}


def all_gone_before_iteration_1() -> World:
    """Iteration 0 done; both nodes went offline before the scheduler named n1 for iteration 1."""
    world = running()
    world.result("n1")
    world.result("n2")
    world.finish_local()
    world.offline("n1")
    world.offline("n2")
    world.finish_local(writes=TaskWrites(schedule=[("worker", ["n1"])]))
    assert world.engine.phase is Phase.CHOOSING
    return world


def test_a_step_waits_for_an_eligible_node() -> None:
    world = all_gone_before_iteration_1()
    assert assigned(world.online("n1")) == {"n1": 0}


def test_a_step_without_an_eligible_node_fails_after_the_wait() -> None:
    world = all_gone_before_iteration_1()
    assert not only(world.tick(29.9), act.SwarmEnded)
    world.tick(0.1)
    assert end(world) == act.SwarmEnded(RunState.FAILED, "no eligible node online for task worker")


def test_resuming_an_open_step_asks_only_the_nodes_without_a_success() -> None:
    checkpoint = Checkpoint(
        iteration=3,
        starts=["worker"],
        global_refs=dict(INITIAL),
        current=OpenStep("worker", ["n1", "n2"], 1),
    )
    world = World(fl_graph(), checkpoint=checkpoint, resumed={"n1": 2.0})
    world.start()
    out = world.online("n1", "n2")
    assert assigned(out) == {"n2": 1}
    assert act.StepDone(3, "worker", 2, 2) in world.result("n2")


def test_a_resumed_run_skips_the_steps_it_completed() -> None:
    checkpoint = Checkpoint(iteration=2, starts=["worker"], done_steps=["worker"], global_refs=dict(INITIAL))
    world = World(fl_graph(), checkpoint=checkpoint)
    world.start()
    out = world.online("n1")
    assert only(out, act.RunLocal) == [act.RunLocal("aggregator", 2, dict(INITIAL))]


# --- the engine itself ------------------------------------------------------------------------------


def test_next_timer_is_always_in_the_future_or_none() -> None:
    world = running(deadline=5.0)
    assert world.engine.next_timer() == world.now + 5.0
    world.result("n1")
    world.result("n2")
    assert world.engine.next_timer() is None  # a coordinator task runs: no deadline of ours


def test_the_engine_belongs_to_one_thread() -> None:
    world = running()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            world.tick(0.0)
        except WrongThread as exc:
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(errors) == 1


def test_checkpoints_survive_json() -> None:
    import json

    world = running(on_short="retry", quorum=2)
    world.result("n1")
    cp = world.engine.checkpoint()
    assert Checkpoint.from_dict(json.loads(json.dumps(cp.to_dict()))) == cp
    assert cp.current == OpenStep("worker", ["n1", "n2"], 0)
    assert world.engine.plan.swarm == SWARM


@pytest.mark.parametrize("phase_events", [0, 1, 2])
def test_an_ended_engine_takes_no_more_events(phase_events: int) -> None:
    world = World(fl_graph(), Timing(wait_nodes=1.0))
    world.start()
    world.tick(1.0)
    assert world.engine.ended
    assert world.online("n1") == [] and world.result("n1") == [] and world.tick(phase_events) == []
