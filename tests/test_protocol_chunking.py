"""Blob chunking: split into views, reassemble in any order, verify sha256, refuse contradictions."""

from __future__ import annotations

import hashlib
import os
import random
import tracemalloc
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manta_mqtt.protocol.chunking import (
    DEFAULT_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    Assembler,
    BlobInfo,
    ChunkError,
    chunk_count,
    sha256,
    split,
)

CS = MIN_CHUNK_SIZE  # small chunks keep the tests fast
MAX = 1 << 30


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def assemble(info: BlobInfo, chunks: list[tuple[int, bytes]]) -> bytearray | None:
    """Feed ``chunks`` to a fresh assembler; assert only the last add completes the blob."""
    asm = Assembler(info, MAX)
    result = None
    for n, (index, data) in enumerate(chunks):
        result = asm.add(info, index, data)
        if n < len(chunks) - 1:
            assert result is None
    return result


# --- split / Assembler round trip --------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 3 * CS, 3 * CS + 7])
def test_round_trip_edge_sizes(size):
    """Sizes around the chunk boundary split into the right count and reassemble exactly."""
    data = blob(size, seed=size)
    info, chunks = split(data, CS)
    parts = list(chunks)
    assert info == BlobInfo(hashlib.sha256(data).hexdigest(), size, CS)
    assert len(parts) == info.count == chunk_count(size, CS) == max(1, -(-size // CS))
    assert b"".join(parts) == data
    assert all(len(p) == CS for p in parts[:-1])
    assert 0 <= len(parts[-1]) <= CS
    order = list(enumerate(parts))
    random.Random(size).shuffle(order)
    assert assemble(info, order) == data


def test_empty_blob_is_one_empty_chunk():
    """A zero-byte blob still has exactly one (empty) chunk, and it completes the blob."""
    info, chunks = split(b"", CS)
    parts = list(chunks)
    assert info.count == 1
    assert [bytes(p) for p in parts] == [b""]
    assert info.sha == hashlib.sha256(b"").hexdigest()
    assert Assembler(info, 0).add(info, 0, b"") == b""


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 12 * CS),
    chunk_size=st.sampled_from([CS, CS + 1, 1500, 4 * CS]),
    data=st.data(),
)
def test_round_trip_random_sizes_random_order(size, chunk_size, data):
    """Any size, any legal chunk size, chunks in any order: the blob comes back bit for bit."""
    payload = os.urandom(size)
    info, chunks = split(payload, chunk_size)
    parts = list(enumerate(chunks))
    order = data.draw(st.permutations(parts))
    assert assemble(info, order) == payload


def test_default_chunk_size():
    """split uses DEFAULT_CHUNK_SIZE when none is given."""
    data = blob(DEFAULT_CHUNK_SIZE + 1)
    info, chunks = split(data)
    assert info.chunk_size == DEFAULT_CHUNK_SIZE
    assert [len(c) for c in chunks] == [DEFAULT_CHUNK_SIZE, 1]


def test_split_yields_views_not_copies():
    """Chunks are memoryviews over the caller's bytes, not copies."""
    data = blob(3 * CS)
    _, chunks = split(data, CS)
    for part in chunks:
        assert isinstance(part, memoryview)
        assert part.obj is data


def test_split_refuses_small_chunk_size():
    """chunk_size below MIN_CHUNK_SIZE is refused by split."""
    for chunk_size in (MIN_CHUNK_SIZE - 1, 1, 0, -1):
        with pytest.raises(ValueError):
            split(b"x" * 10, chunk_size)
    split(b"x" * 10, MIN_CHUNK_SIZE)  # the minimum itself is fine


def test_progress_properties():
    """missing and received_bytes track which chunks have arrived."""
    data = blob(2 * CS + 10)
    info, chunks = split(data, CS)
    parts = list(chunks)
    asm = Assembler(info, MAX)
    assert asm.missing == [0, 1, 2]
    assert asm.received_bytes == 0
    assert asm.add(info, 2, parts[2]) is None
    assert asm.missing == [0, 1]
    assert asm.received_bytes == 10
    assert asm.add(info, 0, parts[0]) is None
    assert asm.missing == [1]
    assert asm.received_bytes == CS + 10
    assert asm.add(info, 1, parts[1]) == data
    assert asm.missing == []
    assert asm.received_bytes == len(data)


# --- duplicates and missing chunks -------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(n_chunks=st.integers(1, 6), data=st.data())
def test_duplicates_are_ignored_and_blob_completes_once(n_chunks, data):
    """Repeated chunks are counted in ``duplicates``; exactly one add returns the blob."""
    payload = os.urandom(n_chunks * CS - 3 if n_chunks > 1 else 5)
    info, chunks = split(payload, CS)
    parts = list(enumerate(chunks))
    extra = data.draw(st.lists(st.sampled_from(parts), min_size=1, max_size=8))
    order = data.draw(st.permutations(parts + extra))
    asm = Assembler(info, MAX)
    completions = [r for index, part in order if (r := asm.add(info, index, part)) is not None]
    assert completions == [payload]
    assert asm.duplicates == len(extra)
    assert asm.missing == []


def test_duplicate_after_completion_is_ignored():
    """A late duplicate after completion does not re-deliver the blob."""
    data = blob(2 * CS)
    info, chunks = split(data, CS)
    parts = list(chunks)
    asm = Assembler(info, MAX)
    assert asm.add(info, 0, parts[0]) is None
    assert asm.add(info, 1, parts[1]) == data
    assert asm.add(info, 0, parts[0]) is None
    assert asm.duplicates == 1


