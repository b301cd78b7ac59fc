"""The task side of the channel: found through the environment, as Manta tasks find their node."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from typing import Any, Literal

from .channel import Buffer, Channel
from .ops import ErrorKind, Op

CHANNEL_ENV = "MANTA_CHANNEL_FD"
#: The nonce that starts the line a task process prints at the end of each run (runtime/output.py).
MARK_ENV = "MANTA_RUN_MARK"


class TaskClient:
    """Synchronous request/reply to the host; one request at a time (tasks may use threads)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._lock = threading.Lock()
        self._context: dict[str, Any] | None = None

    def request(self, op: Op, payload: Sequence[Buffer] = (), **fields: Any) -> dict[str, Any]:
        """Send one request (``payload``: an encoded value, in pieces) and wait for its reply; a
        refusal raises the exception its kind names. A value the host sends back is the reply's
        ``"value"`` (a bytearray)."""
        with self._lock:
            self.channel.send({"op": op.value, **fields}, payload)
            reply, attached = self.channel.recv()
            if isinstance(reply, dict) and attached.size:
                reply["value"] = attached.read()
        if not isinstance(reply, dict):
            raise RuntimeError("malformed reply from the host")
        if not reply.get("ok"):
            message = str(reply.get("error", "request failed"))
            raise KeyError(message) if reply.get("kind") == ErrorKind.KEY_ERROR.value else RuntimeError(message)
        return reply

    def begin(self, context: Any) -> None:
        """A new run starts with ``context`` (None: ask the host for it on first use)."""
        self._context = dict(context) if isinstance(context, dict) else None

    @property
    def context(self) -> dict[str, Any]:
        """This run's context: ``Task``, ``World`` and ``Local`` read it here, each run anew."""
        if self._context is None:
            self._context = self.request(Op.HELLO)["context"]
        return self._context

    def finish(self, op: Literal[Op.DONE, Op.FAILED], **fields: Any) -> None:
        """Send the task's last frame; the host does not reply to it."""
        with self._lock:
            self.channel.send({"op": op.value, **fields})


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
