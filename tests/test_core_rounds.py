"""Round state with no I/O: StepRound verdicts and bookkeeping, Decisions, and decide()."""

from __future__ import annotations

from pathlib import Path

import pytest

from manta_mqtt.coordinator.engine.decisions import Decisions, NextIteration, decide
from manta_mqtt.coordinator.engine.rounds import NodeOutcome, StepRound, Verdict
from manta_mqtt.protocol.messages import ResultEnvelope
from manta_mqtt.swarm import Module, Task
from manta_mqtt.swarm.graph import SwarmGraph


def envelope(
    node: str = "n1", *, swarm: str = "sw", iteration: int = 3, task: str = "worker", status: str = "ok"
) -> ResultEnvelope:
    return ResultEnvelope(swarm=swarm, iteration=iteration, task=task, node=node, attempt=0, status=status)


def step(nodes: tuple[str, ...] = ("n1", "n2", "n3"), deadline: float = 100.0) -> StepRound:
    return StepRound(swarm="sw", iteration=3, task="worker", nodes=list(nodes), deadline=deadline)


# --- StepRound.judge -------------------------------------------------------------------------


def test_judge_accepted() -> None:
    """A result for this step from an asked node, on its own topic, is accepted."""
    assert step().judge(envelope("n1"), "n1") is Verdict.ACCEPTED


def test_judge_duplicate_after_record() -> None:
    """Once a node's outcome is recorded, another envelope from it is a duplicate."""
    rnd = step()
    assert rnd.record("n1", NodeOutcome(True))
    assert rnd.judge(envelope("n1"), "n1") is Verdict.DUPLICATE
    assert rnd.judge(envelope("n2"), "n2") is Verdict.ACCEPTED


@pytest.mark.parametrize(("iteration", "task"), [(2, "worker"), (4, "worker"), (3, "aggregator"), (0, "other")])
def test_judge_late(iteration: int, task: str) -> None:
    """A result for another iteration or another task of this swarm is late."""
    assert step().judge(envelope("n1", iteration=iteration, task=task), "n1") is Verdict.LATE


def test_judge_unexpected() -> None:
    """A result for this step from a node that was not asked is unexpected."""
    assert step(("n1", "n2")).judge(envelope("n9"), "n9") is Verdict.UNEXPECTED


def test_judge_forged_node_mismatch() -> None:
    """An envelope naming another node than the topic it came on is forged (even if both were asked)."""
    rnd = step()
    assert rnd.judge(envelope("n2"), "n1") is Verdict.FORGED
    assert rnd.judge(envelope("n1"), "n9") is Verdict.FORGED


def test_judge_forged_other_swarm() -> None:
    """An envelope for another swarm is forged, whatever else matches."""
    assert step().judge(envelope("n1", swarm="other"), "n1") is Verdict.FORGED


def test_judge_forged_takes_precedence() -> None:
    """Forgery is checked before lateness, membership and duplicates."""
    rnd = step()
    rnd.record("n1", NodeOutcome(True))
    assert rnd.judge(envelope("n1", iteration=9), "n2") is Verdict.FORGED
    assert rnd.judge(envelope("n1", swarm="x", iteration=9), "n1") is Verdict.FORGED


def test_judge_late_before_unexpected_and_duplicate() -> None:
    """A result for another step is late even from an unasked or already-recorded node."""
    rnd = step()
    rnd.record("n1", NodeOutcome(True))
    assert rnd.judge(envelope("n1", iteration=2), "n1") is Verdict.LATE
    assert rnd.judge(envelope("n9", iteration=2), "n9") is Verdict.LATE


def test_judge_does_not_mutate() -> None:
    """Judging never records anything (recording is a separate decision)."""
    rnd = step()
    rnd.judge(envelope("n1"), "n1")
    assert rnd.outcomes == {}
    assert rnd.missing == ["n1", "n2", "n3"]


# --- StepRound bookkeeping -------------------------------------------------------------------


def test_record_is_idempotent() -> None:
    """Recording a node twice keeps the first outcome and reports False."""
    rnd = step()
    first = NodeOutcome(True, duration=1.5)
    assert rnd.record("n1", first) is True
    assert rnd.record("n1", NodeOutcome(False, "later failure")) is False
    assert rnd.outcomes == {"n1": first}


def test_record_unknown_node_refused() -> None:
    """An outcome for a node that is not part of the step is not recorded."""
    rnd = step(("n1",))
    assert rnd.record("n9", NodeOutcome(True)) is False
    assert rnd.outcomes == {}


def test_node_lost_marks_failure_once_and_welcomes_its_result() -> None:
    """A node going offline fails it once; its result is still taken while the step is open."""
    rnd = step()
    assert rnd.node_lost("n2") is True
    assert rnd.outcomes["n2"].ok is False
    assert "offline" in rnd.outcomes["n2"].error
    assert rnd.node_lost("n2") is False
    assert rnd.lost == {"n2"}
    assert rnd.record("n2", NodeOutcome(True)) is True
    assert rnd.outcomes["n2"].ok is True and rnd.lost == set()
    assert rnd.record("n2", NodeOutcome(True)) is False


def test_node_lost_after_success_keeps_success() -> None:
    """A node that already answered and then went offline still counts as succeeded."""
    rnd = step()
    rnd.record("n1", NodeOutcome(True))
    assert rnd.node_lost("n1") is False
    assert rnd.succeeded == ["n1"]


