"""Fault tolerance with no I/O beyond tmp_path: quorums, soft/hard deadlines and lost nodes in
StepRound, checkpoints (with the RNG state), the node's store-and-forward Outbox, and the Task
options that configure all of it.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from edge_node.outbox import Entry, Outbox
from manta_mqtt.coordinator.engine.checkpoint import Checkpoint, OpenStep, rng_state_from_json, rng_state_to_json
from manta_mqtt.coordinator.engine.rounds import NodeOutcome, StepRound, StepState, Verdict, quorum_size
from manta_mqtt.protocol.messages import ResultEnvelope
from manta_mqtt.swarm import Module, Task

# --- helpers ---------------------------------------------------------------------------------

OK = NodeOutcome(True)
FAIL = NodeOutcome(False, "boom")


def step(
    nodes: tuple[str, ...] = ("n1", "n2", "n3"),
    *,
    quorum: int = 2,
    deadline: float = 100.0,
    hard: float | None = 200.0,
    grace: float = 0.0,
) -> StepRound:
    return StepRound(
        swarm="sw",
        iteration=3,
        task="worker",
        nodes=list(nodes),
        deadline=deadline,
        hard_deadline=hard,
        quorum=quorum,
        reconnect_grace=grace,
    )


def envelope(node: str) -> ResultEnvelope:
    return ResultEnvelope(swarm="sw", iteration=3, task="worker", node=node, attempt=0, status="ok")


def entry(task: str = "worker", iteration: int = 3, attempt: int = 0) -> Entry:
    return Entry(("sw", iteration, task, attempt), f"env-{task}-{iteration}".encode(), [f"sha-{task}", "sha-x"])


def module(tmp_path: Path) -> Module:
    file = tmp_path / "worker.py"
    file.write_text("def main():\n    pass\n")
    return Module(file)


# --- quorum_size -----------------------------------------------------------------------------


@pytest.mark.parametrize("assigned", [1, 3, 10])
def test_quorum_none_means_all(assigned: int) -> None:
    """quorum=None requires every assigned node."""
    assert quorum_size(None, assigned) == assigned


@pytest.mark.parametrize(("quorum", "assigned", "expected"), [(1, 3, 1), (2, 3, 2), (3, 3, 3), (5, 3, 3), (0, 3, 1)])
def test_quorum_count_capped_and_at_least_one(quorum: int, assigned: int, expected: int) -> None:
    """An int quorum is a count, capped to the nodes assigned and never below 1."""
    assert quorum_size(quorum, assigned) == expected


@pytest.mark.parametrize(
    ("quorum", "assigned", "expected"),
    [(0.5, 3, 2), (0.01, 3, 1), (1.0, 3, 3), (0.5, 4, 2), (0.34, 3, 2), (0.66, 3, 2), (0.1, 10, 1), (0.11, 10, 2)],
)
def test_quorum_fraction_ceils_and_at_least_one(quorum: float, assigned: int, expected: int) -> None:
    """A float quorum is a fraction of the assigned nodes, rounded up, never below 1."""
    assert quorum_size(quorum, assigned) == expected


# --- StepRound.state -------------------------------------------------------------------------


def test_state_waiting_while_nodes_missing_before_deadline() -> None:
    """Before the deadline a step waits for missing nodes, even once the quorum is met."""
    rnd = step()
    assert rnd.state(0.0) is StepState.WAITING
    rnd.record("n1", OK)
    assert rnd.state(50.0) is StepState.WAITING
    rnd.record("n2", OK)
    assert rnd.state(99.9) is StepState.WAITING


def test_state_proceed_when_all_answered_and_quorum_met() -> None:
    """When every node answered and the quorum is met the step proceeds at once (failures allowed)."""
    rnd = step()
    rnd.record("n1", OK)
    rnd.record("n2", FAIL)
    rnd.record("n3", OK)
    assert rnd.state(0.0) is StepState.PROCEED
    assert rnd.state(0.0, wait_for_lost=False) is StepState.PROCEED


def test_state_proceed_at_soft_deadline_with_quorum() -> None:
    """At the (soft) deadline a met quorum lets the step proceed without the missing nodes."""
    rnd = step()
    rnd.record("n1", OK)
    rnd.record("n3", OK)
    assert rnd.state(99.99) is StepState.WAITING
    assert rnd.state(100.0) is StepState.PROCEED
    assert rnd.state(150.0) is StepState.PROCEED
    assert rnd.missing == ["n2"]


def test_state_waits_past_soft_deadline_without_quorum() -> None:
    """Past the soft deadline without the quorum, a step with missing nodes waits until the hard deadline."""
    rnd = step()
    rnd.record("n1", OK)
    assert rnd.state(100.0) is StepState.WAITING
    assert rnd.state(199.9) is StepState.WAITING


def test_state_short_past_hard_deadline_without_quorum() -> None:
    """At or past the hard deadline a step without its quorum is short."""
    rnd = step()
    rnd.record("n1", OK)
    assert rnd.state(200.0) is StepState.SHORT
    assert rnd.state(1e9) is StepState.SHORT
    assert rnd.state(200.0, wait_for_lost=False) is StepState.SHORT


def test_state_short_at_once_when_all_failed() -> None:
    """Everybody answered, the quorum is out of reach and nobody is lost: short without waiting."""
    rnd = step()
    rnd.record("n1", OK)
    rnd.record("n2", FAIL)
    rnd.record("n3", FAIL)
    assert rnd.state(0.0) is StepState.SHORT
    assert rnd.state(0.0, wait_for_lost=False) is StepState.SHORT


def test_state_lost_node_within_grace_keeps_waiting() -> None:
    """A node lost less than reconnect_grace ago holds the step even when the others met the quorum."""
    rnd = step(grace=10.0)
    rnd.record("n1", OK)
    rnd.record("n2", OK)
    assert rnd.node_lost("n3", now=5.0)
    assert rnd.complete
    assert rnd.state(5.0) is StepState.WAITING
    assert rnd.state(14.9) is StepState.WAITING
    assert rnd.state(14.9, wait_for_lost=False) is StepState.WAITING
    assert rnd.state(15.0) is StepState.PROCEED
    assert rnd.state(15.0, wait_for_lost=False) is StepState.PROCEED


def test_state_lost_node_within_grace_does_not_outlast_soft_deadline() -> None:
    """The reconnect grace does not hold a step whose quorum is met past the soft deadline."""
    rnd = step(grace=50.0)
    rnd.record("n1", OK)
    rnd.record("n2", OK)
    rnd.node_lost("n3", now=90.0)
    assert rnd.state(95.0) is StepState.WAITING
    assert rnd.state(100.0) is StepState.PROCEED


def test_state_wait_for_lost_without_quorum() -> None:
    """Quorum unmet with a lost node: wait_for_lost waits for it until the hard deadline, otherwise short."""
    rnd = step(quorum=3)
    rnd.record("n1", OK)
    rnd.record("n2", OK)
    rnd.node_lost("n3", now=0.0)
    assert rnd.state(1.0, wait_for_lost=True) is StepState.WAITING
    assert rnd.state(150.0, wait_for_lost=True) is StepState.WAITING
    assert rnd.state(200.0, wait_for_lost=True) is StepState.SHORT
    assert rnd.state(1.0, wait_for_lost=False) is StepState.SHORT


def test_state_wait_for_lost_false_still_honours_grace() -> None:
    """Even without wait_for_lost a lost node is awaited during its reconnect grace."""
    rnd = step(quorum=3, grace=10.0)
    rnd.record("n1", OK)
    rnd.record("n2", OK)
    rnd.node_lost("n3", now=0.0)
    assert rnd.state(9.0, wait_for_lost=False) is StepState.WAITING
    assert rnd.state(10.0, wait_for_lost=False) is StepState.SHORT


def test_lost_node_result_is_accepted() -> None:
    """A lost node's late result is accepted, recorded, clears it from lost and can complete the quorum."""
    rnd = step(quorum=3)
    rnd.record("n1", OK)
    rnd.record("n2", OK)
    rnd.node_lost("n3", now=0.0)
    assert rnd.lost == {"n3"}
    assert rnd.state(1.0, wait_for_lost=False) is StepState.SHORT
    assert rnd.judge(envelope("n3"), "n3") is Verdict.ACCEPTED
    assert rnd.record("n3", OK) is True
    assert "n3" not in rnd.lost
    assert rnd.outcomes["n3"].ok
    assert rnd.judge(envelope("n3"), "n3") is Verdict.DUPLICATE
    assert rnd.state(1.0) is StepState.PROCEED


