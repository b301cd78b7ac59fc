"""Stopping child processes politely, then firmly."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; a process already gone is fine."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL (a crash, for failover tests) and reap it; a process already gone is fine."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
