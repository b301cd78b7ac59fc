"""A content-addressed store of blobs on disk: ``<root>/<sha[:2]>/<sha>``.

The edge agent caches code and globals in one (so nothing is fetched twice), and the
coordinator keeps every value of a run in one. Writes are atomic (temp file + rename), so a
crash never leaves a half-written blob under its final name. Blobs are private to the user
running the store (folders 0700, files 0600): a run's results and a node's cached globals are
its data, and a code bundle is read only by task processes of the same user.

A blob that arrives piece by piece (the coordinator's uploads) is written to a :class:`BlobSpool`,
a temp file in ``<root>/.partial/``, and renamed into place once verified (:meth:`BlobStore.adopt`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .protocol.chunking import DigestMismatch, sha256
from .protocol.topics import TopicError, check_sha

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PARTIAL_DIR = ".partial"
#: A spool holds its first bytes in memory and goes to a file past this: small uploads (most
#: results, and a flood of tiny forged ones) cost no file, large ones no memory.
SPOOL_MEMORY_BYTES = 256 * 1024


def private_dir(path: str | Path) -> Path:
    """Create ``path`` and its missing parents as 0700 whatever the umask; what exists is left as it is."""
    path = Path(path)
    missing: list[Path] = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by another thread or process: theirs to set
            continue
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode passes through the umask
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    return path


class BlobSpool:
    """One blob's bytes in order: in memory up to ``SPOOL_MEMORY_BYTES``, then appended to a private
    temp file.

    The file is opened for each write and closed again, so thousands of incomplete uploads cost
    no file descriptors; they cost disk, which the caller's budgets bound."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self.path: Path | None = None
        self.memory = bytearray()  # the bytes while there is no file
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self.path is None and self.size <= SPOOL_MEMORY_BYTES:
            self.memory += data
            return
        if self.path is None:
            fd, name = tempfile.mkstemp(dir=private_dir(self._folder), prefix=".part-")
            os.fchmod(fd, PRIVATE_FILE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.memory)
            self.path, self.memory = Path(name), bytearray()
        with self.path.open("ab") as handle:
            handle.write(data)

    def discard(self) -> None:
        self.memory = bytearray()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()  # tasks run in other working directories
        private_dir(self.root)

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / check_sha(sha)

    def __contains__(self, sha: object) -> bool:
        try:
            return isinstance(sha, str) and self.path(sha).is_file()
        except TopicError:
            return False

    def get(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def sizes(self, shas: list[str]) -> dict[str, int]:
        """The size in bytes of each of ``shas`` that is stored."""
        return {sha: self.path(sha).stat().st_size for sha in shas if sha in self}

    def put(self, data: bytes | bytearray | memoryview, sha: str | None = None) -> str:
        """Store ``data``; when ``sha`` is given it must match (the bytes came from the network)."""
        actual = sha256(data)
        if sha is not None and sha != actual:
            raise DigestMismatch(f"blob content does not match its sha256 {sha[:12]}")
        self._write(self.path(actual), data)
        return actual

    def put_verified(self, data: bytes | bytearray | memoryview, sha: str) -> str:
        """Store ``data`` that the caller already checked hashes to ``sha`` (an :class:`Assembler`
        hashes an upload on the way in): hashing 10 MiB again cost the network thread ~6 ms here.
        Only for bytes verified in this process; anything else goes through :meth:`put`."""
        self._write(self.path(sha), data)  # path() still refuses a malformed sha
        return sha

    def put_stream(self, pieces: Iterable[bytes | memoryview]) -> str:
        """Store bytes that arrive in pieces (a task's value, read from its channel), hashed on
        the way: no buffer holds the whole."""
        spool, digest = self.spool(), hashlib.sha256()
        try:
            for piece in pieces:
                digest.update(piece)
                spool.write(piece)
        except BaseException:
            spool.discard()
            raise
        return self.adopt(spool, digest.hexdigest())

    def spool(self) -> BlobSpool:
        """A temp file for a blob that arrives piece by piece; :meth:`adopt` it once verified."""
        return BlobSpool(self.root / PARTIAL_DIR)

    def adopt(self, spool: BlobSpool, sha: str) -> str:
        """Move a spool whose bytes the caller verified hash to ``sha`` into the store (a rename: no
        copy, no second hash)."""
        target = self.path(sha)  # refuses a malformed sha
        if spool.path is None:  # small: still in memory
            self._write(target, spool.memory)
            spool.memory = bytearray()
        elif target.is_file():
            spool.discard()
        else:
            private_dir(target.parent)
            os.replace(spool.path, target)
            spool.path = None
        return sha

    def clear_spools(self) -> None:
        """Remove the temp files of incomplete blobs (left by a process that died)."""
        folder = self.root / PARTIAL_DIR
        if folder.is_dir():
            for leftover in folder.iterdir():
                leftover.unlink(missing_ok=True)

    def _write(self, target: Path, data: bytes | bytearray | memoryview) -> None:
        if target.is_file():
            return
        if not target.parent.is_dir():
            private_dir(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            os.fchmod(fd, PRIVATE_FILE)  # mkstemp asks for 0600, minus the umask
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
