"""The node's warnings and errors, published on its log topic, so an operator need not SSH in.

:class:`RemoteLog` is a ``logging.Handler`` on the root logger. Threads:

    what                                     owner                      how data reaches it
    the token bucket, the dropped count,     any thread that logs       ``emit``, under the handler's lock
      ``last_error``                           (one at a time)
    the queue of records to publish          put by ``emit``,           a bounded queue: ``put_nowait``,
                                               taken by the publisher     a full queue drops the record
    the MQTT publish                         the publisher thread       the queue

``emit`` never blocks and never publishes: it takes a token (``per_minute`` records a minute, a
burst of as many), builds the record and puts it on the queue, or counts it dropped. The next
record that goes out carries the count, so a reader knows lines are missing. Records logged on
the publisher thread itself are never published (a publish that logs cannot recurse). While
the link is down the publisher waits: what the queue holds goes out after the reconnection.

A record whose message has several lines (a failed task's traceback or output) is published as
its first line with the rest in ``tail``, cut to the last lines and bytes; a Python traceback's
line is its last one (the exception). ``last_error`` (the last warning or error, one line) is
kept whether or not records are published; the agent puts it in its status.

One agent per process (``edge-node start``): the handler sees every record of the process.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

from manta_mqtt.protocol import topics
from manta_mqtt.protocol.limits import MAX_STATUS_ERROR_LENGTH
from manta_mqtt.protocol.messages import LogLevel, NodeLog
from manta_mqtt.transport.mqtt import MqttLink

#: Records held for the publisher (e.g. while the link is down); past it they are dropped (and counted).
QUEUE_SIZE = 64
LEVELS = {"warning": logging.WARNING, "error": logging.ERROR}


class TokenBucket:
    """``per_minute`` tokens a minute, at most ``per_minute`` saved up. Not thread-safe: the handler's lock."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.tokens = self.capacity
        self.at = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def split_message(text: str) -> tuple[str, str]:
    """(the line to show, the rest as a tail): a traceback shows its exception, other text its first line."""
    lines = text.strip("\n").splitlines() or [""]
    if lines[0].startswith("Traceback (most recent call last)"):
        last = next((line for line in reversed(lines) if line.strip()), lines[0])
        return last.strip(), text
    return lines[0], "\n".join(lines[1:])


def level_name(levelno: int) -> LogLevel:
    """The wire's name of a level at or above WARNING (a custom level counts as the one below it)."""
    return "critical" if levelno >= logging.CRITICAL else "error" if levelno >= logging.ERROR else "warning"


class RemoteLog(logging.Handler):
    def __init__(
        self,
        node: str,
        link: MqttLink,
        *,
        publish: bool = True,
        level: str = "warning",
        per_minute: int = 30,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logging.WARNING)  # every warning makes last_error; ``level`` decides what is sent
        self.node = node
        self.link = link  # thread-safe
        self.publish = publish
        self.publish_level = LEVELS[level]
        self.bucket = TokenBucket(per_minute, clock)  # emit only (under self.lock)
        self._dropped = 0  # emit only; the publisher adds to it through _count_lock
        self._count_lock = threading.Lock()
        self._last_error: str | None = None
        # the publisher holds one more while the link is down: queue_size in all
        self._queue: queue.Queue[NodeLog | None] = queue.Queue(maxsize=max(1, queue_size - 1))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._publish_loop, name="edge-log-publisher", daemon=True)

    @property
    def last_error(self) -> str | None:
        """The last warning or error, one line, at most ``MAX_STATUS_ERROR_LENGTH`` characters."""
        return self._last_error  # one reference, replaced whole: safe to read from any thread

    # --- installed on the root logger by the agent's main thread ---------------------------------

    def install(self) -> None:
        if self.publish:
            self._thread.start()
        logging.getLogger().addHandler(self)

    def uninstall(self, timeout: float = 2.0) -> None:
        """Stop taking records; publish what is queued if the link is up (for ``timeout`` s at most)."""
        logging.getLogger().removeHandler(self)
        if self._thread.is_alive():
            self._stopping.set()
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)

    # --- any thread that logs (one at a time: logging holds self.lock) -------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread.ident:
            return  # logged while publishing: never published, or a failing publish would loop
        try:
            message, tail = split_message(record.getMessage())
            if record.exc_info:
                tail = "\n".join(filter(None, [tail, logging.Formatter().formatException(record.exc_info)]))
            self._last_error = message[:MAX_STATUS_ERROR_LENGTH]
            if not self.publish or record.levelno < self.publish_level:
                return
            if not self.bucket.take():
                self._drop(1)
                return
            with self._count_lock:
                dropped, self._dropped = self._dropped, 0
            entry = NodeLog.make(
                self.node, record.created, level_name(record.levelno), record.name, message, tail, dropped
            )
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                self._drop(1 + dropped)
        except Exception:  # a handler must not raise into the code that logged
            self.handleError(record)

    def _drop(self, count: int) -> None:
        with self._count_lock:
            self._dropped += count

    # --- the publisher thread ------------------------------------------------------------------

    def _publish_loop(self) -> None:
        topic = topics.node_log(self.node)
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            while not self.link.connected.is_set():  # hold it until the link is back (or we stop)
                if self._stopping.is_set():
                    self._drop(1 + entry.dropped)
                    return
                self.link.connected.wait(0.5)
            try:
                self.link.publish(topic, entry.to_bytes(), qos=0, retain=False)
            except Exception:  # the link closed under us: the record is lost, counted
                self._drop(1 + entry.dropped)