def test_stragglers_are_nodes_without_success() -> None:
    """stragglers lists, in step order, every node that is missing, failed or lost."""
    rnd = step(("n1", "n2", "n3", "n4"))
    assert rnd.stragglers == ["n1", "n2", "n3", "n4"]
    rnd.record("n2", OK)
    rnd.record("n3", FAIL)
    rnd.node_lost("n4")
    assert rnd.stragglers == ["n1", "n3", "n4"]
    rnd.record("n4", OK)
    assert rnd.stragglers == ["n1", "n3"]


def test_hard_deadline_defaults_to_deadline() -> None:
    """Without a hard deadline the step gives up at the soft one; a hard deadline never precedes it."""
    rnd = step(hard=None)
    assert rnd.give_up == rnd.deadline == 100.0
    rnd.record("n1", OK)
    assert rnd.state(99.9) is StepState.WAITING
    assert rnd.state(100.0) is StepState.SHORT
    assert rnd.expire(100.0) == ["n2", "n3"]
    assert step(hard=50.0).give_up == 100.0
    assert step(hard=300.0).give_up == 300.0


def test_expire_only_past_hard_deadline_and_only_missing() -> None:
    """expire() does nothing before the hard deadline, then fails only missing nodes (not lost/answered)."""
    rnd = step(("n1", "n2", "n3", "n4"))
    rnd.record("n1", OK)
    rnd.record("n2", FAIL)
    rnd.node_lost("n3", now=1.0)
    assert rnd.expire(100.0) == []
    assert rnd.expire(199.9) == []
    assert rnd.missing == ["n4"]
    assert rnd.expire(200.0) == ["n4"]
    assert not rnd.outcomes["n4"].ok
    assert "deadline" in rnd.outcomes["n4"].error
    assert rnd.outcomes["n1"] is OK
    assert rnd.outcomes["n2"] is FAIL
    assert "offline" in rnd.outcomes["n3"].error
    assert rnd.lost == {"n3"}
    assert rnd.expire(300.0) == []


