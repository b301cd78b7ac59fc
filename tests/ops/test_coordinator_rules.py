"""The coordinator's new rules as plain code: --min-nodes as a minimum and who is not eligible,
an operator's stop, a reconnection after our will fired, a node's job book on "lost", and task
errors grouped on the console."""

from __future__ import annotations

import io

from rich.console import Console

from edge_node.events import AssignmentArrived, SwarmEnded
from edge_node.jobs import Cancel, Dispatch, JobBook, Reject
from manta_mqtt.coordinator.engine import Phase, Reconnected, RunState, StopRequested, Timing
from manta_mqtt.coordinator.engine import actions as act
from manta_mqtt.coordinator.options import RunSummary
from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.protocol.messages import Assignment, CodeRef, SwarmState

from ..engine_world import World, assigned, fl_graph, only


def end(world: World) -> act.SwarmEnded:
    (ended,) = only(world.log, act.SwarmEnded)
    return ended


def strict(min_nodes: int) -> World:
    timing = Timing(wait_nodes=30.0, min_nodes=min_nodes, stale_after=20.0, start_with_fewer=False)
    world = World(fl_graph(), timing)
    world.start()
    return world


# --- --min-nodes ------------------------------------------------------------------------------------


def test_min_nodes_not_met_fails_naming_who_is_online_and_why_others_are_not() -> None:
    world = strict(5)
    world.online("n1", "n2", "n3")
    world.online("nodata", datasets=[])
    world.online("ghost")
    world.offline("gone")
    world.tick(25.0)
    world.online("n1", "n2", "n3")  # heartbeats; ghost has been silent for 25 s
    world.online("nodata", datasets=[])
    assert not assigned(world.tick(4.9))
    out = world.tick(0.1)
    assert not assigned(out)
    assert end(world) == act.SwarmEnded(
        RunState.FAILED,
        "only 3 of 5 eligible node(s) online within 30 s (n1, n2, n3); not eligible: ghost (stale: no status "
        "for 30 s), gone (offline), nodata (lacks numbers.npy) (--start-with-fewer starts anyway)",
    )
    assert not world.engine.started


def test_min_nodes_met_names_the_nodes_that_are_not_eligible() -> None:
    world = strict(2)
    world.online("nodata", datasets=[])
    out = world.online("n1", "n2")
    assert act.Info("2 node(s) online: n1, n2, nodata") in out
    assert act.Info("not eligible for worker: nodata (lacks numbers.npy)") in out
    assert assigned(out) == {"n1": 0, "n2": 0} and world.engine.started


def test_start_with_fewer_keeps_the_old_behaviour() -> None:
    world = World(fl_graph(), Timing(wait_nodes=30.0, min_nodes=3, start_with_fewer=True))
    world.start()
    world.online("n1")
    out = world.tick(30.0)
    assert act.Warn("only 1 of 3 node(s) online; starting anyway") in out
    assert assigned(out) == {"n1": 0}


def test_exit_codes() -> None:
    def code(state: str, **kw: object) -> int:
        return RunSummary("s", state, "", 0, __import__("pathlib").Path("."), **kw).exit_code  # type: ignore[arg-type]

    assert code("completed") == code("stopped") == 0
    assert code("failed") == 1
    assert code("failed", started=False) == 4
    assert code("interrupted", signal=2) == 130 and code("interrupted", signal=15) == 143


# --- an operator's stop -----------------------------------------------------------------------------


def test_a_stop_while_waiting_for_nodes_ends_at_once() -> None:
    world = strict(2)
    out = world.feed(StopRequested("alice", "wrong fleet"))
    assert end(world) == act.SwarmEnded(RunState.STOPPED, "stopped by alice: wrong fleet")
    assert not only(out, act.RecordGlobals)  # nothing ran


def test_a_stop_during_a_node_step_ends_the_swarm_after_it() -> None:
    world = World(fl_graph(), Timing(wait_nodes=30.0, min_nodes=2))
    world.start()
    world.online("n1", "n2")
    out = world.feed(StopRequested("", ""))
    assert act.Info("stop requested by an operator: the swarm ends after the step under way") in out
    assert not only(out, act.SwarmEnded)
    world.result("n1")
    out = world.result("n2")
    assert act.StepDone(0, "worker", 2, 2) in out
    assert not only(out, act.RunLocal)  # the aggregator does not start
    assert act.RecordGlobals(0, world.engine.global_refs) in out
    assert end(world) == act.SwarmEnded(RunState.STOPPED, "stopped by an operator")
    assert world.engine.phase is Phase.ENDED


