"""An operator's request to a swarm's coordinator: JSON, so it can be sent with ``mosquitto_pub``.

Published (not retained, QoS 1) on ``swarms/{swarm}/control``; the broker's ACL decides who may
publish there (operators, never nodes). The coordinator of that swarm obeys it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal, cast, get_args

from .fields import VERSION, _choice, _get, _id, _load_json

ControlCommand = Literal["stop"]  # stop: end the swarm after the step under way, as stop_swarm() would


@dataclass
class SwarmControl:
    swarm: str
    command: ControlCommand
    reason: str = ""  # shown in the swarm's final state
    by: str = ""  # who asked, as they say it (the ACL, not this field, decides who may)

    COMMANDS: ClassVar[tuple[ControlCommand, ...]] = get_args(ControlCommand)

    def to_bytes(self) -> bytes:
        return json.dumps({"v": VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def parse(cls, payload: bytes) -> SwarmControl:
        data = _load_json(payload)
        return cls(
            swarm=_id(data, "swarm"),
            command=cast(ControlCommand, _choice(data, "command", cls.COMMANDS)),
            reason=_get(data, "reason", str, "")[:500],
            by=_get(data, "by", str, "")[:100],
        )
