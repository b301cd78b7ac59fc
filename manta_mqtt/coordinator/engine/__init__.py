"""The coordinator's sans-I/O core: typed events in, typed actions out, every rule of a run.

Nothing here imports transport, paho, the run store, the task runtime or a clock
(tests/test_layers.py checks it); the coordinator (:mod:`..coordinator`) is the pump around it.
"""

from .actions import Action
from .checkpoint import Checkpoint, OpenStep
from .decisions import Decisions, RunState
from .engine import Engine, Phase
from .events import (
    EnvelopeArrived,
    Event,
    Reconnected,
    StatusChanged,
    StopRequested,
    TaskFinished,
    TaskWrites,
    Tick,
    UploadCompleted,
)
from .plan import Plan, Timing
from .results import COORDINATOR_NODE

__all__ = [
    "COORDINATOR_NODE",
    "Action",
    "Checkpoint",
    "Decisions",
    "Engine",
    "EnvelopeArrived",
    "Event",
    "OpenStep",
    "Phase",
    "Plan",
    "Reconnected",
    "RunState",
    "StatusChanged",
    "StopRequested",
    "TaskFinished",
    "TaskWrites",
    "Tick",
    "Timing",
    "UploadCompleted",
]
