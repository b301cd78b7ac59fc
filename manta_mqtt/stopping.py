"""Ctrl-C as an event: long-running commands stop at a point of their choosing.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. Raised between a
lock's acquisition and the ``with`` block that releases it (inside ``queue.Queue.get``, say),
it leaves that lock held: the network thread that next fills the queue blocks for good, and so
does the disconnect that joins that thread (``manta-mqtt logs --follow`` hung once on Ctrl-C
that way). So commands that listen until stopped turn SIGINT and SIGTERM into a
``threading.Event`` and check it in their loop.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event | None = None) -> Iterator[threading.Event]:
    """Within the block, SIGINT and SIGTERM set the returned event (``stop``, or a new one)
    instead of raising; the previous handlers come back after it. Off the main thread (where
    Python allows no handler) the event is only set by whoever else holds it."""
    event = stop if stop is not None else threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = {sig: signal.signal(sig, lambda _signum, _frame: event.set()) for sig in STOP_SIGNALS}
    try:
        yield event
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
