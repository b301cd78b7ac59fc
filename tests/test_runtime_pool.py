"""Warm task processes (runtime/pool.py) in real child processes: kept and reused per swarm, code
and entry; replaced after a crash, a failure, a timeout, a cancel or past the RSS limit; ended
when idle, when their swarm ends and when the host stops, or killed by their sentinel when the
host dies. No timed assertion: waits poll for a condition, with a generous bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from manta_mqtt.protocol import codec
from manta_mqtt.runtime.executor import TaskOutcome
from manta_mqtt.runtime.pool import TaskProcesses
from manta_mqtt.runtime.reuse import ReuseSettings

from .conftest import ROOT
from .test_runtime_executor import MemoryHost, bundle

#: Counts its runs in a module global: the count goes on only in a process that is reused.
COUNTER = """
import os, sys
from manta_light.task import Task

RUNS = 0

def main():
    global RUNS
    RUNS += 1
    task = Task()
    mode = task.world.globals["mode"]
    print(f"run {RUNS} of {os.getpid()} in iteration {task.world.iteration}", flush=True)
    task.world.results.add("seen", {
        "pid": os.getpid(), "runs": RUNS, "iteration": task.world.iteration, "swarm": task.swarm_id,
    })
    if mode == "raise":
        raise ValueError("bad run")
    if mode == "segfault":
        import ctypes
        ctypes.string_at(0)
    if mode == "exit":
        os._exit(3)
    if mode == "hang":
        import time
        time.sleep(600)
"""


class Host(MemoryHost):
    """A run's host: its swarm and iteration in the context, and what the task should do."""

    def __init__(self, swarm: str = "s", iteration: int = 0, mode: str = "ok") -> None:
        super().__init__()
        self.swarm, self.iteration = swarm, iteration
        self.globals["mode"] = codec.encode(mode)

    def context(self) -> dict[str, Any]:
        return {"node": "me", "swarm": self.swarm, "iteration": self.iteration, "task": "t", "datasets": {}}

    def seen(self) -> dict[str, Any]:
        value: dict[str, Any] = codec.decode(self.results["seen"])
        return value


@pytest.fixture
def pool() -> Iterator[TaskProcesses]:
    processes = TaskProcesses(ReuseSettings())
    yield processes
    processes.close()


def run(pool: TaskProcesses, tmp_path: Path, host: Host, code: str = "sha1", **kwargs: Any) -> tuple[TaskOutcome, Host]:
    options: dict[str, Any] = {"timeout": 60.0, "workdir": tmp_path / "work" / host.swarm, "label": "t"}
    options.update(kwargs)
    folder = tmp_path / "code" / code  # each code its own bundle; the entry is the same
    folder.mkdir(parents=True, exist_ok=True)
    return pool.run(bundle(folder, COUNTER), "usertask", host, swarm=host.swarm, code=code, **options), host


def gone(pid: int) -> bool:
    """The process has exited and been reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def eventually(condition: Callable[[], bool], within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_warm_process_runs_the_same_task_again(pool: TaskProcesses, tmp_path: Path) -> None:
    """Same pid, the module global counts on, and each run sees its own context."""
    first, host1 = run(pool, tmp_path, Host(iteration=0))
    second, host2 = run(pool, tmp_path, Host(iteration=1))
    assert first.ok and second.ok, (first.error, second.error)
    assert host1.seen()["pid"] == host2.seen()["pid"]
    assert [host1.seen()["runs"], host2.seen()["runs"]] == [1, 2]
    assert [host1.seen()["iteration"], host2.seen()["iteration"]] == [0, 1]
    assert list(pool.pids().values()) == [host2.seen()["pid"]]


def test_never_shared_between_swarms(pool: TaskProcesses, tmp_path: Path) -> None:
    _, a = run(pool, tmp_path, Host("a"))
    _, b = run(pool, tmp_path, Host("b"))
    assert a.seen()["pid"] != b.seen()["pid"]
    assert (a.seen()["swarm"], b.seen()["swarm"], b.seen()["runs"]) == ("a", "b", 1)
    assert sorted(key.swarm for key in pool.pids()) == ["a", "b"]


def test_new_code_replaces_the_process(pool: TaskProcesses, tmp_path: Path) -> None:
    _, old = run(pool, tmp_path, Host(), code="sha1")
    _, new = run(pool, tmp_path, Host(), code="sha2")
    assert new.seen()["pid"] != old.seen()["pid"] and new.seen()["runs"] == 1
    assert gone(old.seen()["pid"])
    assert [key.code for key in pool.pids()] == ["sha2"]


@pytest.mark.parametrize(
    ("mode", "error"),
    [("segfault", "SIGSEGV"), ("exit", "exited with code 3"), ("raise", "ValueError: bad run")],
)
def test_a_failed_run_replaces_the_process(pool: TaskProcesses, tmp_path: Path, mode: str, error: str) -> None:
    """A crash is reported with its signal and this run's output; the next run starts afresh."""
    _, warm = run(pool, tmp_path, Host(iteration=0))
    failed, host = run(pool, tmp_path, Host(iteration=1, mode=mode))
    assert not failed.ok and error in failed.error
    assert host.seen()["pid"] == warm.seen()["pid"]  # it did run in the warm process
    if mode != "raise":  # the tail quotes this run's output, not the previous run's
        assert "in iteration 1" in failed.error and "in iteration 0" not in failed.error
    assert pool.pids() == {}
    assert eventually(lambda: gone(warm.seen()["pid"]))
    again, fresh = run(pool, tmp_path, Host(iteration=2))
    assert again.ok and fresh.seen()["runs"] == 1 and fresh.seen()["pid"] != warm.seen()["pid"]


