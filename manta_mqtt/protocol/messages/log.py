"""A node's log record, published on ``nodes/{node}/log``: JSON, so ``mosquitto_sub`` shows it.

Not retained and QoS 0: a log line nobody reads is not worth a retry. The node publishes its
warnings and errors, rate-limited, with the tail of a failed task's stderr or traceback in
``tail``; ``dropped`` says how many records it left out just before this one (rate limit, full
queue, no connection). Every field is bounded (see *Limits* in docs/protocol.md): the node cuts
the text, a reader refuses a message past the bounds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, Literal, cast, get_args

from ..limits import LOG_TAIL_LINES, MAX_LOG_BYTES, MAX_LOG_MESSAGE_BYTES, MAX_LOG_TAIL_BYTES
from .fields import VERSION, ProtocolError, _choice, _finite, _get, _id, _load_json, _nonneg

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LOGGER_NAME_BYTES = 128  # a logger's name is ours, not the network's: cut, never refused


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def cut_head(text: str, limit: int) -> str:
    """The first ``limit`` bytes (UTF-8) of ``text``, never half a character."""
    data = text.encode("utf-8", "surrogatepass")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def cut_tail(text: str, lines: int = LOG_TAIL_LINES, limit: int = MAX_LOG_TAIL_BYTES) -> str:
    """The last ``lines`` lines of ``text``, then its last ``limit`` bytes: where an error shows."""
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    data = kept.encode("utf-8", "surrogatepass")
    return kept if len(data) <= limit else data[-limit:].decode("utf-8", "ignore")


@dataclass
class NodeLog:
    node: str
    time: float  # the node's clock (unix s) when the record was made
    level: LogLevel
    logger: str  # the logger's name on the node, e.g. "edge_node"
    message: str  # one line
    tail: str = ""  # a failed task's stderr or traceback: its last lines
    dropped: int = 0  # records the node left out just before this one

    LEVELS: ClassVar[tuple[LogLevel, ...]] = get_args(LogLevel)

    @classmethod
    def make(
        cls, node: str, time: float, level: LogLevel, logger: str, message: str, tail: str = "", dropped: int = 0
    ) -> NodeLog:
        """A record cut to the protocol's bounds, so that its ``to_bytes`` always parses."""
        return cls(
            node,
            round(time, 3),
            level,
            cut_head(logger, LOGGER_NAME_BYTES),
            cut_head(message, MAX_LOG_MESSAGE_BYTES),
            cut_tail(tail) if tail else "",
            dropped,
        )

    def to_bytes(self) -> bytes:
        data: dict[str, object] = {
            "v": VERSION,
            "node": self.node,
            "time": self.time,
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
        }
        if self.tail:
            data["tail"] = self.tail
        if self.dropped:
            data["dropped"] = self.dropped
        # ensure_ascii=False: only control characters grow (6 bytes each), so MAX_LOG_BYTES holds
        # any record within the field bounds
        return json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8", "replace")

    @classmethod
    def parse(cls, payload: bytes) -> NodeLog:
        if len(payload) > MAX_LOG_BYTES:
            raise ProtocolError(f"log record of {len(payload)} bytes (at most {MAX_LOG_BYTES})")
        data = _load_json(payload)
        message = _get(data, "message", str)
        tail = _get(data, "tail", str, "")
        if _utf8_len(message) > MAX_LOG_MESSAGE_BYTES or _utf8_len(tail) > MAX_LOG_TAIL_BYTES:
            raise ProtocolError("log record: message or tail past its bound")
        return cls(
            node=_id(data, "node"),
            time=_finite(data, "time"),
            level=cast(LogLevel, _choice(data, "level", cls.LEVELS)),
            logger=cut_head(_get(data, "logger", str, ""), LOGGER_NAME_BYTES),
            message=message,
            tail=tail,
            dropped=_nonneg(data, "dropped", 0),
        )
