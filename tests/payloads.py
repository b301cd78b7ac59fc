"""Host methods called directly, as the serve thread calls them: values in as payloads, out as
bytes or files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from manta_mqtt.runtime.channel import Payload
from manta_mqtt.runtime.host import Value


class CannedPayload(Payload):
    """A payload already in memory (no channel under it)."""

    def __init__(self, data: bytes) -> None:
        self.size = self.left = len(data)
        self._data = data

    def read(self) -> bytearray:
        self.left = 0
        return bytearray(self._data)

    def chunks(self, size: int = 1 << 20) -> Iterator[memoryview]:
        view = memoryview(self._data)
        for start in range(0, len(view), size):
            yield view[start : start + size]
        self.left = 0


def value_bytes(value: Value) -> bytes:
    """What the task receives for a value a host returned."""
    return value.read_bytes() if isinstance(value, Path) else bytes(value)
