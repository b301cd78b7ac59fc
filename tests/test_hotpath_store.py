"""The upload path hashes a blob once: the assembler verifies it, the store writes it as it is.

``BlobStore.put`` still verifies for every other caller; ``put_verified`` trusts its caller on the
digest but still refuses a sha that is no sha (it names a file).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

import manta_mqtt.blobstore as blobstore
from manta_mqtt.blobstore import BlobStore
from manta_mqtt.protocol.chunking import MIN_CHUNK_SIZE, BlobInfo, DigestMismatch, split
from manta_mqtt.protocol.messages import Chunk
from manta_mqtt.protocol.topics import TopicError
from manta_mqtt.transport.blobs import UploadReceiver


def chunks_of(data: bytes, chunk_size: int = MIN_CHUNK_SIZE) -> tuple[BlobInfo, list[bytes]]:
    info, pieces = split(data, chunk_size)
    return info, [Chunk(info, i, bytes(p)).to_bytes() for i, p in enumerate(pieces)]


def test_put_verified_stores_privately_under_the_given_sha(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(5000)
    sha = hashlib.sha256(data).hexdigest()
    assert store.put_verified(bytearray(data), sha) == sha
    assert sha in store and store.get(sha) == data
    assert stat.S_IMODE(store.path(sha).stat().st_mode) == 0o600
    assert store.put_verified(data, sha) == sha  # stored already: a no-op


def test_put_verified_refuses_a_sha_that_is_no_sha(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    for bad in ("../../etc/passwd", "AB" * 32, "ab" * 31, ""):
        with pytest.raises(TopicError):
            store.put_verified(b"x", bad)
    assert not any(p.is_file() for p in (tmp_path / "blobs").rglob("*"))


def test_put_still_verifies_what_it_is_given(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(DigestMismatch):
        store.put(b"data", wrong)
    assert wrong not in store
    assert store.put(b"data") == hashlib.sha256(b"data").hexdigest()


def test_an_upload_is_hashed_once_not_again_by_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (issue 9): the store hashed every completed upload a second time."""
    calls: list[int] = []

    def counting_sha256(data: bytes | bytearray | memoryview) -> str:
        calls.append(len(data))
        return hashlib.sha256(data).hexdigest()

    monkeypatch.setattr(blobstore, "sha256", counting_sha256)
    store = BlobStore(tmp_path)
    receiver = UploadReceiver(store)
    data = os.urandom(5 * MIN_CHUNK_SIZE + 17)
    info, chunks = chunks_of(data)
    results = [receiver.receive("n1", info.sha, i, c) for i, c in enumerate(chunks)]
    assert results == [None] * (len(chunks) - 1) + [info.sha]
    assert store.get(info.sha) == data
    assert calls == []


def test_a_corrupt_upload_is_still_refused_and_not_stored(tmp_path: Path) -> None:
    rejected: list[str] = []
    store = BlobStore(tmp_path)
    receiver = UploadReceiver(store, on_reject=lambda reason, detail: rejected.append(reason))
    data = os.urandom(3 * MIN_CHUNK_SIZE)
    info, pieces = split(data, MIN_CHUNK_SIZE)
    forged = [bytes(p) for p in pieces]
    forged[1] = bytes(len(forged[1]))  # same size, other bytes: only the sha256 can tell
    for i, piece in enumerate(forged):
        assert receiver.receive("n1", info.sha, i, Chunk(info, i, piece).to_bytes()) is None
    assert rejected == ["bad_chunk"]
    assert info.sha not in store
