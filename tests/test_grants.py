"""The grant scheduler as plain code: a window of bytes in flight, round-robin, pipelined, re-granted."""

from __future__ import annotations

import random

from manta_mqtt.coordinator.grants import Grant, GrantScheduler

CHUNK = 1024
SHA = {n: f"{n:064x}" for n in range(20)}


def scheduler(window_chunks: int = 8, retry: float = 30.0) -> GrantScheduler:
    return GrantScheduler(window=window_chunks * CHUNK, chunk_size=CHUNK, retry_after=retry)


def chunks(grants: list[Grant]) -> list[tuple[str, str, int]]:
    return [(g.node, g.sha, i) for g in grants for i in range(g.first, g.first + g.count)]


def test_the_window_bounds_what_is_granted_and_nodes_take_turns() -> None:
    s = scheduler(window_chunks=8)
    s.wanted({(f"n{i}", SHA[i]): 100 * CHUNK for i in range(3)}, now=0)
    granted = chunks(s.grants(now=0))
    assert len(granted) == 8 and s.in_flight == 8 * CHUNK
    per_node = {n: sum(1 for g in granted if g[0] == n) for n in ("n0", "n1", "n2")}
    assert sorted(per_node.values()) == [2, 3, 3]  # round-robin, not one node first
    assert s.grants(now=1) == []  # full: nothing more until chunks arrive


def test_a_node_gets_its_chunks_of_a_pass_as_one_contiguous_grant() -> None:
    s = scheduler(window_chunks=4)
    s.wanted({("n0", SHA[0]): 10 * CHUNK}, now=0)
    assert s.grants(now=0) == [Grant("n0", SHA[0], 10 * CHUNK, CHUNK, 0, 4)]


def test_arrivals_free_the_window_and_more_is_granted_a_quarter_at_a_time() -> None:
    s = scheduler(window_chunks=8)
    s.wanted({("n0", SHA[0]): 100 * CHUNK}, now=0)
    s.grants(now=0)  # chunks 0..7
    s.arrived("n0", SHA[0], 0, now=1)
    assert s.grants(now=1) == []  # one chunk free: less than a quarter of the window
    s.arrived("n0", SHA[0], 1, now=1)
    assert s.grants(now=1) == [Grant("n0", SHA[0], 100 * CHUNK, CHUNK, 8, 2)]  # pipelined: 6 still in flight
    assert s.in_flight == 8 * CHUNK


def test_the_last_chunk_counts_its_own_bytes() -> None:
    s = scheduler(window_chunks=4)
    s.wanted({("n0", SHA[0]): 2 * CHUNK + 10}, now=0)
    assert chunks(s.grants(now=0)) == [("n0", SHA[0], 0), ("n0", SHA[0], 1), ("n0", SHA[0], 2)]
    assert s.in_flight == 2 * CHUNK + 10


