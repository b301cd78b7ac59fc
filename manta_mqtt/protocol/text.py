"""Text from the network made safe to show: on a terminal, in a log.

A node's error text (a traceback), a metric name, a dataset name or a topic is chosen by
whoever publishes it. Printed raw, an ESC sequence in it could move the cursor, recolour or
rewrite what the operator sees, a carriage return could hide the line before it, and a
60 MiB "traceback" would flood the screen. :func:`printable` escapes every control character
(newlines and tabs stay, tracebacks are multi-line) and keeps a bounded number of characters.
"""

from __future__ import annotations

import logging
import re

#: How much of one remote text is shown (characters); the rest is cut, with a note.
TEXT_LIMIT = 8 * 1024
#: One log record, formatted; larger, since a record may hold a local traceback as well.
LOG_LIMIT = 32 * 1024

# C0 controls but tab and newline, DEL, C1 controls (8-bit CSI 0x9b included), the bidi
# overrides and isolates that reorder what a terminal shows, and lone surrogates, which
# cannot even be encoded for output.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, limit: int = TEXT_LIMIT, *, one_line: bool = False) -> str:
    """``text`` with control characters shown as ``\\x1b``-style escapes, cut after ``limit`` characters.

    Newlines and tabs are kept (``one_line=True`` escapes them too, for one-line displays);
    ``\\r\\n`` becomes ``\\n``. The cut is noted with the number of characters left out.
    """
    text = str(text)
    cut = max(0, len(text) - limit)
    if cut:
        text = text[:limit]
    text = (_UNSAFE_ONE_LINE if one_line else _UNSAFE).sub(_escape, text.replace("\r\n", "\n"))
    return f"{text} [... {cut} more characters cut]" if cut else text


class PrintableFormatter(logging.Formatter):
    """A log formatter whose output is :func:`printable`: log lines quote remote text (rejected
    topics, a task's output and traceback), and a log is read on a terminal too."""

    def __init__(self, fmt: str | None = None, limit: int = LOG_LIMIT) -> None:
        super().__init__(fmt)
        self.limit = limit

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), self.limit)


def printable_logging(level: int, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
    """``logging.basicConfig`` to stderr, through a :class:`PrintableFormatter`."""
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])


def age(seconds: float) -> str:
    """A short, human age for tables of remote things: 45s, 12m, 3h, 4d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"
