"""Runs tasks in child processes, so a task that raises, crashes or hangs cannot take its host
down; what happened comes back as a :class:`TaskOutcome`.

A :class:`TaskProcess` is one child (``python -m manta_mqtt.runtime.child BUNDLE ENTRY``). It
runs ``entry.main()`` each time it is sent a ``run`` frame: once (``last``: it then exits, as
:func:`run_task` does) or many times, kept warm by :class:`~.pool.TaskProcesses`.

Threads. The thread that owns a TaskProcess (run_task's caller, or the pool's owner) alone
starts, waits for, kills and reaps the process, and closes its channel. During a run a server
thread answers the task's requests, until its final frame or the end of the channel; between
runs nobody reads the channel. The pump thread reads the child's stdout into the log and a tail
per run (:mod:`.output`) for the whole life of the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..blobstore import private_dir
from .channel import Channel
from .client import CHANNEL_ENV, MARK_ENV
from .host import TaskHost, serve
from .ops import Op
from .output import Output
from .sentinel import GUARD_ENV

log = logging.getLogger("manta_mqtt.executor")

#: How long, once the child has exited, to wait for the server and pump threads to read what it
#: left in the socket and the pipe. Only a grandchild still holding them open makes this wait.
#: Also how long a retired warm process gets to exit once its channel is closed.
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


class TaskProcess:
    """One task's child process, which runs ``entry.main()`` once per :meth:`run`."""

    def __init__(self, bundle: Path, entry: str, workdir: Path, label: str = "task") -> None:
        """Start the child; it imports ``entry`` when its first run comes."""
        parent_sock, child_sock = socket.socketpair()
        guard_read, guard_write = os.pipe()  # held until the child is reaped (sentinel.py)
        mark = secrets.token_hex(8)
        env = dict(os.environ)
        env[CHANNEL_ENV] = str(child_sock.fileno())
        env[GUARD_ENV] = str(guard_read)
        env[MARK_ENV] = mark
        env.setdefault("PYTHONUNBUFFERED", "1")
        private_dir(workdir)  # the task's files are the node's or coordinator's, nobody else's
        self.started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
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
        self._guard = guard_write
        self._channel = Channel(parent_sock)
        self._open = True  # the channel may carry another run
        self.runs = 0
        assert self._proc.stdout is not None
        self._output = Output(self._proc.stdout, mark, label)
        self._output.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        """Running and able to take another run."""
        return self._open and self._proc.poll() is None

    def rss(self) -> int | None:
        """The child's resident memory in bytes (Linux: VmRSS), or None where it cannot be read."""
        try:
            with open(f"/proc/{self._proc.pid}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    def run(
        self,
        host: TaskHost,
        *,
        timeout: float,
        cancel: threading.Event | None = None,
        label: str = "task",
        last: bool = False,
    ) -> TaskOutcome:
        """Run ``entry.main()`` once more with ``host`` answering; ``last``: the child then exits.

        ``host.context()`` is read here, before the run; every other call on the server thread.
        Returns once the task reported its end (``last``: once it exited), or was killed at
        ``timeout`` or on ``cancel``; a killed or crashed process is not :meth:`alive` after.
        """
        started = self.started if self.runs == 0 else time.monotonic()  # the first run: from the spawn
        self.runs += 1
        self._output.begin(self.runs, label)
        final: dict[str, Any] = {}  # written by the server thread; read here only after it ended
        ended = threading.Event()
        channel = self._channel

        def serve_task() -> None:
            try:
                final.update(serve(channel, host) or {})
            finally:
                ended.set()

        with contextlib.suppress(OSError):  # a child that died idle: judged below by its exit
            channel.send({"op": Op.RUN.value, "run": self.runs, "last": last, "context": host.context()})
        server = threading.Thread(target=serve_task, name=f"serve-{label}", daemon=True)
        server.start()
        killed = self._wait(ended, started, timeout, cancel, until_exit=last)
        reported = ended.is_set() and Op.parse(final.get("op")) in (Op.DONE, Op.FAILED)
        if killed or last or not reported:
            self._finish_process(server, label)
        op = Op.parse(final.get("op"))  # the server thread has ended, or was given its bound
        duration = time.monotonic() - started
        if killed:
            return TaskOutcome(False, f"task {killed}", duration)
        if op is Op.DONE and (not last or self._proc.returncode == 0):
            return TaskOutcome(True, "", duration)
        if op is Op.FAILED:
            return TaskOutcome(False, str(final.get("traceback", "task failed")), duration)
        output = "\n".join(self._output.tail(self.runs))
        exit_line = f"task process {_describe_exit(self._proc.returncode)}"
        return TaskOutcome(False, f"{exit_line}\n{output}".strip(), duration)

    def close(self) -> None:
        """End the process: end of file on its channel lets a waiting child exit; one that does
        not within ``DRAIN_TIMEOUT`` is killed with its group. Idempotent."""
        self._open = False
        self._channel.close()
        if self._proc.poll() is None:
            try:
                self._proc.wait(DRAIN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
                self._proc.wait()
        self._output.join(DRAIN_TIMEOUT)
        if self._guard >= 0:
            os.close(self._guard)  # the child is reaped: its sentinel is gone or leaves the group alone
            self._guard = -1

    def _wait(
        self, ended: threading.Event, started: float, timeout: float, cancel: threading.Event | None, until_exit: bool
    ) -> str:
        """Wait for the run's end (the child's exit, when ``until_exit``), killing the child at
        the timeout or on cancel; why it was killed, or ""."""
        deadline = started + timeout
        while self._proc.poll() is None and not (ended.is_set() and not until_exit):
            killed = ""
            if time.monotonic() > deadline:
                killed = f"timed out after {timeout:.0f} s"
            elif cancel is not None and cancel.is_set():
                killed = "cancelled"
            if killed:
                self._kill()
                self._proc.wait()
                return killed
            if until_exit:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(0.1)
            else:
                ended.wait(0.1)
        return ""

    def _finish_process(self, server: threading.Thread, label: str) -> None:
        """The run ended the process (or its channel): let the threads read what the child left,
        close the channel, and reap the child (killing one that closed its channel but lives)."""
        self._open = False
        if self._proc.poll() is None:  # it closed its channel or sent garbage, and lives on
            try:
                self._proc.wait(DRAIN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
                self._proc.wait()
        _drain(server, self._channel, label)
        self._output.join(DRAIN_TIMEOUT)

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)


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
    """Run ``entry.main()`` from ``bundle`` once, in a fresh process, with ``host`` answering.

    Returns once the child has exited (or was killed at ``timeout`` or on ``cancel``) and the
    server thread has read its final frame.
    """
    process = TaskProcess(bundle, entry, workdir, label)
    try:
        return process.run(host, timeout=timeout, cancel=cancel, label=label, last=True)
    finally:
        process.close()


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
