"""bench/_common.TreeCpu: the CPU of a process tree, sampled from /proc, loses nothing and never
decreases (bench_scale.py's coordinator figure came out negative when it summed live processes)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_common", Path(__file__).parent.parent / "bench" / "_common.py")
assert _spec is not None and _spec.loader is not None
common = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = common  # dataclasses look their module up there
_spec.loader.exec_module(common)
ProcStat, TreeCpu = common.ProcStat, common.TreeCpu

ROOT, TASK, SENTINEL, OTHER = 100, 200, 201, 300


def stat(ppid: int, own: int, reaped: int = 0, start: int = 1) -> object:
    return ProcStat(ppid=ppid, start=start, own=own, reaped=reaped)


def test_a_reaped_child_moves_into_the_parents_reaped_time_once() -> None:
    tree = TreeCpu(ROOT)
    assert tree.update({ROOT: stat(1, 10), TASK: stat(ROOT, 20), OTHER: stat(1, 99)}) == (10, 30)
    assert tree.update({ROOT: stat(1, 11), TASK: stat(ROOT, 25)}) == (11, 36)
    # the task exits: a zombie keeps its times until the root waits for it
    assert tree.update({ROOT: stat(1, 12), TASK: stat(ROOT, 26)}) == (12, 38)
    assert tree.update({ROOT: stat(1, 13, reaped=26)}) == (13, 39)  # not 39 + 26


def test_a_child_reaped_while_proc_was_read_does_not_make_it_go_down() -> None:
    tree = TreeCpu(ROOT)
    assert tree.update({ROOT: stat(1, 10), TASK: stat(ROOT, 20)}) == (10, 30)
    # the root's stat read before the reap, the task's after: in neither (what made the figure negative)
    assert tree.update({ROOT: stat(1, 11)}) == (11, 30)
    assert tree.update({ROOT: stat(1, 12, reaped=21)}) == (12, 33)


def test_an_orphaned_grandchild_is_followed_and_kept_when_it_exits() -> None:
    tree = TreeCpu(ROOT)
    first = {ROOT: stat(1, 10), TASK: stat(ROOT, 20), SENTINEL: stat(TASK, 2)}
    assert tree.update(first) == (10, 32)
    # the task exits and is reaped by the root; its sentinel goes to init but still counts
    assert tree.update({ROOT: stat(1, 10, reaped=20), SENTINEL: stat(1, 3)}) == (10, 33)
    assert tree.update({ROOT: stat(1, 10, reaped=20), SENTINEL: stat(1, 4)}) == (10, 34)
    # init reaps it: its CPU is in nobody's reaped time of the tree, so it is banked
    assert tree.update({ROOT: stat(1, 11, reaped=20)}) == (11, 35)
    # a new process given the sentinel's pid is not part of the tree
    assert tree.update({ROOT: stat(1, 11, reaped=20), SENTINEL: stat(1, 50, start=9)}) == (11, 35)


def test_the_root_gone_or_its_pid_reused() -> None:
    tree = TreeCpu(ROOT)
    assert tree.update({ROOT: stat(1, 10)}) == (10, 10)
    assert tree.update({ROOT: stat(1, 3, start=7)}) is None
    assert tree.update({}) is None


def test_sample_counts_a_real_child_that_exited() -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass\n"
    parent = "import subprocess, sys, time\n"
    parent += f"subprocess.run([sys.executable, '-c', {burn!r}], check=True)\ntime.sleep(30)\n"
    proc = subprocess.Popen([sys.executable, "-c", parent])
    tree = TreeCpu(proc.pid)
    try:
        seen = [tree.sample()]
        deadline = time.monotonic() + 20
        while (common.proc_stat(proc.pid) or stat(0, 0)).reaped == 0 and time.monotonic() < deadline:
            seen.append(tree.sample())  # until the child has exited and been reaped
        seen.append(tree.sample())
        totals = [cpu[1] for cpu in seen if cpu is not None]
        assert len(totals) == len(seen)
        assert totals == sorted(totals)
        assert totals[-1] >= 0.2  # the child's 0.2 s, though it no longer runs
    finally:
        proc.kill()
        proc.wait()
    assert tree.sample() is None
