"""Everything a run produced, on disk and readable after it: ``<runs>/<swarm id>/``.

``blobs/`` holds every value once (content-addressed); ``index.sqlite`` says which value is
which result (iteration, task, node, tag), which global version each iteration ended with, and
how every task run went. Open a finished run with :meth:`RunStore.open` and read it with
:meth:`RunStore.results`, :meth:`RunStore.global_value` and :meth:`RunStore.summary`.
A run is private to the user who ran it (folders 0700, files 0600): it holds every node's results.

Durability: SQLite in WAL mode with ``synchronous=NORMAL``, so a commit survives the coordinator
being killed (not a power cut, which may lose the last commits but never corrupts the index).
The coordinator batches its writes (:meth:`RunStore.batch`): results and runs are committed
together, at the latest :data:`COMMIT_EVERY` writes or :data:`COMMIT_WITHIN` seconds after the
first one, and always with a meta write (a checkpoint, the end of the run): a result is committed
by the time the step it belongs to is checkpointed. One killed before its batch was committed is
asked for again on ``--resume`` (its node sends it again from its outbox). Other users of a
store commit each write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..blobstore import PRIVATE_DIR, PRIVATE_FILE, BlobStore, private_dir
from ..protocol import codec

#: With :meth:`RunStore.batch` on: commit once this many writes wait ...
COMMIT_EVERY = 500
#: ... or this many seconds after the first of them (checked by :meth:`RunStore.commit_if_due`).
COMMIT_WITHIN = 0.25

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    iteration INTEGER NOT NULL, task TEXT NOT NULL, node TEXT NOT NULL, tag TEXT NOT NULL,
    sha TEXT NOT NULL, size INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (iteration, task, node, tag));
CREATE INDEX IF NOT EXISTS results_by_tag ON results (iteration, tag, node);
CREATE TABLE IF NOT EXISTS late_results (
    iteration INTEGER NOT NULL, task TEXT NOT NULL, node TEXT NOT NULL, tag TEXT NOT NULL,
    sha TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (iteration, task, node, tag));
CREATE TABLE IF NOT EXISTS runs (
    iteration INTEGER NOT NULL, task TEXT NOT NULL, node TEXT NOT NULL,
    ok INTEGER NOT NULL, error TEXT NOT NULL, duration REAL NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (iteration, task, node));
CREATE TABLE IF NOT EXISTS quarantine (
    iteration INTEGER NOT NULL, task TEXT NOT NULL, node TEXT NOT NULL, error TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (iteration, task, node));
CREATE TABLE IF NOT EXISTS globals (
    iteration INTEGER NOT NULL, tag TEXT NOT NULL, sha TEXT NOT NULL,
    PRIMARY KEY (iteration, tag));
"""


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root / "blobs")
        index = root / "index.sqlite"
        _create_private(index)  # SQLite gives its -wal and -shm files the mode of the database
        self._db = sqlite3.connect(index, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: a commit survives a kill, see above
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._batching = False
        self._closed = False
        self._pending = 0  # writes not committed yet (only while batching)
        self._pending_since = 0.0  # time.monotonic() of the first of them

    @classmethod
    def create(cls, runs_dir: str | Path, swarm_id: str, description: dict[str, Any]) -> RunStore:
        root = private_dir(runs_dir) / swarm_id
        root.mkdir(mode=PRIVATE_DIR)  # FileExistsError if taken: one run per folder
        os.chmod(root, PRIVATE_DIR)  # whatever the umask
        store = cls(root)
        store.set_meta("swarm", description)
        return store

    @classmethod
    def open(cls, path: str | Path) -> RunStore:
        root = Path(path)
        if not (root / "index.sqlite").is_file():
            raise FileNotFoundError(f"no run at {root} (expected index.sqlite)")
        return cls(root)

    def close(self) -> None:
        """Commit what waits and close; closing again does nothing."""
        if self._closed:
            return
        self.commit()
        self._db.close()
        self._closed = True

    # --- writing (coordinator) ---------------------------------------------------------------

    def batch(self, on: bool = True) -> None:
        """Group writes into fewer commits (see the module docstring); off: commit what waits."""
        self._batching = on
        if not on:
            self.commit()

    def commit(self) -> None:
        """Commit the writes that wait, if any."""
        with self._lock:
            self._commit()

    def _commit(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._pending = 0

    def commit_due(self) -> float | None:
        """When the writes that wait must be committed (time.monotonic()); None if none waits."""
        return self._pending_since + COMMIT_WITHIN if self._pending else None

    def commit_if_due(self, now: float) -> bool:
        """Commit if the oldest waiting write is :data:`COMMIT_WITHIN` seconds old; whether it did."""
        due = self.commit_due()
        if due is None or now < due:
            return False
        self.commit()
        return True

    def _write(self, sql: str, args: tuple[Any, ...], *, commit: bool = False) -> None:
        with self._lock:
            if not self._batching:
                self._db.execute(sql, args)
                return
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
                self._pending_since = time.monotonic()
            self._db.execute(sql, args)
            self._pending += 1
            if commit or self._pending >= COMMIT_EVERY:
                self._commit()

    def set_meta(self, key: str, value: Any) -> None:
        """Committed at once, with every write before it (a checkpoint covers the results it counts)."""
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)), commit=True)

    def put_value(self, data: bytes) -> str:
        return self.blobs.put(data)

    def add_result(self, iteration: int, task: str, node: str, tag: str, sha: str) -> None:
        size = self.blobs.path(sha).stat().st_size
        self._write(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
            (iteration, task, node, tag, sha, size, time.time()),
        )

    def add_late_result(self, iteration: int, task: str, node: str, tag: str, sha: str) -> None:
        """A straggler's result for a step that went on without it (never selected by tasks)."""
        self._write(
            "INSERT OR REPLACE INTO late_results VALUES (?, ?, ?, ?, ?, ?)",
            (iteration, task, node, tag, sha, time.time()),
        )

    def succeeded_nodes(self, iteration: int, task: str) -> dict[str, float]:
        """``{node: duration}`` of the runs of one step that succeeded."""
        rows = self._rows(
            "SELECT node, duration FROM runs WHERE iteration = ? AND task = ? AND ok = 1", (iteration, task)
        )
        return {node: duration for node, duration in rows}

    def late_results(self, tag: str) -> dict[int, dict[str, Any]]:
        """``{iteration: {node: value}}`` of stragglers' results for ``tag``."""
        out: dict[int, dict[str, Any]] = {}
        rows = self._rows("SELECT iteration, node, sha FROM late_results WHERE tag = ? ORDER BY at", (tag,))
        for it, node, sha in rows:
            out.setdefault(it, {})[node] = self.value(sha)
        return out

    def add_run(self, iteration: int, task: str, node: str, ok: bool, error: str, duration: float) -> None:
        self._write(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            (iteration, task, node, int(ok), error, duration, time.time()),
        )

    def add_quarantine(self, iteration: int, task: str, node: str, error: str) -> None:
        """``node``'s results alone made ``task`` fail in ``iteration``: it was set aside."""
        self._write(
            "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?)", (iteration, task, node, error, time.time())
        )

    def quarantined(self) -> list[dict[str, Any]]:
        """The nodes set aside, with the iteration, the task they made fail and its error."""
        rows = self._rows("SELECT iteration, task, node, error FROM quarantine ORDER BY at")
        return [dict(zip(("iteration", "task", "node", "error"), row, strict=True)) for row in rows]

    def set_globals(self, iteration: int, globals_: dict[str, str]) -> None:
        for tag, sha in globals_.items():
            self._write("INSERT OR REPLACE INTO globals VALUES (?, ?, ?)", (iteration, tag, sha))

    # --- reading (anyone) ------------------------------------------------------------------

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args))

    def meta(self, key: str, default: Any = None) -> Any:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def value(self, sha: str) -> Any:
        return codec.decode(self.blobs.get(sha))

    def result_shas(self, iteration: int, tag: str) -> dict[str, str]:
        """``{node: sha}`` of ``tag`` in ``iteration`` (the latest task's, per node): no value is read."""
        rows = self._rows(
            "SELECT node, sha FROM results WHERE iteration = ? AND tag = ? ORDER BY at",
            (iteration, tag),
        )
        return {node: sha for node, sha in rows}

    def result_sha(self, iteration: int, tag: str, node: str) -> str:
        """The sha of one node's ``tag`` in ``iteration`` (the latest task's), by the primary key's
        index: one row, where :meth:`result_shas` reads them all. KeyError if it has none."""
        rows = self._rows(
            "SELECT sha FROM results WHERE iteration = ? AND tag = ? AND node = ? ORDER BY at DESC LIMIT 1",
            (iteration, tag, node),
        )
        if not rows:
            raise KeyError(node)
        return str(rows[0][0])

    def raw_results(self, iteration: int, tag: str) -> dict[str, bytes]:
        """``{node: encoded value}`` of ``tag`` in ``iteration`` (the latest task's, per node)."""
        return {node: self.blobs.get(sha) for node, sha in self.result_shas(iteration, tag).items()}

    def step_results(self, iteration: int, task: str) -> list[tuple[str, str, str, int]]:
        """``(node, tag, sha, size)`` of every result one step produced."""
        return [
            (r[0], r[1], r[2], r[3])
            for r in self._rows(
                "SELECT node, tag, sha, size FROM results WHERE iteration = ? AND task = ? ORDER BY node, tag",
                (iteration, task),
            )
        ]

    def results(self, tag: str, iteration: int | None = None) -> dict[int, dict[str, Any]]:
        """``{iteration: {node: value}}`` for ``tag`` (one iteration if given)."""
        sql = "SELECT iteration, node, sha FROM results WHERE tag = ?"
        args: tuple[Any, ...] = (tag,)
        if iteration is not None:
            sql += " AND iteration = ?"
            args += (iteration,)
        out: dict[int, dict[str, Any]] = {}
        for it, node, sha in self._rows(sql + " ORDER BY iteration, at", args):
            out.setdefault(it, {})[node] = self.value(sha)
        return out

    def tags(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT tag FROM results ORDER BY tag")]

    def iterations(self) -> list[int]:
        return [r[0] for r in self._rows("SELECT DISTINCT iteration FROM runs ORDER BY iteration")]

    def nodes(self) -> list[str]:
        """Every node that ran a task in this run (not the coordinator)."""
        return [r[0] for r in self._rows("SELECT DISTINCT node FROM runs WHERE node != 'coordinator' ORDER BY node")]

    def small_results(self, max_bytes: int) -> list[tuple[int, str, str, Any]]:
        """``(iteration, node, tag, value)`` of every result up to ``max_bytes`` (metrics, not models)."""
        rows = self._rows(
            "SELECT iteration, node, tag, sha FROM results WHERE size <= ? ORDER BY iteration, node, tag", (max_bytes,)
        )
        out = []
        for it, node, tag, sha in rows:
            try:
                out.append((it, node, tag, self.value(sha)))
            except codec.CodecError:
                continue
        return out

    def global_value(self, tag: str, iteration: int | None = None) -> Any:
        """The value ``tag`` had at the end of ``iteration`` (default: the last one)."""
        sql = "SELECT sha FROM globals WHERE tag = ?"
        args: tuple[Any, ...] = (tag,)
        if iteration is not None:
            sql += " AND iteration <= ?"
            args += (iteration,)
        rows = self._rows(sql + " ORDER BY iteration DESC LIMIT 1", args)
        if not rows:
            raise KeyError(tag)
        return self.value(rows[0][0])

    def runs(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT iteration, task, node, ok, error, duration FROM runs ORDER BY iteration, at")
        keys = ("iteration", "task", "node", "ok", "error", "duration")
        return [dict(zip(keys, row, strict=True)) | {"ok": bool(row[3])} for row in rows]

    def summary(self) -> dict[str, Any]:
        return {
            "swarm": self.meta("swarm", {}),
            "final": self.meta("final", {}),
            "iterations": len(self.iterations()),
            "tags": self.tags(),
            "failed_runs": sum(1 for r in self.runs() if not r["ok"]),
            "quarantined": self.quarantined(),
        }


def _create_private(path: Path) -> None:
    """Create an empty ``path`` as 0600 (whatever the umask) unless it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
