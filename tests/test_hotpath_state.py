"""The swarm state's publish rate: progress coalesced to one per interval, changes at once."""

from __future__ import annotations

from manta_mqtt.coordinator.engine import RunState
from manta_mqtt.coordinator.engine.actions import PublishState
from manta_mqtt.coordinator.state_rate import STATE_MIN_INTERVAL, StateRate


def progress(done: int, expected: int = 200, iteration: int = 0, step: str = "worker") -> PublishState:
    return PublishState(RunState.RUNNING, iteration, step=step, done=done, expected=expected)


def test_results_within_the_interval_are_coalesced_to_the_latest() -> None:
    rate = StateRate(min_interval=1.0)
    assert rate.offer(progress(0), 10.0) == progress(0)  # the step starts: at once
    assert rate.due() is None
    for done in range(1, 51):
        assert rate.offer(progress(done), 10.0 + done * 0.01) is None
    assert rate.due() == 11.0
    assert rate.flush(10.99) is None
    assert rate.flush(11.0) == progress(50)  # only the newest of the fifty
    assert rate.due() is None and rate.flush(20.0) is None
    assert rate.offer(progress(51), 11.5) is None  # the interval counts from the last publish
    assert rate.offer(progress(52), 12.0) == progress(52)  # a second since: at once


def test_a_result_after_a_quiet_interval_goes_out_at_once() -> None:
    rate = StateRate(min_interval=1.0)
    rate.offer(progress(0), 0.0)
    assert rate.offer(progress(1), 5.0) == progress(1)


def test_changes_that_matter_go_out_at_once_and_replace_a_waiting_progress() -> None:
    changes = [
        progress(200),  # the step's last result: it completes
        PublishState(RunState.RUNNING, 0),  # the step ended, between steps
        PublishState(RunState.RUNNING, 0, step="aggregator"),  # a coordinator step starts
        progress(0, iteration=1),  # the next iteration's step starts
        progress(3, step="eval"),  # another step
        PublishState(RunState.INTERRUPTED, 0, reason="interrupted by SIGINT"),
        PublishState(RunState.STOPPED, 0, reason="stopped by task aggregator"),
        PublishState(RunState.FAILED, 0, reason="no node left"),
    ]
    for change in changes:
        rate = StateRate(min_interval=1.0)
        rate.offer(progress(0), 0.0)
        assert rate.offer(progress(5), 0.1) is None
        assert rate.offer(change, 0.2) == change, change
        assert rate.due() is None, change  # the waiting progress is superseded, never sent after it
        assert rate.flush(99.0) is None


def test_the_default_interval_is_the_documented_bound() -> None:
    assert StateRate().min_interval == STATE_MIN_INTERVAL == 1.0
