"""The swarm's retained state on ``swarms/{id}/state``: what nodes and people watching see.

Three writers, one topic: the pump publishes each change (main thread); the broker publishes our
MQTT will, "lost", if we vanish (killed, or the connection broke); after a reconnection paho's
network thread publishes the last state again, so a will that fired while we lived is undone at
once (the engine then re-sends the open step's assignments: nodes dropped them on "lost").
"""

from __future__ import annotations

import time

from ..protocol import topics
from ..protocol.messages import SwarmState
from ..transport.mqtt import MqttLink, Will
from .engine import actions as act

LOST_REASON = "the coordinator went away without ending the swarm; manta-mqtt run --resume continues it"


class StateBoard:
    """Publishes the swarm's state; remembers the last one (a bytes object: handed over whole)."""

    def __init__(self, swarm: str, name: str) -> None:
        self.swarm, self.name = swarm, name
        self.topic = topics.swarm_state(swarm)
        self._last: bytes | None = None  # written by the main thread, read by the network thread

    def will(self) -> Will:
        # updated=0: when the broker will publish it is unknown now
        lost = SwarmState(swarm=self.swarm, name=self.name, state="lost", reason=LOST_REASON)
        return Will(self.topic, lost.to_bytes(), retain=True)

    def publish(self, link: MqttLink, state: act.PublishState, metrics: dict[str, float]) -> None:
        message = SwarmState(
            swarm=self.swarm,
            name=self.name,
            state=state.state.value,
            iteration=state.iteration,
            step=state.step,
            done=state.done,
            expected=state.expected,
            metrics=metrics,
            reason=state.reason,
            updated=time.time(),
        )
        payload = self._last = message.to_bytes()
        link.publish(self.topic, payload, retain=True)

    def clear(self, link: MqttLink) -> None:
        """Remove the retained state (a run that never started leaves nothing behind)."""
        self._last = None
        link.publish(self.topic, b"", retain=True)

    def republish(self, link: MqttLink) -> None:
        """On the network thread, after a reconnection."""
        payload = self._last
        if payload is not None:
            link.publish(self.topic, payload, retain=True)
