"""How often the swarm's retained state is published: progress coalesced, changes at once.

Every accepted result moves the open step's ``done`` count; publishing each one sends the
retained state to every subscriber (N results x N nodes per step). Nodes and tools only need the
latest, so a progress state (same run state, iteration, step and expected count; only ``done``
moved, the step not yet complete) waits until :data:`STATE_MIN_INTERVAL` has passed since the
last publish, and only the newest waiting one goes out. Anything else (a step starts or ends, the
run ends, is interrupted, stopped) is published at once and supersedes a waiting progress state.
Sans-I/O: the pump owns one, gives it the clock, and publishes what it returns (main thread).
"""

from __future__ import annotations

from .engine import RunState
from .engine import actions as act

#: The least time between two publishes of a progress-only state of one swarm (seconds).
STATE_MIN_INTERVAL = 1.0


def is_progress(new: act.PublishState, last: act.PublishState | None) -> bool:
    """Whether ``new`` only advances the open step's count over ``last`` (and does not complete it)."""
    return (
        last is not None
        and new.state is RunState.RUNNING
        and last.state is RunState.RUNNING
        and (new.iteration, new.step, new.expected, new.reason)
        == (last.iteration, last.step, last.expected, last.reason)
        and new.step != ""
        and new.done < new.expected
    )


class StateRate:
    """Decides when each :class:`~.engine.actions.PublishState` goes out (see the module docstring)."""

    def __init__(self, min_interval: float = STATE_MIN_INTERVAL) -> None:
        self.min_interval = min_interval
        self._last: act.PublishState | None = None  # the last state handed out for publishing
        self._published_at = float("-inf")
        self._waiting: act.PublishState | None = None

    def offer(self, state: act.PublishState, now: float) -> act.PublishState | None:
        """The state to publish now, or ``None`` when ``state`` waits (see :meth:`due`)."""
        if is_progress(state, self._last) and now - self._published_at < self.min_interval:
            self._waiting = state
            return None
        return self._hand_out(state, now)

    def due(self) -> float | None:
        """When the waiting progress state is to be published, or ``None`` when none waits."""
        return None if self._waiting is None else self._published_at + self.min_interval

    def flush(self, now: float) -> act.PublishState | None:
        """The waiting state once it is due (then no longer waiting), else ``None``."""
        due = self.due()
        if self._waiting is None or due is None or now < due:
            return None
        return self._hand_out(self._waiting, now)

    def _hand_out(self, state: act.PublishState, now: float) -> act.PublishState:
        self._last, self._published_at, self._waiting = state, now, None
        return state