# --- Checkpoint ------------------------------------------------------------------------------


def test_checkpoint_round_trip() -> None:
    """to_dict/from_dict (also through JSON) gives back an equal checkpoint."""
    cp = Checkpoint(
        iteration=4,
        starts=["worker"],
        forced={"worker": ["n2", "n1"]},
        done_steps=["worker", "aggregator"],
        global_refs={"weights": "ab" * 32},
        schedule={"scheduler": []},
        stop_by="scheduler",
        previous_nodes={"worker": ["n1", "n2"]},
        rng=rng_state_to_json(random.Random(7).getstate()),
        current=OpenStep("worker", ["n1"], 1),
    )
    assert Checkpoint.from_dict(cp.to_dict()) == cp
    assert Checkpoint.from_dict(json.loads(json.dumps(cp.to_dict()))) == cp
    assert Checkpoint.from_dict(Checkpoint().to_dict()) == Checkpoint()


def test_checkpoint_from_dict_ignores_unknown_keys() -> None:
    """Keys a checkpoint does not know (a newer or older writer) are ignored; missing ones default."""
    cp = Checkpoint.from_dict({"iteration": 2, "done_steps": ["a"], "future_field": 1, "other": {"x": 1}})
    assert cp == Checkpoint(iteration=2, done_steps=["a"])


def test_checkpoint_reads_the_0_1_0_globals_key() -> None:
    """A checkpoint written by 0.1.0 named the global refs "globals"; resuming it keeps them."""
    assert Checkpoint.from_dict({"globals": {"w": "ab" * 32}}).global_refs == {"w": "ab" * 32}


