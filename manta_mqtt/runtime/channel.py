"""Framed messages over a local socket between a host (agent or coordinator) and a task.

A frame is an 8-byte header (two big-endian u32: the length of the message, then of the
payload), one :mod:`~manta_mqtt.protocol.codec` value (the message), then the payload: the raw
bytes of one encoded value (a global, a result) beside the message, so a 100 MiB model crosses
without being copied into an encoded frame and out of it again. A sender passes the payload as
pieces (``codec.encode_parts``) or as a file (sent by ``sendfile``); a receiver reads it whole or
streams it to disk. The task process is untrusted code, so the host bounds both lengths like any
network input.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..protocol import codec
from ..protocol.limits import MAX_MESSAGE_BYTES, MAX_TASK_FRAME_BYTES

MAX_FRAME = MAX_TASK_FRAME_BYTES
#: A payload is one encoded value, which no receiver decodes past this.
MAX_PAYLOAD = MAX_MESSAGE_BYTES
_HEADER = struct.Struct(">II")
#: How much of a payload :meth:`Payload.chunks` reads at a time.
READ_CHUNK = 1 << 20

Buffer = bytes | bytearray | memoryview


class ChannelClosed(ConnectionError):
    """The other side went away."""


class Payload:
    """A frame's payload, still in the socket: read it once (:meth:`read` or :meth:`chunks`)
    before the next :meth:`Channel.recv`, which skips whatever is left of it."""

    def __init__(self, channel: Channel, size: int) -> None:
        self._channel = channel
        self.size = size
        self.left = size

    def read(self) -> bytearray:
        """The whole payload, in one buffer of its size."""
        if self.left != self.size:
            raise RuntimeError("the payload was already read")
        self.left = 0
        return self._channel.read_exact(self.size)

    def chunks(self, size: int = READ_CHUNK) -> Iterator[memoryview]:
        """The payload in pieces of at most ``size`` bytes (each valid until the next one)."""
        buffer = bytearray(min(size, self.left))
        view = memoryview(buffer)
        while self.left:
            n = min(len(buffer), self.left)
            self._channel.read_into(view[:n])
            self.left -= n
            yield view[:n]

    def skip(self) -> None:
        for _ in self.chunks():
            pass


class Frame(NamedTuple):
    message: Any
    payload: Payload


class Channel:
    """Both ends use one: a host's serve thread and the task's client each own theirs."""

    def __init__(self, sock: socket.socket, max_frame: int = MAX_FRAME, max_payload: int = MAX_PAYLOAD) -> None:
        self.sock = sock
        self.max_frame = max_frame
        self.max_payload = max_payload
        self._payload: Payload | None = None  # the last frame's, until the next recv

    def send(self, message: Any, payload: Sequence[Buffer] = ()) -> None:
        """One frame: ``message`` and the pieces of ``payload`` (joined, never copied)."""
        data = codec.encode(message)
        size = sum(memoryview(piece).nbytes for piece in payload)
        self.sock.sendall(_HEADER.pack(len(data), size) + data)
        for piece in payload:
            self.sock.sendall(piece)

    def send_file(self, message: Any, path: Path) -> None:
        """One frame whose payload is the file at ``path``, by ``sendfile`` (no copy in this
        process). The file is opened first: a file unlinked meanwhile is still sent whole."""
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            data = codec.encode(message)
            self.sock.sendall(_HEADER.pack(len(data), size) + data)
            if size:
                self.sock.sendfile(file, 0, size)

    def recv(self) -> Frame:
        """The next frame; its payload (empty if it has none) is to be read before the next call."""
        if self._payload is not None and self._payload.left:
            self._payload.skip()
        size, payload_size = _HEADER.unpack(self.read_exact(_HEADER.size))
        for what, n, bound in (("frame", size, self.max_frame), ("payload", payload_size, self.max_payload)):
            if n > bound:
                raise codec.CodecError(f"{what} of {n} bytes exceeds {bound}")
        message = codec.decode(self.read_exact(size))
        self._payload = Payload(self, payload_size)
        return Frame(message, self._payload)

    def read_exact(self, size: int) -> bytearray:
        buffer = bytearray(size)
        self.read_into(memoryview(buffer))
        return buffer

    def read_into(self, view: memoryview) -> None:
        got, size = 0, len(view)
        while got < size:
            n = self.sock.recv_into(view[got:], size - got)
            if n == 0:
                raise ChannelClosed("channel closed")
            got += n

    def close(self) -> None:
        self.sock.close()