def test_duplicate_with_different_content_does_not_overwrite():
    """A second copy of a chunk (even with different bytes) is dropped, the first one wins."""
    data = blob(2 * CS)
    info, chunks = split(data, CS)
    parts = [bytes(p) for p in chunks]
    asm = Assembler(info, MAX)
    asm.add(info, 0, parts[0])
    assert asm.add(info, 0, b"\x00" * CS) is None
    assert asm.duplicates == 1
    assert asm.add(info, 1, parts[1]) == data


@pytest.mark.parametrize("absent", [0, 1, 3])
def test_missing_chunk_leaves_blob_incomplete(absent):
    """Without one chunk the blob never completes and ``missing`` names that chunk."""
    data = blob(4 * CS - 1)
    info, chunks = split(data, CS)
    asm = Assembler(info, MAX)
    for index, part in enumerate(chunks):
        if index != absent:
            assert asm.add(info, index, part) is None
    assert asm.missing == [absent]
    assert asm.received_bytes == len(data) - (info.span(absent)[1] - info.span(absent)[0])


# --- corrupted and contradictory chunks --------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(n_chunks=st.integers(1, 5), data=st.data())
def test_corrupted_chunk_fails_sha256_on_final_add(n_chunks, data):
    """A same-length chunk with one flipped byte is only caught by the sha256 check on the last add."""
    payload = os.urandom(n_chunks * CS - 1)
    info, chunks = split(payload, CS)
    parts = [bytearray(p) for p in chunks]
    bad = data.draw(st.integers(0, len(parts) - 1))
    pos = data.draw(st.integers(0, len(parts[bad]) - 1))
    parts[bad][pos] ^= data.draw(st.integers(1, 255))
    order = data.draw(st.permutations(list(enumerate(parts))))
    asm = Assembler(info, MAX)
    for index, part in order[:-1]:
        assert asm.add(info, index, part) is None
    with pytest.raises(ChunkError, match="sha256"):
        asm.add(info, *order[-1])


@pytest.mark.parametrize("index", [0, 2])
@pytest.mark.parametrize("delta", [-1, 1, -CS // 2])
def test_wrong_chunk_length_is_refused(index, delta):
    """A chunk shorter or longer than its span raises ChunkError (middle and last chunk)."""
    data = blob(3 * CS - 100)
    info, chunks = split(data, CS)
    parts = [bytes(p) for p in chunks]
    wrong = parts[index] + b"x" if delta > 0 else parts[index][:delta]
    asm = Assembler(info, MAX)
    with pytest.raises(ChunkError):
        asm.add(info, index, wrong)
    assert asm.missing == [0, 1, 2]


def test_wrong_length_for_empty_blob():
    """The only chunk of an empty blob must be empty."""
    info, _ = split(b"", CS)
    with pytest.raises(ChunkError):
        Assembler(info, MAX).add(info, 0, b"x")


@pytest.mark.parametrize("index", [-1, -3, 3, 4, 10**9])
def test_out_of_range_index_is_refused(index):
    """Indices outside 0..count-1 raise ChunkError."""
    data = blob(3 * CS)
    info, _ = split(data, CS)
    with pytest.raises(ChunkError):
        Assembler(info, MAX).add(info, index, b"x" * CS)


@pytest.mark.parametrize(
    "change",
    [
        {"sha": "0" * 64},
        {"size": 3 * CS - 1},
        {"size": 3 * CS + 1},
        {"chunk_size": 2 * CS},
        {"chunk_size": CS + 1},
    ],
    ids=["sha", "smaller", "larger", "chunk_size", "chunk_size+1"],
)
def test_chunk_of_a_different_blob_is_refused(change):
    """A chunk whose BlobInfo differs from the assembler's in any field raises ChunkError."""
    data = blob(3 * CS)
    info, chunks = split(data, CS)
    parts = list(chunks)
    other = replace(info, **change)
    asm = Assembler(info, MAX)
    asm.add(info, 1, parts[1])
    with pytest.raises(ChunkError):
        asm.add(other, 0, parts[0])
    assert asm.missing == [0, 2]


def test_max_size_is_enforced_at_construction():
    """A blob bigger than max_size is refused before any buffer is allocated; equal is fine."""
    info = BlobInfo(sha256(b""), 10 * CS, CS)
    with pytest.raises(ChunkError):
        Assembler(info, 10 * CS - 1)
    with pytest.raises(ChunkError):
        Assembler(BlobInfo("0" * 64, 1 << 62, DEFAULT_CHUNK_SIZE), 1 << 30)
    Assembler(info, 10 * CS)


def test_assembler_refuses_small_chunk_size_for_multi_chunk_blobs():
    """A chunk size below the minimum is refused unless the blob fits in a single chunk."""
    with pytest.raises(ChunkError):
        Assembler(BlobInfo("0" * 64, 100, 10), MAX)
    data = b"tiny"
    asm = Assembler(BlobInfo(sha256(data), len(data), 16), MAX)
    assert asm.add(asm.info, 0, data) == data


# --- memory follows the data --------------------------------------------------------------------


def test_memory_follows_the_data_not_the_declared_size():
    """A chunk declaring a 1 GiB blob costs about one chunk: nothing is allocated ahead of the data."""
    info = BlobInfo("0" * 64, 1 << 30, CS)
    tracemalloc.start()
    try:
        asm = Assembler(info, MAX)
        asm.add(info, 5, b"x" * CS)  # past a gap: waits
        asm.add(info, 0, b"y" * CS)  # extends the prefix
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept < 64 * CS
    assert asm.received_bytes == 2 * CS
    assert asm.has(0) and asm.has(5) and not asm.has(1)
