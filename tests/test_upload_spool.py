"""The upload receiver writes chunks in order to a temp file beside the store: the coordinator's
memory does not grow with nodes x model, the budgets still count every byte, and a discarded
upload leaves no file behind."""

from __future__ import annotations

import gc
import hashlib
import os
import tracemalloc
from pathlib import Path

from manta_mqtt.blobstore import PARTIAL_DIR, SPOOL_MEMORY_BYTES, BlobStore
from manta_mqtt.protocol.chunking import OPEN_BLOB_COST, split
from manta_mqtt.protocol.messages import Chunk
from manta_mqtt.transport.blobs import UploadReceiver

MiB = 1 << 20
CS = SPOOL_MEMORY_BYTES // 2  # a spool goes to a file from its third chunk on


def chunk_payloads(data: bytes, chunk_size: int) -> tuple[str, list[bytes]]:
    info, pieces = split(data, chunk_size)
    return info.sha, [Chunk(info, i, bytes(p)).to_bytes() for i, p in enumerate(pieces)]


def partials(store: BlobStore) -> list[Path]:
    folder = store.root / PARTIAL_DIR
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_chunks_in_order_go_to_a_file_and_are_renamed_into_the_store(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    receiver = UploadReceiver(store)
    data = os.urandom(4 * CS + 7)
    sha, payloads = chunk_payloads(data, CS)
    for i in range(2):
        assert receiver.receive("n1", sha, i, payloads[i]) is None
    assert partials(store) == []  # the first bytes in memory: a small upload costs no file
    for i in range(2, 4):
        assert receiver.receive("n1", sha, i, payloads[i]) is None
    (part,) = partials(store)
    assert part.read_bytes() == data[: 4 * CS]  # on disk, not in memory
    assert receiver.pool.held_by("n1") == OPEN_BLOB_COST + 4 * CS  # and counted all the same
    assert receiver.receive("n1", sha, 4, payloads[4]) == sha
    assert store.get(sha) == data and partials(store) == []


def test_chunks_past_a_gap_wait_in_memory_until_it_fills(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    receiver = UploadReceiver(store)
    data = os.urandom(3 * CS)
    sha, payloads = chunk_payloads(data, CS)
    assert receiver.receive("n1", sha, 2, payloads[2]) is None
    assert receiver.receive("n1", sha, 1, payloads[1]) is None
    assert partials(store) == []  # nothing in order yet
    assert receiver.receive("n1", sha, 0, payloads[0]) == sha
    assert store.get(sha) == data and partials(store) == []


def test_a_discarded_upload_leaves_no_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    rejected: list[str] = []
    receiver = UploadReceiver(store, on_reject=lambda reason, _d: rejected.append(reason), stale_after=0.0)
    data = os.urandom(4 * CS)
    sha, payloads = chunk_payloads(data, CS)
    forged = Chunk(split(data, CS)[0], 1, b"\x00" * CS).to_bytes()
    for index, payload in enumerate([payloads[0], forged, payloads[2]]):
        receiver.receive("n1", sha, index, payload)
    assert len(partials(store)) == 1
    receiver.receive("n1", sha, 3, payloads[3])  # the digest fails at the end
    assert rejected == ["bad_chunk"] and partials(store) == [] and sha not in store
    for index in range(3):
        receiver.receive("n2", sha, index, payloads[index])
    assert len(partials(store)) == 1
    assert receiver.sweep() == 1  # stalled: discarded, its file with it
    assert partials(store) == [] and receiver.pool.held_total == 0


def test_a_dead_coordinators_partial_files_are_cleared_at_start(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.spool().write(os.urandom(SPOOL_MEMORY_BYTES + 1))
    assert len(partials(store)) == 1
    UploadReceiver(store)
    assert partials(store) == []


def test_many_large_uploads_in_order_cost_the_coordinator_little_memory(tmp_path: Path) -> None:
    """Eight nodes' 8 MiB uploads interleaved chunk by chunk, as paced grants deliver them: the
    receiver holds a few chunks at a time in memory, not 64 MiB."""
    store = BlobStore(tmp_path / "blobs")
    receiver = UploadReceiver(store)
    uploads = [chunk_payloads(os.urandom(8 * MiB), MiB // 4) for _ in range(8)]
    gc.collect()
    tracemalloc.start()
    try:
        done = []
        for index in range(len(uploads[0][1])):
            for node, (sha, payloads) in enumerate(uploads):
                done.append(receiver.receive(f"n{node}", sha, index, payloads[index]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sorted(s for s in done if s) == sorted(sha for sha, _ in uploads)
    assert all(hashlib.sha256(store.get(sha)).hexdigest() == sha for sha, _ in uploads)
    assert peak < 8 * MiB, f"{peak / MiB:.1f} MiB at peak for 64 MiB of uploads"


def test_identical_uploads_of_several_nodes_free_every_copy_when_one_completes(tmp_path: Path) -> None:
    """Nodes that computed the same bytes upload one blob: once it is stored, the other nodes'
    partial copies are dropped, so nothing stays charged to the budgets (rounds of identical
    results once exhausted the 2 GiB total and stalled a run)."""
    store = BlobStore(tmp_path / "blobs")
    receiver = UploadReceiver(store, max_bytes_total=3 * (4 * CS + OPEN_BLOB_COST))
    data = os.urandom(4 * CS)
    sha, payloads = chunk_payloads(data, CS)
    for node in ("n1", "n2", "n3"):
        for i in range(3):
            receiver.receive(node, sha, i, payloads[i])
    assert len(receiver.pool) == 3 and receiver.pool.held_total > 0
    assert receiver.receive("n1", sha, 3, payloads[3]) == sha
    assert len(receiver.pool) == 0 and receiver.pool.held_total == 0
    assert partials(store) == []  # no spool file left behind either
    assert receiver.receive("n2", sha, 3, payloads[3]) is None  # a late chunk of a stored blob
    assert len(receiver.pool) == 0 and receiver.pool.held_total == 0
    for _ in range(5):  # round after round, as a swarm whose nodes agree does
        for node in ("n1", "n2", "n3"):
            assert receiver.receive(node, sha, 0, payloads[0]) is None
        assert receiver.pool.held_total == 0