def test_a_chunk_larger_than_the_window_is_still_granted_one_at_a_time() -> None:
    s = GrantScheduler(window=CHUNK // 2, chunk_size=CHUNK, retry_after=30)
    s.wanted({("n0", SHA[0]): 3 * CHUNK}, now=0)
    assert chunks(s.grants(now=0)) == [("n0", SHA[0], 0)]
    assert s.grants(now=0) == []
    s.arrived("n0", SHA[0], 0, now=1)
    assert chunks(s.grants(now=1)) == [("n0", SHA[0], 1)]


def test_what_did_not_arrive_is_granted_again_after_the_retry_time() -> None:
    s = scheduler(window_chunks=2, retry=30)
    s.wanted({("n0", SHA[0]): 4 * CHUNK}, now=0)
    s.grants(now=0)  # 0, 1
    s.arrived("n0", SHA[0], 1, now=5)
    assert s.grants(now=5) == [Grant("n0", SHA[0], 4 * CHUNK, CHUNK, 2, 1)]
    assert s.next_timer() == 30  # chunk 0, granted at 0
    assert s.grants(now=29.9) == []
    assert chunks(s.grants(now=30)) == [("n0", SHA[0], 0)]  # lost: asked again, before new ones
    assert s.expired == 1
    s.arrived("n0", SHA[0], 0, now=31)
    s.arrived("n0", SHA[0], 0, now=32)  # the first copy after all: a duplicate changes nothing
    assert s.in_flight == CHUNK  # chunk 2 only


def test_an_upload_that_all_arrived_but_never_completed_starts_over() -> None:
    """The receiver discarded it (a budget, a bad chunk): only asking again can complete it."""
    s = scheduler(window_chunks=4, retry=30)
    s.wanted({("n0", SHA[0]): 2 * CHUNK}, now=0)
    s.grants(now=0)
    s.arrived("n0", SHA[0], 0, now=1)
    s.arrived("n0", SHA[0], 1, now=2)
    assert s.grants(now=10) == [] and s.next_timer() == 32
    assert s.grants(now=32) == [Grant("n0", SHA[0], 2 * CHUNK, CHUNK, 0, 2)]
    s.completed(SHA[0])
    assert len(s) == 0 and s.in_flight == 0 and s.next_timer() is None


def test_uploads_no_longer_wanted_free_their_share() -> None:
    s = scheduler(window_chunks=4)
    s.wanted({("n0", SHA[0]): 10 * CHUNK, ("n1", SHA[1]): 10 * CHUNK}, now=0)
    s.grants(now=0)
    s.wanted({("n1", SHA[1]): 10 * CHUNK}, now=1)  # n0's result is not awaited any more
    assert s.in_flight == 2 * CHUNK
    s.arrived("n0", SHA[0], 0, now=2)  # a straggling chunk of it changes nothing
    assert s.in_flight == 2 * CHUNK
    assert {g.node for g in s.grants(now=2)} == {"n1"}


def test_the_same_blob_from_two_nodes_completes_once_for_both() -> None:
    s = scheduler(window_chunks=4)
    s.wanted({("n0", SHA[0]): 4 * CHUNK, ("n1", SHA[0]): 4 * CHUNK}, now=0)
    s.grants(now=0)
    s.completed(SHA[0])
    assert len(s) == 0 and s.in_flight == 0


def test_an_offline_node_gets_nothing_and_holds_no_share() -> None:
    s = scheduler(window_chunks=4)
    s.wanted({("n0", SHA[0]): 10 * CHUNK, ("n1", SHA[1]): 10 * CHUNK}, now=0)
    s.grants(now=0)
    s.pause("n0")
    assert s.in_flight == 2 * CHUNK
    assert {g.node for g in s.grants(now=1)} == {"n1"}
    s.arrived("n1", SHA[1], 0, now=2)
    s.arrived("n1", SHA[1], 1, now=2)
    s.resume("n0")
    assert {g.node for g in s.grants(now=2)} == {"n0", "n1"}
    assert s.in_flight == 4 * CHUNK


def test_a_restarted_node_or_a_reconnected_coordinator_is_asked_again_at_once() -> None:
    s = scheduler(window_chunks=2)
    s.wanted({("n0", SHA[0]): 4 * CHUNK}, now=0)
    s.grants(now=0)
    s.resume("n0", requeue=True)  # its grants in flight died with its session
    assert chunks(s.grants(now=1)) == [("n0", SHA[0], 0), ("n0", SHA[0], 1)]
    s.requeue()  # the coordinator reconnected
    assert chunks(s.grants(now=2)) == [("n0", SHA[0], 0), ("n0", SHA[0], 1)]


def test_random_arrivals_and_losses_deliver_every_chunk_within_the_window() -> None:
    """A broker that delivers granted chunks in any order and loses some: every upload completes,
    and what is in flight never exceeds the window."""
    rng = random.Random(7)
    s = scheduler(window_chunks=6, retry=10)
    sizes = {(f"n{i}", SHA[i]): rng.randint(1, 40) * CHUNK - rng.randint(0, CHUNK - 1) for i in range(5)}
    s.wanted(sizes, now=0)
    need = {key: -(-size // CHUNK) for key, size in sizes.items()}
    got: dict[tuple[str, str], set[int]] = {key: set() for key in sizes}
    flying: list[tuple[str, str, int]] = []
    now = 0.0
    for _ in range(10_000):
        flying += chunks(s.grants(now))
        assert s.in_flight <= s.window
        if not s:
            break
        now += 1
        if flying and rng.random() < 0.9:
            node, sha, index = flying.pop(rng.randrange(len(flying)))
            if rng.random() < 0.1:
                continue  # lost on the way
            s.arrived(node, sha, index, now)
            got[(node, sha)].add(index)
            if len(got[(node, sha)]) == need[(node, sha)]:
                s.completed(sha)
    assert not s, "uploads left incomplete"
    assert all(len(got[key]) == need[key] for key in sizes)
