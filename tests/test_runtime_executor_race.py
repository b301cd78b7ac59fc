"""The end of a task run: the task's final frame must be read even when the server thread is slow.

A child can send "done" and exit before the server thread has read the frame (a busy host, a
loaded CPU). The frame then waits in the socket buffer; run_task must drain it before closing
the channel, or a task that succeeded is reported failed ("task process exited with code 0").
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from manta_mqtt.runtime import executor
from manta_mqtt.runtime.channel import Channel
from manta_mqtt.runtime.executor import run_task
from manta_mqtt.runtime.host import TaskHost
from manta_mqtt.runtime.host import serve as real_serve

from .test_runtime_executor import MemoryHost, bundle

PID_TASK = "import os\ndef main():\n    open('pid', 'w').write(str(os.getpid()))\n"


Serve = Callable[[Channel, TaskHost], dict[str, Any] | None]


def _reaped(pid_file: Path) -> bool:
    """The task wrote its pid there, exited, and run_task has reaped it."""
    text = pid_file.read_text() if pid_file.exists() else ""
    if not text:
        return False
    try:
        os.kill(int(text), 0)  # succeeds on a live process and on an unreaped zombie
    except ProcessLookupError:
        return True
    return False


def _late_serve(workdir: Path) -> Serve:
    """``serve`` that starts only once the child has been reaped (or the channel was closed).

    That is the losing side of the race, made certain: the child's "done" frame sits unread in
    the socket buffer while run_task decides what to do with the channel.
    """

    def late(channel: Channel, host: TaskHost) -> dict[str, Any] | None:
        give_up = time.monotonic() + 30
        reaped_at = 0.0
        while time.monotonic() < give_up and channel.sock.fileno() != -1:
            if not reaped_at and _reaped(workdir / "pid"):
                reaped_at = time.monotonic()
            if reaped_at and time.monotonic() - reaped_at > 0.3:
                break  # the child is gone and the channel still open: run_task is waiting for us
            time.sleep(0.01)
        return real_serve(channel, host)

    return late


def test_final_frame_read_after_the_child_exited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the server thread reads "done" only after the child was reaped; still ok."""
    workdir = tmp_path / "work"
    monkeypatch.setattr(executor, "serve", _late_serve(workdir))
    outcome = run_task(bundle(tmp_path, PID_TASK), "usertask", MemoryHost(), timeout=60, workdir=workdir)
    assert outcome.ok, outcome.error


@pytest.mark.parametrize(
    "source",
    [
        "def main():\n    pass\n",
        "from manta_light.task import Task\ndef main():\n    Task().world.results.add('r', 1)\n",
    ],
    ids=["trivial", "with-requests"],
)
def test_slow_server_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """A server thread that starts half a second late still gets the task's requests and its end."""

    def slow(channel: Channel, host: TaskHost) -> dict[str, Any] | None:
        time.sleep(0.5)
        return real_serve(channel, host)

    monkeypatch.setattr(executor, "serve", slow)
    host = MemoryHost()
    outcome = run_task(bundle(tmp_path, source), "usertask", host, timeout=60, workdir=tmp_path / "w")
    assert outcome.ok, outcome.error
    assert "Task()" not in source or "r" in host.results


def test_back_to_back_trivial_runs(tmp_path: Path) -> None:
    """Many short runs in a row, each one ok: the end-of-run path has no timing luck in it."""
    path = bundle(tmp_path, "def main():\n    pass\n")
    started = time.monotonic()
    for i in range(30):
        outcome = run_task(path, "usertask", MemoryHost(), timeout=60, workdir=tmp_path / "w", label=f"run{i}")
        assert outcome.ok, f"run {i}: {outcome.error}"
    assert time.monotonic() - started < 60


GRANDCHILD_TASK = """
import os, subprocess, sys
def main():
    fd = int(os.environ["MANTA_CHANNEL_FD"])
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        pass_fds=[fd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    open("grandchild", "w").write(str(child.pid))
"""


@pytest.mark.parametrize(
    ("ending", "expected"),
    [("", ""), ("    os._exit(3)\n", "exited with code 3")],
    ids=["returns", "exits-without-final-frame"],
)
def test_grandchild_holding_the_channel_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, ending: str, expected: str
) -> None:
    """A grandchild that inherited the channel keeps it open after the task exited: run_task
    still returns soon after the drain bound, with the right outcome, and leaves no server thread.
    """
    monkeypatch.setattr(executor, "DRAIN_TIMEOUT", 0.5)
    workdir = tmp_path / "work"
    started = time.monotonic()
    try:
        outcome = run_task(
            bundle(tmp_path, GRANDCHILD_TASK + ending),
            "usertask",
            MemoryHost(),
            timeout=60,
            workdir=workdir,
            label="gc",
        )
    finally:
        pid_file = workdir / "grandchild"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert outcome.ok == (not expected), outcome.error
    assert expected in outcome.error
    assert time.monotonic() - started < 10
    assert not [t for t in threading.enumerate() if t.name == "serve-gc"]
    # without a final frame the server waits on the open socket until run_task shuts it down
    assert ("still open after it exited" in caplog.text) == bool(expected)


def test_channel_closed_after_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_task closes its end of the socket pair once the server thread is done with it."""
    sockets: list[socket.socket] = []

    def recording(channel: Channel, host: TaskHost) -> dict[str, Any] | None:
        sockets.append(channel.sock)
        return real_serve(channel, host)

    monkeypatch.setattr(executor, "serve", recording)
    outcome = run_task(
        bundle(tmp_path, "def main():\n    pass\n"), "usertask", MemoryHost(), timeout=60, workdir=tmp_path
    )
    assert outcome.ok, outcome.error
    assert [s.fileno() for s in sockets] == [-1]