@pytest.mark.parametrize("use_gauss", [False, True])
def test_rng_state_json_round_trip(use_gauss: bool) -> None:
    """The RNG state survives JSON: a restored Random draws the same numbers as the original."""
    original = random.Random(1234)
    original.random()
    if use_gauss:
        original.gauss(0.0, 1.0)  # leaves a cached gauss_next in the state
    text = json.dumps(rng_state_to_json(original.getstate()))
    restored = random.Random()
    restored.setstate(rng_state_from_json(json.loads(text)))
    assert restored.getstate() == original.getstate()
    expected = [original.random() for _ in range(5)] + [original.gauss(0.0, 1.0), original.randrange(1000)]
    got = [restored.random() for _ in range(5)] + [restored.gauss(0.0, 1.0), restored.randrange(1000)]
    assert got == expected


# --- Outbox ----------------------------------------------------------------------------------


def test_outbox_put_then_pending(tmp_path: Path) -> None:
    """A put entry is listed by pending() with the same key, envelope and uploads."""
    box = Outbox(tmp_path)
    assert box.pending() == []
    e = entry()
    box.put(e)
    assert box.pending() == [e]
    got = box.pending()[0]
    assert got.key == ("sw", 3, "worker", 0)
    assert got.envelope == e.envelope
    assert got.uploads == e.uploads


def test_outbox_put_same_key_overwrites(tmp_path: Path) -> None:
    """Putting the same key twice keeps one entry, the latest."""
    box = Outbox(tmp_path)
    box.put(entry())
    newer = Entry(entry().key, b"newer", [])
    box.put(newer)
    assert box.pending() == [newer]


def test_outbox_find_pending_then_sent(tmp_path: Path) -> None:
    """find() returns the entry while pending and, after mark_sent(), from sent; unknown keys give None."""
    box = Outbox(tmp_path)
    e = entry()
    assert box.find(e.key) is None
    box.put(e)
    assert box.find(e.key) == e
    box.mark_sent(e)
    assert box.pending() == []
    assert box.find(e.key) == e
    assert (box.sent_dir / e.name).is_file()
    assert not (box.pending_dir / e.name).exists()
    assert box.find(("sw", 3, "worker", 1)) is None


def test_outbox_mark_sent_moves_only_that_entry(tmp_path: Path) -> None:
    """mark_sent() takes one entry out of pending and leaves the others; marking twice is harmless."""
    box = Outbox(tmp_path)
    a, b = entry("a"), entry("b")
    box.put(a)
    box.put(b)
    box.mark_sent(a)
    assert box.pending() == [b]
    box.mark_sent(a)
    assert box.pending() == [b]
    assert box.find(a.key) == a


def test_outbox_keep_sent_removes_oldest(tmp_path: Path) -> None:
    """keep_sent bounds sent/: the entries with the oldest mtime go first (not by name)."""
    box = Outbox(tmp_path, keep_sent=2)
    a, b, c = entry("a"), entry("b"), entry("c")
    for e in (a, b, c):
        box.put(e)
    for e, mtime in ((a, 2000), (b, 1000), (c, 3000)):
        os.utime(box.pending_dir / e.name, (mtime, mtime))
    box.mark_sent(a)
    box.mark_sent(b)
    assert sorted(p.name for p in box.sent_dir.iterdir()) == [a.name, b.name]
    box.mark_sent(c)
    assert sorted(p.name for p in box.sent_dir.iterdir()) == [a.name, c.name]
    assert box.find(b.key) is None
    assert box.find(a.key) == a
    assert box.find(c.key) == c