def test_the_stop_commands_default_reason_is_not_repeated() -> None:
    world = strict(2)
    world.feed(StopRequested("bob", "stopped by bob"))
    assert end(world).reason == "stopped by bob"


# --- a reconnection: our will said "lost" -------------------------------------------------------------


def test_after_a_reconnection_the_state_is_published_again_and_missing_nodes_asked_again() -> None:
    world = World(fl_graph(), Timing(wait_nodes=30.0, min_nodes=2))
    world.start()
    world.online("n1", "n2")
    world.result("n1")
    out = world.feed(Reconnected())
    assert assigned(out) == {"n2": 0}  # n1 answered; n2 dropped its job on "lost"
    (state,) = only(out, act.PublishState)
    assert (state.state, state.step, state.done, state.expected) == (RunState.RUNNING, "worker", 1, 2)


# --- a node's job book ------------------------------------------------------------------------------


def assignment(swarm: str, iteration: int = 0) -> Assignment:
    return Assignment(swarm, iteration, "worker", "n1", 0, CodeRef("a" * 64, "main"), {}, 60.0, 0)


def test_lost_and_interrupted_cancel_jobs_but_a_resumed_swarm_is_welcome() -> None:
    assert SwarmState.RESUMABLE == ("interrupted", "lost")
    for state in SwarmState.RESUMABLE:
        book = JobBook()
        (dispatch,) = book.handle(AssignmentArrived(assignment("sw")))
        assert isinstance(dispatch, Dispatch)
        (cancel,) = book.handle(SwarmEnded("sw", state))
        assert isinstance(cancel, Cancel) and cancel.job is dispatch.job and cancel.why == f"swarm sw is {state}"
        assert not book.is_finished("sw")
        assert isinstance(book.handle(AssignmentArrived(assignment("sw", 1)))[0], Dispatch)


def test_a_swarm_that_ended_still_refuses_work() -> None:
    book = JobBook()
    book.handle(SwarmEnded("sw", "stopped"))
    (reject,) = book.handle(AssignmentArrived(assignment("sw")))
    assert isinstance(reject, Reject) and reject.reason == "late"


# --- task errors on the console -----------------------------------------------------------------------


TRACEBACK = 'Traceback (most recent call last):\n  File "/data/{node}/work/worker.py", line 9\nValueError: bad data'


def test_the_same_error_on_several_nodes_is_shown_once() -> None:
    buffer = io.StringIO()
    progress = ConsoleProgress(Console(file=buffer, width=200, highlight=False))
    progress.step_started(0, "worker", ["n1", "n2", "n3", "n4"])
    for node in ("n1", "n2", "n3"):
        progress.task_error("worker", node, TRACEBACK.format(node=node) + f" at 0x7f{node[1]}a0")
    progress.task_error("worker", "n4", "MemoryError")
    progress.step_finished(0, "worker", 0, 4, {})
    text = buffer.getvalue()
    assert text.count("Traceback") == 1 and text.count("ValueError: bad data") == 1
    assert "worker failed on n1:" in text and "worker failed on n4:\nMemoryError" in text
    assert "warning: worker: same error on n2, n3" in text
    assert text.count("hint: ") == 1


def test_the_final_line_does_not_repeat_a_traceback_shown_above() -> None:
    buffer = io.StringIO()
    progress = ConsoleProgress(Console(file=buffer, width=200, highlight=False))
    progress.task_error("worker", "n1", TRACEBACK.format(node="n1"))
    progress.finished("failed", "task worker: 0 of 1 node(s) succeeded, 1 needed; first error:\n" + TRACEBACK, 1)
    last = buffer.getvalue().strip().splitlines()[-1]
    assert last == (
        "swarm failed after 1 iteration(s): task worker: 0 of 1 node(s) succeeded, 1 needed; first error: "
        "ValueError: bad data (traceback above)"
    )
