"""Where a run is, in plain data: written to the run store after every step, so that a
coordinator killed at any moment resumes from its last completed step (``--resume``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Checkpoint:
    iteration: int = 0
    starts: list[str] = field(default_factory=list)  # where this iteration began
    forced: dict[str, list[str]] = field(default_factory=dict)  # schedule_next_iter's node lists
    done_steps: list[str] = field(default_factory=list)  # steps of this iteration already completed
    globals: dict[str, str] = field(default_factory=dict)  # tag -> sha, as of the last completed step
    schedule: dict[str, list[str]] = field(default_factory=dict)  # this iteration's requests so far
    stop_by: str = ""
    previous_nodes: dict[str, list[str]] = field(default_factory=dict)
    rng: list[Any] = field(default_factory=list)  # random.Random.getstate(), JSON-shaped
    metrics: dict[str, float] = field(default_factory=dict)
    current: dict[str, Any] | None = None  # the node step in progress: task, nodes, attempt

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def rng_state_to_json(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def rng_state_from_json(data: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)