def test_outbox_damaged_pending_file_is_dropped(tmp_path: Path) -> None:
    """Garbage or truncated files in pending/ are skipped and removed, without raising."""
    box = Outbox(tmp_path)
    good = entry("good")
    box.put(good)
    full = (box.pending_dir / good.name).read_bytes()
    damaged = {
        "sw__1__garbage__0": b"\xc1\xff\x00 not msgpack at all",
        "sw__1__truncated__0": full[: len(full) // 2],
        "sw__1__notamap__0": b"\x05",  # a valid msgpack int, not an entry
        "sw__1__empty__0": b"",
    }
    for name, data in damaged.items():
        (box.pending_dir / name).write_bytes(data)
    assert box.pending() == [good]
    for name in damaged:
        assert not (box.pending_dir / name).exists()
    assert box.pending() == [good]


def test_outbox_ignores_temp_files(tmp_path: Path) -> None:
    """Half-written ".tmp-*" files (a put in progress or interrupted) are never listed as entries."""
    box = Outbox(tmp_path)
    e = entry()
    box.put(e)
    (box.pending_dir / ".tmp-garbage").write_bytes(b"\xc1partial")
    (box.pending_dir / ".tmp-whole").write_bytes((box.pending_dir / e.name).read_bytes())
    assert box.pending() == [e]
    assert not any(p.name.startswith(".tmp-") for p in box.sent_dir.iterdir())


def test_outbox_survives_restart(tmp_path: Path) -> None:
    """A new Outbox on the same folder (agent restart) still sees pending and sent entries."""
    box = Outbox(tmp_path / "outbox")
    pending, sent = entry("pending"), entry("sent")
    box.put(pending)
    box.put(sent)
    box.mark_sent(sent)
    del box
    again = Outbox(tmp_path / "outbox")
    assert again.pending() == [pending]
    assert again.find(pending.key) == pending
    assert again.find(sent.key) == sent
    again.mark_sent(pending)
    assert Outbox(tmp_path / "outbox").pending() == []


# --- Task options ----------------------------------------------------------------------------


def test_task_fault_option_defaults(tmp_path: Path) -> None:
    """By default a task needs one success, has no deadline and waits when short."""
    task = Task(module(tmp_path))
    assert task.quorum == 1
    assert task.deadline is None
    assert task.on_short == "wait"


@pytest.mark.parametrize("policy", ["wait", "retry", "fail"])
def test_task_on_short_accepts_policies(tmp_path: Path, policy: str) -> None:
    """wait, retry and fail are the valid on_short policies."""
    assert Task(module(tmp_path), on_short=policy).on_short == policy


@pytest.mark.parametrize("policy", ["", "skip", "WAIT", "ignore"])
def test_task_on_short_rejects_others(tmp_path: Path, policy: str) -> None:
    """Any other on_short value is refused."""
    with pytest.raises(ValueError, match="on_short"):
        Task(module(tmp_path), on_short=policy)


@pytest.mark.parametrize("quorum", [None, 1, 2, 100, 0.01, 0.5, 1.0])
def test_task_quorum_accepts_valid(tmp_path: Path, quorum: int | float | None) -> None:
    """None, counts >= 1 and fractions in (0, 1] are valid quorums."""
    assert Task(module(tmp_path), quorum=quorum).quorum == quorum


@pytest.mark.parametrize("quorum", [0.0, -0.5, 1.01, 2.5, float("nan")])
def test_task_fractional_quorum_out_of_range(tmp_path: Path, quorum: float) -> None:
    """A fractional quorum outside (0, 1] is refused."""
    with pytest.raises(ValueError, match="quorum"):
        Task(module(tmp_path), quorum=quorum)


@pytest.mark.parametrize("quorum", [0, -1])
def test_task_int_quorum_below_one(tmp_path: Path, quorum: int) -> None:
    """A quorum count below 1 is refused."""
    with pytest.raises(ValueError, match="quorum"):
        Task(module(tmp_path), quorum=quorum)


@pytest.mark.parametrize("deadline", [0, 0.0, -1.0])
def test_task_deadline_must_be_positive(tmp_path: Path, deadline: float) -> None:
    """A deadline of zero or less is refused; a positive one is kept."""
    with pytest.raises(ValueError, match="deadline"):
        Task(module(tmp_path), deadline=deadline)
    assert Task(module(tmp_path), deadline=0.5).deadline == 0.5
