"""Where a run is, in plain data: written to the run store after every step, so that a
coordinator killed at any moment resumes from its last completed step (``--resume``).

The engine builds a new :class:`Checkpoint` from its state each time; nothing edits one in place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ...protocol.messages import GlobalRefs


@dataclass(frozen=True)
class OpenStep:
    """The node step in progress: resuming it re-asks the same nodes with the same attempt."""

    task: str
    nodes: list[str]
    attempt: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenStep:
        return cls(str(data["task"]), [str(n) for n in data["nodes"]], int(data["attempt"]))


@dataclass(frozen=True)
class Checkpoint:
    iteration: int = 0
    starts: list[str] = field(default_factory=list)  # where this iteration began
    forced: dict[str, list[str]] = field(default_factory=dict)  # schedule_next_iter's node lists
    done_steps: list[str] = field(default_factory=list)  # steps of this iteration already completed
    global_refs: GlobalRefs = field(default_factory=dict)  # as of the last completed step
    schedule: dict[str, list[str]] = field(default_factory=dict)  # this iteration's requests so far
    stop_by: str = ""
    previous_nodes: dict[str, list[str]] = field(default_factory=dict)
    rng: list[Any] = field(default_factory=list)  # random.Random.getstate(), JSON-shaped
    current: OpenStep | None = None
    quarantined: list[str] = field(default_factory=list)  # nodes set aside for the rest of the run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "global_refs" not in fields and "globals" in data:  # written by 0.1.0
            fields["global_refs"] = data["globals"]
        current = fields.pop("current", None)
        return cls(**fields, current=OpenStep.from_dict(current) if current else None)


def rng_state_to_json(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def rng_state_from_json(data: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)
