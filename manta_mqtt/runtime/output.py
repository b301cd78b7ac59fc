"""A task process's output, told apart by run: each failure report quotes its own run's tail.

The pump thread reads the child's stdout (stderr joined in) for the whole life of the process,
which may run many times. At the end of each run the child writes a mark line (a nonce only
this process knows and the run's number) before it reports; the pump files every line before
the mark under that run, and every later line under the next run. The owner thread reads a
run's tail only once that run's output has ended (the mark, or end of file).
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import IO

log = logging.getLogger("manta_mqtt.executor")

#: Lines of a run's output kept for its failure report.
TAIL_LINES = 40


class Output:
    """The pump thread writes the tails; the owner thread labels runs and reads tails (locked)."""

    def __init__(self, stream: IO[bytes], mark: str, label: str) -> None:
        self._stream = stream
        self._mark = f"{mark} ".encode()
        self._lock = threading.Lock()
        self._reading = 1  # the run whose lines the pump files now
        self._labels: dict[int, str] = {1: label}
        self._tails: dict[int, collections.deque[str]] = {}
        self._thread = threading.Thread(target=self._pump, name=f"pump-{label}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def begin(self, run: int, label: str) -> None:
        """Run ``run`` starts: log its lines under ``label``."""
        with self._lock:
            self._labels[run] = label

    def tail(self, run: int) -> list[str]:
        """The last lines run ``run`` printed, once its output has ended."""
        with self._lock:
            return list(self._tails.get(run, ()))

    def join(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the pump to read the pipe's end of file."""
        self._thread.join(timeout)

    def _pump(self) -> None:
        """The pump thread: until end of file on the pipe, log each line and file it by run."""
        for raw in self._stream:
            if raw.startswith(self._mark):
                self._ended(raw[len(self._mark) :])
                continue
            line = raw.decode("utf-8", "replace").rstrip()
            with self._lock:
                run = self._reading
                tail = self._tails.setdefault(run, collections.deque(maxlen=TAIL_LINES))
                tail.append(line)
                label = self._labels.get(run) or self._labels.get(run - 1, "task")
            log.info("[%s] %s", label, line)

    def _ended(self, number: bytes) -> None:
        try:
            run = int(number)
        except ValueError:
            return
        with self._lock:  # the runs before this one are reported: their lines are not needed again
            self._reading = max(self._reading, run + 1)
            for old in [r for r in self._tails if r < run]:
                del self._tails[old]
            for old in [r for r in self._labels if r < run]:
                del self._labels[old]
