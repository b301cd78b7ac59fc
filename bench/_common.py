"""Shared bits of the benchmarks: where results go, a median of repeated timings, and the memory
and CPU of a process together with its descendants (read from /proc)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TICKS = os.sysconf("SC_CLK_TCK")


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls, after one warm-up call that is not counted."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def write(name: str, rows: list[dict[str, Any]], **meta: Any) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": platform.machine(), "python": platform.python_version(), **meta, "rows": rows}
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (field 3, the state, is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """The process's children, grandchildren and so on, alive now (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, [])
    return found


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` line of /proc/PID/status (``VmRSS``, ``VmHWM``); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> list[tuple[str, int]]:
    """(the start of its command line, VmRSS KiB) of the process and of each descendant, now."""
    rows = []
    for p in [pid, *descendants(pid)]:
        try:
            argv = [w.decode(errors="replace") for w in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0") if w]
        except OSError:
            continue
        label = " ".join([Path(argv[0]).name, *argv[1:3]])[:60] if argv else "?"
        rows.append((label, status_kib(p, "VmRSS")))
    return rows


def tree_rss_kib(pid: int) -> int:
    """VmRSS of the process plus that of every descendant, now (pages they share count twice)."""
    return sum(kib for _, kib in tree_rss(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (/proc/PID/stat fields 14 and 15); 0 once gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of the process and its live descendants (a child that exited meanwhile is lost;
    :class:`TreeCpu` follows a tree over time and loses none)."""
    return sum(cpu_seconds(p) for p in [pid, *descendants(pid)])


@dataclass(frozen=True)
class ProcStat:
    """What :class:`TreeCpu` reads of one /proc/PID/stat; CPU in clock ticks."""

    ppid: int  # field 4
    start: int  # field 22, starttime: tells a process from a later one given the same pid
    own: int  # utime + stime, fields 14 and 15: the process's threads, live and exited
    reaped: int  # cutime + cstime, fields 16 and 17: the children it has waited for (with theirs)


def proc_stat(pid: int) -> ProcStat | None:
    """The process's :class:`ProcStat`; None once it is gone (a zombie still has one)."""
    try:
        f = _stat_fields(pid)
        return ProcStat(ppid=int(f[1]), start=int(f[19]), own=int(f[11]) + int(f[12]), reaped=int(f[13]) + int(f[14]))
    except (OSError, IndexError, ValueError):
        return None


def proc_table() -> dict[int, ProcStat]:
    """Every process's :class:`ProcStat`, by pid (one scan of /proc, so not one instant)."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) is not None:
            table[int(entry.name)] = stat
    return table


Key = tuple[int, int]  # (pid, starttime): one process, even after its pid is reused


class TreeCpu:
    """The CPU time of a process and of every process it started, sampled now and then; never
    decreasing, and losing no process that exits.

    Each :meth:`update` counts, for the *members* (the root, its descendants, and any process once
    seen among them that was since reparented, with their descendants), own + reaped CPU
    (utime + stime + cutime + cstime), plus the last figure of each member that was reparented
    (orphaned) before it exited (*banked*, as whoever reaps it is outside the tree). Every CPU
    second of the tree is then in exactly one place: a live or zombie process's own time, or the
    ``reaped`` time of the member that waited for it (the kernel moves a child's own + reaped
    time into its parent's cutime + cstime when the parent reaps it, atomically). Summing only
    the live processes' own time instead, as :func:`tree_cpu_seconds` does, loses a child's CPU
    once it exits, and summing the root's reaped time with it is right only for an instant:
    /proc is read one file after the other, and a child reaped between the read of its parent
    and that of itself is in neither. :meth:`sample` re-reads until no member was reaped during
    the read; the running maximum on top guards the one case the sum cannot see (a process
    orphaned and reaped outside the tree between two samples: its CPU is lost from then on).
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self._root_start: int | None = None
        self._last: dict[Key, tuple[ProcStat, Key | None]] = {}  # each member: its last stat, its parent if a member
        self._banked = 0  # ticks of members that exited orphaned
        self._total = 0

    def members(self, table: Mapping[int, ProcStat]) -> set[int]:
        """The pids of ``table`` that count: the root's tree, and any process seen in it before with its tree."""
        children: dict[int, list[int]] = {}
        for pid, stat in table.items():
            children.setdefault(stat.ppid, []).append(pid)
        found: set[int] = set()
        todo = [self.root, *(pid for pid, stat in table.items() if (pid, stat.start) in self._last)]
        while todo:
            pid = todo.pop()
            if pid not in found and pid in table:
                found.add(pid)
                todo += children.get(pid, [])
        return found

    def update(self, table: Mapping[int, ProcStat]) -> tuple[int, int] | None:
        """(the root's own ticks, the whole tree's) as of ``table``, a snapshot of /proc; None once
        the root is gone. The second never decreases from one call to the next."""
        root = table.get(self.root)
        if root is None or self._root_start not in (None, root.start):
            return None
        self._root_start = root.start
        members = self.members(table)
        keys = {pid: (pid, table[pid].start) for pid in members}
        now = set(keys.values())
        for key, (stat, parent) in list(self._last.items()):
            if key not in now:  # exited (and reaped: a zombie is still in the table)
                del self._last[key]
                if parent is None:  # an orphan: not waited for by a member, so in nobody's reaped time
                    self._banked += stat.own + stat.reaped
        for pid, key in keys.items():
            self._last[key] = (table[pid], keys.get(table[pid].ppid))
        raw = sum(table[pid].own + table[pid].reaped for pid in members) + self._banked
        self._total = max(self._total, raw)
        return root.own, self._total

    def sample(self, attempts: int = 5) -> tuple[float, float] | None:
        """Read /proc and :meth:`update`, in seconds. A read during which a member was reaped (one
        that is gone or whose reaped time changed when read again) is read again."""
        for _ in range(attempts):
            table = proc_table()
            if all(_unreaped(pid, table[pid]) for pid in self.members(table)):
                break
        cpu = self.update(table)
        return None if cpu is None else (cpu[0] / TICKS, cpu[1] / TICKS)


def _unreaped(pid: int, seen: ProcStat) -> bool:
    """The process is still there and has waited for no child since ``seen`` was read."""
    again = proc_stat(pid)
    return again is not None and (again.start, again.reaped) == (seen.start, seen.reaped)
