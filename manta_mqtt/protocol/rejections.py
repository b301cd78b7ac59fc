"""Counting what we refuse: every dropped message gets a log line and a counter, by reason."""

from __future__ import annotations

import logging
import threading
from collections import Counter

#: The reasons in use, so that dashboards can rely on the names.
REASONS = (
    "malformed",
    "forged",
    "unknown_swarm",
    "late",
    "unexpected",
    "duplicate",
    "oversized",
    "bad_chunk",
    "overflow",
    "untrusted",  # an assignment not signed by a key the node trusts: refused, reported as a failed run
    "forbidden",  # a node's result tried to set a global or steer the swarm, which its task does not allow
)


class Rejections:
    """A thread-safe counter of refused messages that also logs each one."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, reason: str, detail: str) -> None:
        with self._lock:
            self._counts[reason] += 1
        self._log.warning("rejected (%s): %s", reason, detail)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
