"""The task side of the channel: found through the environment, as Manta tasks find their node."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from .channel import Channel

CHANNEL_ENV = "MANTA_CHANNEL_FD"


class TaskClient:
    """Synchronous request/reply to the host; one request at a time (tasks may use threads)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._lock = threading.Lock()
        self._context: dict[str, Any] | None = None

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            self.channel.send({"op": op, **fields})
            reply = self.channel.recv()
        if not isinstance(reply, dict):
            raise RuntimeError("malformed reply from the host")
        if not reply.get("ok"):
            message = str(reply.get("error", "request failed"))
            raise KeyError(message) if reply.get("kind") == "KeyError" else RuntimeError(message)
        return reply

    @property
    def context(self) -> dict[str, Any]:
        if self._context is None:
            self._context = self.request("hello")["context"]
        return self._context

    def finish(self, op: str, **fields: Any) -> None:
        with self._lock:
            self.channel.send({"op": op, **fields})


_client: TaskClient | None = None


def current() -> TaskClient:
    """The process's connection to its host, opened on first use."""
    global _client
    if _client is None:
        fd = os.environ.get(CHANNEL_ENV)
        if fd is None:
            raise RuntimeError(
                "this Task is not running under a manta-mqtt edge node or coordinator "
                f"(no {CHANNEL_ENV} in the environment)"
            )
        _client = TaskClient(Channel(socket.socket(fileno=int(fd))))
    return _client
