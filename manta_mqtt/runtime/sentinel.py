"""A task process must not outlive its host, even a host killed with SIGKILL.

The host cannot clean up after a SIGKILL, so the task's side does: the host keeps the write end
of a pipe (the *guard*) open for as long as the task runs, and never writes to it; the kernel
closes it when the host dies, however it dies. Before any user code runs, the task process
forks a small sentinel into its own process group that waits for that end of file and then
kills the whole group: the task and the processes it started (unless they left the group).

The sentinel ends with the task: on Linux the kernel kills it when the task exits
(``PR_SET_PDEATHSIG``); elsewhere it notices within a second. It holds none of the task's files,
so the host still sees the task's channel and output close when the task exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys

#: The environment variable naming the guard's read end in the task process.
GUARD_ENV = "MANTA_TASK_GUARD_FD"
_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 1.0


def die_with_parent(signum: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent (thread) exits."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def start(guard_fd: int) -> int | None:
    """In the task process, before user code: fork the sentinel; its pid, or None if none runs."""
    try:
        pid = os.fork()
    except OSError:
        die_with_parent()  # no sentinel: at least the task itself goes when the host does
        os.close(guard_fd)
        return None
    if pid == 0:  # the sentinel: never returns
        code = 0
        try:
            _watch(guard_fd, os.getppid())
        except BaseException:
            code = 1
        os._exit(code)
    os.close(guard_fd)  # the task keeps no copy of it
    return pid


def _watch(guard_fd: int, task_pid: int) -> None:
    """Until the task exits: on end of file on the guard (the host died), kill the task's group."""
    die_with_parent()
    if os.getppid() != task_pid:  # the task exited before the line above took effect
        return
    _let_go(guard_fd)
    while True:
        readable, _, _ = select.select([guard_fd], [], [], _POLL_SECONDS)
        if os.getppid() != task_pid:
            return  # the task ended on its own: its leftovers are the host's business
        if readable and not os.read(guard_fd, 1):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgrp(), signal.SIGKILL)  # this sentinel too
            return


def _let_go(keep: int) -> None:
    """Close every file inherited from the task but ``keep``: its channel and output pipe must
    close when the task exits, not when the sentinel does."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    limit = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024
    os.closerange(3, keep)
    os.closerange(keep + 1, max(limit, keep + 2))
