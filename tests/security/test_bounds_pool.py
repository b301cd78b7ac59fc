"""The AssemblerPool's budgets and bookkeeping, as plain code (time is an argument)."""

from __future__ import annotations

import os

import pytest

from manta_mqtt.protocol.chunking import (
    MIN_CHUNK_SIZE,
    OPEN_BLOB_COST,
    AssemblerPool,
    BlobInfo,
    ChunkError,
    DigestMismatch,
    OverBudget,
    split,
)

CS = MIN_CHUNK_SIZE


def pool(**overrides: int) -> AssemblerPool:
    budgets = {
        "max_size": 1 << 30,
        "max_open_per_sender": 4,
        "max_bytes_per_sender": 1 << 20,
        "max_bytes_total": 1 << 22,
    }
    return AssemblerPool(**(budgets | overrides))


def blob(n_chunks: int) -> tuple[bytes, BlobInfo, list[bytes]]:
    data = os.urandom(n_chunks * CS)
    info, pieces = split(data, CS)
    return data, info, [bytes(p) for p in pieces]


def test_a_blob_completes_and_is_forgotten() -> None:
    p = pool()
    data, info, pieces = blob(3)
    assert p.add("a", info, 2, pieces[2], now=0) is None
    assert p.add("a", info, 0, pieces[0], now=1) is None
    assert p.held_by("a") == p.held_total == OPEN_BLOB_COST + 2 * CS and p.open_by("a") == 1
    assert p.add("a", info, 2, pieces[2], now=2) is None  # a duplicate costs nothing
    assert p.held_by("a") == OPEN_BLOB_COST + 2 * CS
    assert p.add("a", info, 1, pieces[1], now=3) == data
    assert len(p) == 0 and p.held_total == 0 and p.open_by("a") == 0


def test_the_same_blob_from_two_senders_is_two_partials() -> None:
    """Each sender's chunks are its own: one cannot complete (or poison) another's upload."""
    p = pool()
    data, info, pieces = blob(2)
    p.add("a", info, 0, pieces[0], now=0)
    p.add("b", info, 0, b"\x00" * CS, now=0)
    assert p.add("a", info, 1, pieces[1], now=0) == data
    with pytest.raises(DigestMismatch):
        p.add("b", info, 1, pieces[1], now=0)
    assert len(p) == 0 and p.held_total == 0


@pytest.mark.parametrize("bad", ["length", "other_blob", "digest"])
def test_a_bad_chunk_discards_the_partial_and_its_charge(bad: str) -> None:
    p = pool()
    _, info, pieces = blob(2)
    p.add("a", info, 0, pieces[0], now=0)
    with pytest.raises(ChunkError):
        if bad == "length":
            p.add("a", info, 1, pieces[1][:-1], now=0)
        elif bad == "other_blob":
            p.add("a", BlobInfo(info.sha, info.size + 1, CS), 1, pieces[1], now=0)
        else:
            p.add("a", info, 1, b"\x00" * CS, now=0)
    assert len(p) == 0 and p.held_by("a") == 0 and p.held_total == 0


def test_budgets_refuse_with_over_budget_and_free_at_once() -> None:
    p = pool(max_bytes_per_sender=OPEN_BLOB_COST + 2 * CS)
    _, info, pieces = blob(3)
    p.add("a", info, 0, pieces[0], now=0)
    p.add("a", info, 1, pieces[1], now=0)
    with pytest.raises(OverBudget):
        p.add("a", info, 2, pieces[2], now=0)
    assert p.held_by("a") == 0 and len(p) == 0
    with pytest.raises(OverBudget):
        pool(max_open_per_sender=0).add("a", info, 0, pieces[0], now=0)


def test_expiry_takes_the_least_recently_fed_first() -> None:
    p = pool()
    partials = []
    for n in range(3):
        _, info, pieces = blob(3)
        p.add("a", info, 0, pieces[0], now=n)
        partials.append((info, pieces))
    first, first_pieces = partials[0]
    p.add("a", first, 1, first_pieces[1], now=10)  # fed again: now the newest
    assert p.expire(cutoff=1.5) == 1 and len(p) == 2  # the one fed at 1
    assert p.expire(cutoff=2.0) == 0
    assert p.expire(cutoff=2.5) == 1 and len(p) == 1  # the one fed at 2; the first lives on
    assert p.held_by("a") == OPEN_BLOB_COST + 2 * CS
    assert p.expire(cutoff=11) == 1 and len(p) == 0 and p.held_total == 0 and p.open_by("a") == 0
