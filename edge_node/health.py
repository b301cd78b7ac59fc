"""The node's health for its status heartbeat, read from /proc, /sys and statvfs.

No psutil: the agent stays small (paho, msgpack, numpy, cryptography, msgspec) and every number
here is one file read on Linux. A value the machine cannot give (no thermal sensor, a kernel
without ``MemAvailable``, a /proc that is not there) is None, never an error: health must not
stop a node from announcing itself.

Owned by the agent's main thread (it keeps the previous CPU sample, to give the CPU use over the
interval since the last status).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("edge_node.health")

#: Thermal zone types that name the SoC or CPU, preferred to others (a Pi's is "cpu-thermal").
SOC_ZONES = ("cpu", "soc", "x86_pkg_temp", "package")


@dataclass(frozen=True)
class Health:
    uptime: float  # seconds since the agent started
    cpu: float | None = None  # % of the whole machine busy since the previous reading, 0-100
    load1: float | None = None
    mem_used: int | None = None  # bytes
    mem_total: int | None = None
    rss: int | None = None  # bytes, the agent process
    disk_free: int | None = None  # bytes available to the agent on its data_dir's filesystem
    disk_total: int | None = None
    temp: float | None = None  # degrees C

    def fields(self) -> dict[str, Any]:
        """As keyword arguments of :class:`NodeStatus`."""
        return asdict(self)


class HealthProbe:
    """Reads the machine's health; ``read()`` is called by the agent's main thread only."""

    def __init__(
        self,
        data_dir: Path,
        *,
        proc: Path = Path("/proc"),
        thermal: Path = Path("/sys/class/thermal"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data_dir = data_dir
        self.proc = proc
        self.thermal = thermal
        self.clock = clock
        self.started = clock()
        self._cpu_sample = self._cpu_times()  # (busy, total) jiffies at the previous reading

    def read(self) -> Health:
        return Health(
            uptime=round(self.clock() - self.started, 1),
            cpu=self._cpu_percent(),
            load1=self._load1(),
            rss=self._rss(),
            temp=self._temperature(),
            **self._memory(),
            **self._disk(),
        )

    # --- one reader per source; each returns None (or {}) when its source is missing or odd ------

    def _cpu_times(self) -> tuple[int, int] | None:
        """The machine's (busy, total) CPU time since boot, in jiffies, from the first line of /proc/stat."""
        line = _first_line(self.proc / "stat")
        if line is None or not line.startswith("cpu "):
            return None
        try:
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user, nice]
            values = [int(v) for v in line.split()[1:9]]
        except ValueError:
            return None
        if len(values) < 4:
            return None
        total = sum(values)
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return total - idle, total

    def _cpu_percent(self) -> float | None:
        now, before = self._cpu_times(), self._cpu_sample
        self._cpu_sample = now
        if now is None or before is None or now[1] <= before[1]:
            return None  # no source, or no tick since the previous reading
        busy = (now[0] - before[0]) / (now[1] - before[1])
        return round(min(100.0, max(0.0, 100.0 * busy)), 1)

    def _load1(self) -> float | None:
        line = _first_line(self.proc / "loadavg")
        try:
            return float(line.split()[0]) if line else None
        except (ValueError, IndexError):
            return None

    def _memory(self) -> dict[str, int | None]:
        """Used and total bytes; used = total - available (what the kernel could give without swapping)."""
        info: dict[str, int] = {}
        for line in _lines(self.proc / "meminfo"):
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                info[name] = int(parts[0]) * 1024  # kB
        total = info.get("MemTotal")
        available = info.get("MemAvailable")
        if available is None and "MemFree" in info:  # kernels before 3.14
            available = info["MemFree"] + info.get("Buffers", 0) + info.get("Cached", 0)
        if total is None or available is None:
            return {"mem_used": None, "mem_total": total}
        return {"mem_used": max(0, min(total, total - available)), "mem_total": total}

    def _rss(self) -> int | None:
        """The agent's resident memory, from /proc/self/statm (pages)."""
        line = _first_line(self.proc / "self" / "statm")
        try:
            return int(line.split()[1]) * os.sysconf("SC_PAGE_SIZE") if line else None
        except (ValueError, IndexError, OSError):
            return None

    def _disk(self) -> dict[str, int | None]:
        path = self.data_dir
        while not path.exists() and path != path.parent:  # not created yet: its filesystem is the parent's
            path = path.parent
        try:
            st = os.statvfs(path)
        except OSError:
            return {"disk_free": None, "disk_total": None}
        return {"disk_free": st.f_bavail * st.f_frsize, "disk_total": st.f_blocks * st.f_frsize}

    def _temperature(self) -> float | None:
        """The SoC's temperature: the first thermal zone whose type names the CPU or SoC, else the
        first zone that reads at all; None on a machine without one (most VMs and containers)."""
        zones: list[tuple[bool, str, float]] = []
        try:
            found = sorted(self.thermal.glob("thermal_zone*"))
        except OSError:
            return None
        for zone in found:
            raw = _first_line(zone / "temp")
            try:
                millidegrees = int(raw) if raw else None
            except ValueError:
                continue
            if millidegrees is None:
                continue
            kind = (_first_line(zone / "type") or "").lower()
            zones.append((not any(name in kind for name in SOC_ZONES), zone.name, millidegrees / 1000))
        return round(min(zones)[2], 1) if zones else None


class TaskClock:
    """When the running task started (unix s), for its elapsed time; the main thread's."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._current: tuple[object, float] | None = None

    def started(self, running: object | None) -> float | None:
        """The start of ``running`` (any object standing for the job), timed when first seen."""
        if running is None:
            self._current = None
            return None
        if self._current is None or self._current[0] is not running:
            self._current = (running, round(self.clock(), 3))
        return self._current[1]


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        log.debug("cannot read %s: %s", path, exc)
        return []


def _first_line(path: Path) -> str | None:
    lines = _lines(path)
    return lines[0].strip() if lines else None
