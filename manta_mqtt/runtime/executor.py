"""Runs one task in a child process, so a task that raises, crashes or hangs cannot take its
host down; what happened comes back as a :class:`TaskOutcome`.

Three threads take part in a run. The thread that calls :func:`run_task` owns the child process
and the channel: it alone waits for, kills and reaps the process, and closes the channel. The
server thread only answers the task's requests, until the task's final frame or the end of the
channel. The pump thread only reads the child's stdout into the log and a tail for the report.
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

from ..blobstore import private_dir
from .channel import Channel
from .client import CHANNEL_ENV
from .host import TaskHost, serve
from .ops import Op
from .sentinel import GUARD_ENV

log = logging.getLogger("manta_mqtt.executor")

#: How long, once the child has exited, to wait for the server and pump threads to read what it
#: left in the socket and the pipe. Only a grandchild still holding them open makes this wait.
DRAIN_TIMEOUT = 5.0


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
    """The pump thread: log the child's output and keep its tail, until EOF on the pipe."""
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
    """Run ``entry.main()`` from ``bundle`` with ``host`` answering its requests.

    Returns once the child has exited (or was killed at ``timeout`` or on ``cancel``) and the
    server thread has read its final frame; ``host`` is called only on the server thread.
    """
    parent_sock, child_sock = socket.socketpair()
    guard_read, guard_write = os.pipe()  # we hold the write end until the child is reaped (sentinel.py)
    env = dict(os.environ)
    env[CHANNEL_ENV] = str(child_sock.fileno())
    env[GUARD_ENV] = str(guard_read)
    env.setdefault("PYTHONUNBUFFERED", "1")
    private_dir(workdir)  # the task's files are the node's or coordinator's, nobody else's
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "manta_mqtt.runtime.child", str(bundle), entry],
            pass_fds=[child_sock.fileno(), guard_read],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill reaches its children too
        )
    except BaseException:
        os.close(guard_write)
        parent_sock.close()
        raise
    finally:
        child_sock.close()
        os.close(guard_read)
    try:
        return _supervise(proc, parent_sock, host, started, timeout, cancel, label)
    finally:
        os.close(guard_write)  # the child is reaped: its sentinel is gone or leaves the group alone


def _supervise(
    proc: subprocess.Popen[bytes],
    parent_sock: socket.socket,
    host: TaskHost,
    started: float,
    timeout: float,
    cancel: threading.Event | None,
    label: str,
) -> TaskOutcome:
    """Serve the running child, wait for it (killing it at the timeout or on cancel), and judge it."""
    assert proc.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=40)
    pump = threading.Thread(target=_pump, args=(proc.stdout, f"[{label}]", tail), daemon=True)
    pump.start()
    final: dict[str, Any] = {}  # written by the server thread; read here only after _drain joined it
    channel = Channel(parent_sock)

    def serve_task() -> None:
        final.update(serve(channel, host) or {})

    server = threading.Thread(target=serve_task, name=f"serve-{label}", daemon=True)
    server.start()
    killed = _wait(proc, started, timeout, cancel)
    _drain(server, channel, label)
    pump.join(DRAIN_TIMEOUT)
    duration = time.monotonic() - started
    if killed:
        return TaskOutcome(False, f"task {killed}", duration)
    op = Op.parse(final.get("op"))
    if op is Op.DONE and proc.returncode == 0:
        return TaskOutcome(True, "", duration)
    if op is Op.FAILED:
        return TaskOutcome(False, str(final.get("traceback", "task failed")), duration)
    output = "\n".join(tail)
    return TaskOutcome(False, f"task process {_describe_exit(proc.returncode)}\n{output}".strip(), duration)


def _wait(proc: subprocess.Popen[bytes], started: float, timeout: float, cancel: threading.Event | None) -> str:
    """Wait for the child to exit, killing it at the timeout or on cancel; why it was killed, or ""."""
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
    return killed


def _drain(server: threading.Thread, channel: Channel, label: str) -> None:
    """Let the server thread read the frames the exited child left in the socket, then close it.

    The child's end closed when it exited, so the server reads what is buffered (the final frame
    among it) and then EOF. Closing first would throw those frames away. A grandchild that
    inherited the socket keeps it open: past the bound, shutting the socket down ends the
    server's recv (buffered frames are still read first).
    """
    server.join(DRAIN_TIMEOUT)
    if server.is_alive():
        log.warning("[%s] the task's channel is still open after it exited (a child process?)", label)
        with contextlib.suppress(OSError):
            channel.sock.shutdown(socket.SHUT_RDWR)
        server.join(DRAIN_TIMEOUT)
        if server.is_alive():
            log.warning("[%s] the host is still answering the task's last request; closing anyway", label)
    channel.close()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