def test_a_timeout_kills_and_replaces_the_process(pool: TaskProcesses, tmp_path: Path) -> None:
    _, warm = run(pool, tmp_path, Host())
    hung, _ = run(pool, tmp_path, Host(mode="hang"), timeout=1.0)
    assert not hung.ok and "timed out" in hung.error
    assert pool.pids() == {} and gone(warm.seen()["pid"])
    again, fresh = run(pool, tmp_path, Host())
    assert again.ok and fresh.seen()["runs"] == 1


def test_a_cancel_kills_and_replaces_the_process(pool: TaskProcesses, tmp_path: Path) -> None:
    _, warm = run(pool, tmp_path, Host())
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    cancelled, _ = run(pool, tmp_path, Host(mode="hang"), cancel=cancel)
    assert not cancelled.ok and "cancelled" in cancelled.error
    assert pool.pids() == {} and gone(warm.seen()["pid"])


def test_a_process_past_the_rss_limit_is_not_kept(tmp_path: Path) -> None:
    pool = TaskProcesses(ReuseSettings(max_rss_mib=1))  # any Python process is larger
    try:
        outcome, host = run(pool, tmp_path, Host())
        assert outcome.ok and pool.pids() == {}
        assert gone(host.seen()["pid"])
        _, again = run(pool, tmp_path, Host())
        assert again.seen()["runs"] == 1
    finally:
        pool.close()


def test_reuse_off_runs_each_time_in_a_fresh_process(tmp_path: Path) -> None:
    pool = TaskProcesses(ReuseSettings(enabled=False))
    try:
        first, one = run(pool, tmp_path, Host())
        second, two = run(pool, tmp_path, Host())
        assert first.ok and second.ok
        assert one.seen()["pid"] != two.seen()["pid"] and two.seen()["runs"] == 1
        assert pool.pids() == {} and gone(one.seen()["pid"])
    finally:
        pool.close()


def test_an_idle_process_is_reaped(tmp_path: Path) -> None:
    pool = TaskProcesses(ReuseSettings(idle_seconds=0.2))
    try:
        _, host = run(pool, tmp_path, Host())
        pid = host.seen()["pid"]
        assert not gone(pid)
        assert eventually(lambda: bool(pool.reap()))
        assert pool.pids() == {} and gone(pid)
    finally:
        pool.close()


def test_reaping_follows_the_clock(tmp_path: Path) -> None:
    """The idle time is the pool's clock's: nothing goes before it, everything at it."""
    now = [100.0]
    pool = TaskProcesses(ReuseSettings(idle_seconds=300), clock=lambda: now[0])
    try:
        run(pool, tmp_path, Host("a"))
        now[0] = 250.0
        run(pool, tmp_path, Host("b"))
        now[0] = 399.0
        assert pool.reap() == [] and len(pool.pids()) == 2
        now[0] = 400.0
        assert [key.swarm for key in pool.reap()] == ["a"]
        assert [key.swarm for key in pool.pids()] == ["b"]
    finally:
        pool.close()


def test_a_swarm_end_and_the_host_stop_end_the_processes(pool: TaskProcesses, tmp_path: Path) -> None:
    _, a = run(pool, tmp_path, Host("a"))
    _, b = run(pool, tmp_path, Host("b"))
    pool.end_swarm("a")
    assert [key.swarm for key in pool.pids()] == ["b"] and gone(a.seen()["pid"])
    pool.close()
    assert pool.pids() == {} and gone(b.seen()["pid"])


HOST = """
import sys
from pathlib import Path
from manta_mqtt.runtime.pool import TaskProcesses

class Host:
    def context(self):
        return {}

pool = TaskProcesses()
outcome = pool.run(Path(sys.argv[1]), "usertask", Host(), swarm="s", code="c", timeout=60, workdir=Path(sys.argv[2]))
print(outcome.ok, list(pool.pids().values())[0], flush=True)
sys.stdin.read()  # idle until killed
"""


def test_a_killed_host_takes_its_idle_warm_processes_along(tmp_path: Path) -> None:
    """The sentinel still watches a process between runs: SIGKILL the host, the task goes."""
    source = "import os\ndef main():\n    open('pid', 'w').write(str(os.getpid()))\n"
    path, work = bundle(tmp_path, source), tmp_path / "work"
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(path), str(work)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert host.stdout is not None
        ok, pid = host.stdout.readline().split()
        assert ok == b"True" and int(pid) == int((work / "pid").read_text())
        assert not gone(int(pid))
    finally:
        host.kill()
        host.wait()
    assert eventually(lambda: _not_running(int(pid)))


def _not_running(pid: int) -> bool:
    """Gone, or a zombie waiting for init (its parent, the host, is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
