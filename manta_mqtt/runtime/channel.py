"""Framed msgpack messages over a local socket between a host (agent or coordinator) and a task.

A frame is a 4-byte big-endian length and one :mod:`~manta_mqtt.protocol.codec` value. The task
process is untrusted code, so the host bounds frame sizes like any network input.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from ..protocol import codec
from ..protocol.limits import MAX_TASK_FRAME_BYTES

MAX_FRAME = MAX_TASK_FRAME_BYTES
_HEADER = struct.Struct(">I")


class ChannelClosed(ConnectionError):
    """The other side went away."""


class Channel:
    def __init__(self, sock: socket.socket, max_frame: int = MAX_FRAME) -> None:
        self.sock = sock
        self.max_frame = max_frame

    def send(self, message: Any) -> None:
        data = codec.encode(message)
        self.sock.sendall(_HEADER.pack(len(data)))
        self.sock.sendall(data)

    def recv(self) -> Any:
        (size,) = _HEADER.unpack(self._read(_HEADER.size))
        if size > self.max_frame:
            raise codec.CodecError(f"frame of {size} bytes exceeds {self.max_frame}")
        return codec.decode(self._read(size))

    def _read(self, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            n = self.sock.recv_into(view[got:], size - got)
            if n == 0:
                raise ChannelClosed("channel closed")
            got += n
        return buffer

    def close(self) -> None:
        self.sock.close()
