"""A content-addressed store of blobs on disk: ``<root>/<sha[:2]>/<sha>``.

The edge agent caches code and globals in one (so nothing is fetched twice), and the
coordinator keeps every value of a run in one. Writes are atomic (temp file + rename), so a
crash never leaves a half-written blob under its final name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .protocol.chunking import DigestMismatch, sha256
from .protocol.topics import TopicError, check_sha


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()  # tasks run in other working directories
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / check_sha(sha)

    def __contains__(self, sha: object) -> bool:
        try:
            return isinstance(sha, str) and self.path(sha).is_file()
        except TopicError:
            return False

    def get(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def put(self, data: bytes | bytearray | memoryview, sha: str | None = None) -> str:
        """Store ``data``; when ``sha`` is given it must match (the bytes came from the network)."""
        actual = sha256(data)
        if sha is not None and sha != actual:
            raise DigestMismatch(f"blob content does not match its sha256 {sha[:12]}")
        target = self.path(actual)
        if target.is_file():
            return actual
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            os.fchmod(fd, 0o644)  # mkstemp makes 0600; blobs are not secrets of one user
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return actual
