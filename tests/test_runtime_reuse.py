"""The rules of warm task processes (runtime/reuse.py), as plain code: the time is passed in."""

from __future__ import annotations

from manta_mqtt.runtime.reuse import (
    MIB,
    ProcessKey,
    ReuseSettings,
    expired,
    of_swarm,
    outdated,
    over_limit,
    retire_reason,
)

A1 = ProcessKey("a", "sha1", "worker", "/w/a")
A2 = ProcessKey("a", "sha2", "worker", "/w/a")
A_AGG = ProcessKey("a", "sha1", "aggregator", "/w/a")
B1 = ProcessKey("b", "sha1", "worker", "/w/b")


def test_a_process_that_ran_well_is_kept() -> None:
    assert retire_reason(ReuseSettings(), ok=True, alive=True, rss_bytes=100 * MIB) == ""
    assert retire_reason(ReuseSettings(), ok=True, alive=True, rss_bytes=None) == ""  # no /proc: no limit


def test_what_retires_a_process() -> None:
    settings = ReuseSettings(max_rss_mib=512)
    assert retire_reason(ReuseSettings(enabled=False), ok=True, alive=True, rss_bytes=0) == "reuse is off"
    assert "exited" in retire_reason(settings, ok=False, alive=False, rss_bytes=None)  # crash, timeout, cancel
    assert "failed" in retire_reason(settings, ok=False, alive=True, rss_bytes=0)  # main() raised
    assert "513 MiB passed 512 MiB" in retire_reason(settings, ok=True, alive=True, rss_bytes=513 * MIB)
    assert retire_reason(settings, ok=True, alive=True, rss_bytes=512 * MIB) == ""


def test_new_code_outdates_the_same_task_of_the_same_swarm_only() -> None:
    assert outdated(A2, [A1, A_AGG, B1]) == [A1]
    assert outdated(A1, [A1, A_AGG, B1]) == []  # its own process is reused, not replaced
    assert not A1.same_task(B1)  # another swarm: never the same process


def test_idle_processes_expire_after_idle_seconds() -> None:
    settings = ReuseSettings(idle_seconds=10)
    last_used = {A1: 100.0, B1: 105.0}
    assert expired(last_used, 109.9, settings) == []
    assert expired(last_used, 110.0, settings) == [A1]
    assert sorted(expired(last_used, 200.0, settings), key=str) == sorted([A1, B1], key=str)


def test_the_least_recently_used_go_past_the_limit() -> None:
    settings = ReuseSettings(max_processes=2)
    last_used = {A1: 3.0, A_AGG: 1.0, B1: 2.0}
    assert over_limit(last_used, settings) == [A_AGG]
    assert over_limit(last_used, settings, room=1) == [A_AGG, B1]  # room for the one about to start
    assert over_limit({A1: 1.0}, settings, room=1) == []
    assert over_limit(last_used, ReuseSettings(max_processes=0), room=1) == [A_AGG, B1, A1]


def test_a_swarm_end_takes_its_processes_only() -> None:
    assert of_swarm([A1, A_AGG, B1], "a") == [A1, A_AGG]
    assert of_swarm([A1], "c") == []
