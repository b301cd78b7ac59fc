"""Runs one task in a child process, so a task that raises, crashes or hangs cannot take its
host down; what happened comes back as a :class:`TaskOutcome`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .channel import Channel
from .client import CHANNEL_ENV
from .host import TaskHost, serve

log = logging.getLogger("manta_mqtt.executor")


@dataclass
class TaskOutcome:
    ok: bool
    error: str = ""
    duration: float = 0.0


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _pump(stream: IO[bytes], prefix: str, tail: collections.deque[str]) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        tail.append(line)
        log.info("%s %s", prefix, line)


def run_task(
    bundle: Path,
    entry: str,
    host: TaskHost,
    *,
    timeout: float,
    workdir: Path,
    cancel: threading.Event | None = None,
    label: str = "task",
) -> TaskOutcome:
    """Run ``entry.main()`` from ``bundle`` with ``host`` answering its requests."""
    parent_sock, child_sock = socket.socketpair()
    env = dict(os.environ)
    env[CHANNEL_ENV] = str(child_sock.fileno())
    env.setdefault("PYTHONUNBUFFERED", "1")
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "manta_mqtt.runtime.child", str(bundle), entry],
        pass_fds=[child_sock.fileno()],
        env=env,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a kill reaches its children too
    )
    child_sock.close()
    assert proc.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=40)
    pump = threading.Thread(target=_pump, args=(proc.stdout, f"[{label}]", tail), daemon=True)
    pump.start()
    final: dict[str, Any] = {}
    channel = Channel(parent_sock)

    def serve_task() -> None:
        final.update(serve(channel, host) or {})

    server = threading.Thread(target=serve_task, name=f"serve-{label}", daemon=True)
    server.start()
    deadline = started + timeout
    killed = ""
    while proc.poll() is None:
        if time.monotonic() > deadline:
            killed = f"timed out after {timeout:.0f} s"
        elif cancel is not None and cancel.is_set():
            killed = "cancelled"
        if killed:
            _kill(proc)
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.1)
    proc.wait()
    channel.close()
    server.join(5)
    pump.join(5)
    duration = time.monotonic() - started
    if killed:
        return TaskOutcome(False, f"task {killed}", duration)
    if final.get("op") == "done" and proc.returncode == 0:
        return TaskOutcome(True, "", duration)
    if final.get("op") == "failed":
        return TaskOutcome(False, str(final.get("traceback", "task failed")), duration)
    output = "\n".join(tail)
    return TaskOutcome(False, f"task process {_describe_exit(proc.returncode)}\n{output}".strip(), duration)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