def test_node_lost_for_unasked_node() -> None:
    """Losing a node that was not asked is ignored."""
    rnd = step(("n1",))
    assert rnd.node_lost("n9") is False
    assert rnd.outcomes == {}


def test_expire_before_deadline_does_nothing() -> None:
    """Before the deadline nothing expires."""
    rnd = step(deadline=100.0)
    assert rnd.expire(99.999) == []
    assert rnd.outcomes == {}
    assert not rnd.complete


def test_expire_at_and_after_deadline_fails_missing() -> None:
    """At the deadline every missing node fails; answered nodes keep their outcome; it happens once."""
    rnd = step(deadline=100.0)
    rnd.record("n2", NodeOutcome(True))
    assert rnd.expire(100.0) == ["n1", "n3"]
    assert rnd.complete
    assert rnd.outcomes["n2"].ok is True
    assert rnd.outcomes["n1"].ok is False
    assert "deadline" in rnd.outcomes["n3"].error
    assert rnd.expire(1000.0) == []
    assert rnd.succeeded == ["n2"]


def test_complete_succeeded_missing() -> None:
    """missing lists unanswered nodes in step order; complete when none; succeeded only ok ones."""
    rnd = step()
    assert rnd.missing == ["n1", "n2", "n3"]
    assert not rnd.complete
    assert rnd.succeeded == []
    rnd.record("n3", NodeOutcome(True))
    rnd.record("n1", NodeOutcome(False, "boom"))
    assert rnd.missing == ["n2"]
    assert not rnd.complete
    assert rnd.succeeded == ["n3"]
    rnd.record("n2", NodeOutcome(True))
    assert rnd.missing == []
    assert rnd.complete
    assert sorted(rnd.succeeded) == ["n2", "n3"]


def test_empty_step_is_complete() -> None:
    """A step with no nodes is complete at once and never expires anything."""
    rnd = step(())
    assert rnd.complete
    assert rnd.expire(1e9) == []


# --- Decisions -------------------------------------------------------------------------------


def test_decisions_merge_schedule_without_duplicates() -> None:
    """Schedule requests for the same alias merge in first-seen order without duplicates."""
    dec = Decisions()
    dec.add_schedule("worker", ["n1", "n2"])
    dec.add_schedule("worker", ["n2", "n3", "n1"])
    dec.add_schedule("worker", ["n4", "n4"])
    dec.add_schedule("agg", [])
    assert dec.schedule == {"worker": ["n1", "n2", "n3", "n4"], "agg": []}


def test_decisions_schedule_does_not_alias_caller_list() -> None:
    """The merged list is the decisions' own: mutating the caller's list later changes nothing."""
    dec = Decisions()
    ids = ["n1"]
    dec.add_schedule("worker", ids)
    ids.append("n2")
    assert dec.schedule == {"worker": ["n1"]}


def test_decisions_keep_first_stopper() -> None:
    """The first task to stop the swarm is the one reported."""
    dec = Decisions()
    assert dec.stop_by == ""
    dec.stop("scheduler")
    dec.stop("aggregator")
    assert dec.stop_by == "scheduler"


# --- decide ----------------------------------------------------------------------------------


@pytest.fixture
def graph(tmp_path: Path) -> SwarmGraph:
    """worker -> aggregator -> scheduler (alphabetical order differs from graph order)."""
    made = {}
    for name in ("worker", "aggregator", "scheduler"):
        file = tmp_path / f"{name}.py"
        file.write_text("def main():\n    pass\n")
        made[name] = Task(Module(file))
    return SwarmGraph(made["scheduler"](made["aggregator"](made["worker"]())))


def test_decide_stop_wins_over_schedule(graph: SwarmGraph) -> None:
    """A stop request wins even if a task also scheduled another iteration."""
    dec = Decisions()
    dec.add_schedule("worker", ["n1"])
    dec.stop("scheduler")
    nxt = decide(graph, dec)
    assert nxt.state == "stopped"
    assert "scheduler" in nxt.reason
    assert nxt.starts == []


def test_decide_schedule_runs_in_graph_order(graph: SwarmGraph) -> None:
    """Scheduled aliases become starts in graph order, with the forced node lists."""
    dec = Decisions()
    dec.add_schedule("scheduler", [])
    dec.add_schedule("worker", ["n2", "n1"])
    nxt = decide(graph, dec)
    forced = {"scheduler": [], "worker": ["n2", "n1"]}
    assert nxt == NextIteration("running", starts=["worker", "scheduler"], forced=forced)


def test_decide_unknown_alias_fails(graph: SwarmGraph) -> None:
    """Scheduling an alias that is not in the graph fails the swarm, naming the alias."""
    dec = Decisions()
    dec.add_schedule("worker", ["n1"])
    dec.add_schedule("ghost", ["n1"])
    nxt = decide(graph, dec)
    assert nxt.state == "failed"
    assert "ghost" in nxt.reason
    assert nxt.starts == []


def test_decide_nothing_completes(graph: SwarmGraph) -> None:
    """Without stop or schedule the swarm is completed."""
    nxt = decide(graph, Decisions())
    assert nxt.state == "completed"
    assert nxt.starts == []
    assert nxt.forced == {}
