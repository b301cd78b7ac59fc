"""Shared bits of the benchmarks: where results go, a median of repeated timings, and the memory
and CPU of a process together with its descendants (read from /proc)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


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
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of the process and its live descendants (a child that exited meanwhile is lost)."""
    return sum(cpu_seconds(p) for p in [pid, *descendants(pid)])
