"""The words of the task-host channel, defined once for both sides.

The values are the exact strings that travel in frames (``{"op": "global_get", ...}``), so the
bytes on the channel do not depend on this module. Send ``.value``, never ``str(op)``: on
Python 3.11 ``str()`` of a mixed-in enum gives ``"Op.DONE"``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class Op(str, Enum):
    """What a frame from the task asks for (requests) or reports (``DONE``, ``FAILED``); ``RUN``
    is the one frame the host sends unasked: run ``main()`` once more, with this context."""

    HELLO = "hello"
    GLOBAL_GET = "global_get"
    GLOBAL_SET = "global_set"
    RESULT_ADD = "result_add"
    RESULT_SELECT = "result_select"  # every node's value in one frame: kept for older tasks
    RESULT_NODES = "result_nodes"  # the nodes that added a tag, then one RESULT_GET per node
    RESULT_GET = "result_get"
    SCHEDULE = "schedule"
    STOP = "stop"
    DONE = "done"
    FAILED = "failed"
    RUN = "run"  # host to task: {"op": "run", "run": N, "last": bool, "context": {...}}

    @classmethod
    def parse(cls, value: Any) -> Op | None:
        """The op a frame names, or None for anything else (the task is untrusted code)."""
        if not isinstance(value, str):
            return None
        try:
            return cls(value)
        except ValueError:
            return None

    @property
    def final(self) -> bool:
        """The task's last frame: it gets no reply and ends the conversation."""
        return self in (Op.DONE, Op.FAILED)


class ErrorKind(str, Enum):
    """The exception a refused request raises in the task (the reply's ``"kind"``)."""

    KEY_ERROR = "KeyError"
    RUNTIME_ERROR = "RuntimeError"


def error_reply(message: str, kind: ErrorKind = ErrorKind.RUNTIME_ERROR) -> dict[str, Any]:
    """The reply to a refused request (keys in their wire order: ``ok``, ``error``, ``kind``)."""
    return {"ok": False, "error": message, "kind": kind.value}
