"""What the broker holds about a site, read and tidied by operators' tools: the statuses of
nodes (retained, and asked for again with a ``Discover``: retained messages do not reach
wildcard subscriptions on every broker), the retained states of swarms, an operator's stop
request, and the pruning of swarms that ended (their retained state would otherwise be
replayed to every subscriber forever).

Each function opens its own short-lived connection; a refusal raises ``ConnectionError`` with
the one-line explanation of :mod:`manta_mqtt.transport.failures`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..protocol import topics
from ..protocol.messages import Discover, NodeStatus, ProtocolError, SwarmControl, SwarmState
from ..transport.mqtt import BrokerAddress, MqttLink

SETTLE = 0.5  # seconds to let retained messages arrive after the broker acknowledged a subscription


@contextmanager
def connected(address: BrokerAddress, version: str, role: str) -> Iterator[MqttLink]:
    link = MqttLink(f"{role}-{int(time.time() * 1000) % 10**9}", address, version=version, session_expiry=0)
    if not link.start():
        raise ConnectionError(link.failure_line)
    try:
        yield link
    finally:
        link.stop()


def retained(link: MqttLink, topic_filter: str, settle: float = SETTLE) -> dict[str, bytes]:
    """The retained messages under ``topic_filter`` (empty ones, i.e. cleared, left out)."""
    found: dict[str, bytes] = {}
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes, was_retained: bool) -> None:
        if was_retained and payload:
            with lock:
                found[topic] = payload

    link.route(topic_filter, on_message)
    link.subscribe(topic_filter, qos=0, wait=10)
    time.sleep(settle)
    link.unsubscribe(topic_filter)
    with lock:
        return dict(found)


def node_statuses(link: MqttLink, settle: float = SETTLE) -> list[NodeStatus]:
    """Every node's latest status: the retained ones, and those nodes send when asked (a node
    answers a ``Discover`` within a second; the broker may not replay retained ones to us)."""
    out: dict[str, NodeStatus] = {}
    lock = threading.Lock()

    def on_status(_topic: str, payload: bytes, _retained: bool) -> None:
        try:
            status = NodeStatus.parse(payload)
        except ProtocolError:
            return
        with lock:
            if status.node not in out or out[status.node].heartbeat <= status.heartbeat:
                out[status.node] = status

    link.route(topics.all_node_status(), on_status)
    link.subscribe(topics.all_node_status(), qos=0, wait=10)
    link.publish(topics.discover(), Discover(link.client_id).to_bytes(), qos=0)
    time.sleep(max(settle, 1.2))  # a node answers within its 1 s rate limit
    link.unsubscribe(topics.all_node_status())
    with lock:
        return [out[n] for n in sorted(out)]


def swarm_states(link: MqttLink) -> list[SwarmState]:
    out = []
    for payload in retained(link, topics.all_swarm_states()).values():
        try:
            out.append(SwarmState.parse(payload))
        except ProtocolError:
            continue
    return sorted(out, key=lambda s: (-s.updated, s.swarm))


def prunable(states: list[SwarmState], now: float, older_than: float | None) -> list[SwarmState]:
    """Swarms that ended, and (with ``older_than``) those whose state is older than that many
    seconds whatever it says: a coordinator that died without its will, say."""
    return [s for s in states if s.terminal or (older_than is not None and s.updated and now - s.updated > older_than)]


def prune(link: MqttLink, swarm: str) -> int:
    """Clear a swarm's retained state (protocol v2 keeps no blob on the broker); return how many
    topics were cleared."""
    link.publish(topics.swarm_state(swarm), b"", retain=True)
    return 1


def request_stop(link: MqttLink, swarm: str, reason: str, by: str, wait: float) -> tuple[SwarmState | None, bool]:
    """Ask the swarm's coordinator to stop it; return its state once terminal (None: no answer
    within ``wait`` seconds), and whether it had ended before we asked (then nothing is sent)."""
    ended = threading.Event()
    final: list[SwarmState] = []

    def on_state(_topic: str, payload: bytes, _retained: bool) -> None:
        try:
            state = SwarmState.parse(payload)
        except ProtocolError:
            return
        if state.terminal:
            final.append(state)
            ended.set()

    link.route(topics.swarm_state(swarm), on_state)
    link.subscribe(topics.swarm_state(swarm), qos=1, wait=10)
    time.sleep(SETTLE)
    if ended.is_set():
        return final[-1], True
    ended.clear()
    link.publish(topics.swarm_control(swarm), SwarmControl(swarm, "stop", reason, by).to_bytes(), qos=1)
    return (final[-1] if ended.wait(wait) else None), False
