"""A thin adapter over paho-mqtt: one connection, bounded in-flight publishing, routed handlers.

What it adds to paho, and why:
- MQTT 5 or 3.1.1 (``version="auto"`` tries 5 and falls back), since amqtt, RabbitMQ and NATS
  speak only 3.1.1 while Mosquitto speaks 5;
- a persistent session (the broker queues QoS 1 messages while we are away) and
  re-subscription when the broker lost it;
- a window on unacknowledged QoS 1 publishes, because paho queues without bound and a broker
  drops silently past its per-client queue;
- the broker's maximum packet size (MQTT 5 CONNACK), which paho ignores, for sizing chunks;
- handlers that never take the network thread down: an exception is logged and counted;
- SUBACK reason codes read: a refused subscription is logged with its filter and reason,
  counted, reported to ``on_refused`` hooks and fails ``subscribe(wait=...)`` (paho ignores them,
  and a broker at its subscription limit, or an ACL, refuses with no other sign);
- TCP_NODELAY (paho leaves Nagle on): a small packet never waits ~40 ms for the last one's ACK;
- TLS from the address's files (``BrokerAddress.tls_files``), and a refused handshake or
  certificate told in words (``failure``), on the first connection and on paho's reconnections;
- failover between the brokers of a cluster URL (``mqtt://h1,h2,h3``): a lost connection moves
  to the next member within about a second (:mod:`.connection`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..protocol.limits import PUBLISH_WINDOW
from .address import BrokerAddress, Will
from .connection import VERSIONS, Connection
from .subscriptions import SubscriptionBook
from .tls import TlsFiles

__all__ = ["VERSIONS", "BrokerAddress", "MqttLink", "TlsFiles", "Will"]

Handler = Callable[[str, bytes, bool], None]  # topic, payload, retained
Refused = Callable[[list[str], str], None]  # the filters the broker refused, and why

log = logging.getLogger("manta_mqtt.transport")


def _no_delay(_c: paho.Client, _u: Any, sock: Any) -> None:
    """Nagle's algorithm off on each new connection's socket (TLS wraps a TCP socket too)."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttLink(Connection):
    """One MQTT connection with a persistent session and a bounded publish window.

    Connecting, reconnecting and moving between a cluster's brokers: :class:`.connection.Connection`
    (``start``, ``failure``, ``failure_line``, ``server``, ``connections``).
    """

    def __init__(
        self,
        client_id: str,
        address: BrokerAddress,
        *,
        will: Will | None = None,
        version: str = "auto",
        session_expiry: int = 3600,  # 0: a clean session, for short-lived tools
        keepalive: int = 30,
        window: int = PUBLISH_WINDOW,
    ) -> None:
        super().__init__(
            client_id,
            address,
            will=will,
            version=version,
            session_expiry=session_expiry,
            keepalive=keepalive,
            window=window,
        )
        self.max_packet: int | None = None
        self.handler_errors = 0
        self._routes: list[tuple[str, Handler]] = []
        self._book = SubscriptionBook()  # under self._cond
        self._on_connect_hooks: list[Callable[[], None]] = []
        self._pending: set[int] = set()  # publishes in the window: QoS 1 not acknowledged, QoS 0 not written
        self._unwritten: set[int] = set()  # the QoS 0 ones among them (paho drops those on a reconnection)
        self._early: set[int] = set()
        self._refused_hooks: list[Refused] = []

    # --- set-up ---------------------------------------------------------------------------

    def route(self, topic_filter: str, handler: Handler) -> None:
        """Call ``handler`` for every message matching ``topic_filter`` (first match wins)."""
        self._routes.append((topic_filter, handler))

    def on_connect(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` on the network thread after every (re)connection."""
        self._on_connect_hooks.append(hook)

    def on_refused(self, hook: Refused) -> None:
        """Run ``hook(filters, reason)`` on the network thread when the broker refuses subscriptions."""
        self._refused_hooks.append(hook)

    # --- paho callbacks (network thread) -------------------------------------------------

    def _wire(self, client: paho.Client) -> None:
        client.on_socket_open = _no_delay
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe

    def _established(self, client: paho.Client, flags: Any, props: Any) -> None:
        if props is not None and hasattr(props, "MaximumPacketSize"):
            self.max_packet = int(props.MaximumPacketSize)
        held = list(self._book.filters.items())
        if not flags.session_present and held:  # a new broker, or ours forgot us: subscribe again
            self._send_subscribe(client, held)
        with self._cond:  # paho dropped the QoS 0 publishes it had not written yet: out of the window
            self._pending -= self._unwritten
            self._unwritten.clear()
            self._cond.notify_all()
        self.connected.set()
        for hook in self._on_connect_hooks:
            self._guard(hook)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._cond:
            if mid in self._pending:
                self._pending.discard(mid)
                self._unwritten.discard(mid)
            else:
                self._early.add(mid)
            self._cond.notify_all()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        for topic_filter, handler in self._routes:
            if paho.topic_matches_sub(topic_filter, msg.topic):
                self._guard(handler, msg.topic, msg.payload, bool(msg.retain))
                return

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a handler bug must not kill the network thread
            self.handler_errors += 1
            log.exception("handler %s failed", getattr(fn, "__qualname__", fn))

    # --- operations -----------------------------------------------------------------------

    @property
    def _paho(self) -> paho.Client:
        if self._client is None:
            raise RuntimeError("MqttLink.start() has not succeeded")
        return self._client

    def subscribe(self, topic_filter: str | list[str], qos: int = 1, wait: float | None = None) -> bool:
        """Subscribe (remembered, and restored after a reconnection without session).

        With ``wait``, block until the broker acknowledges (SUBACK), and return False if it
        does not within ``wait`` seconds: a connection that cannot subscribe is no connection.
        A refused one (its SUBACK code) also returns False; ``refusal`` says which and why.
        """
        filters = [topic_filter] if isinstance(topic_filter, str) else topic_filter
        with self._cond:
            self._book.hold(filters, qos)
        if self._client is None or not filters:
            return False
        mid = self._send_subscribe(self._client, [(f, qos) for f in filters])
        if wait is None or mid is None:
            return wait is None
        deadline = time.monotonic() + wait
        with self._cond:
            while not self._book.has_answer(mid) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return self._book.answer(mid) == ""

    def _send_subscribe(self, client: paho.Client, pairs: list[tuple[str, int]]) -> int | None:
        with self._cond:  # paho may answer on the network thread before subscribe() returns here
            _rc, mid = client.subscribe(pairs)
            if mid is not None:
                self._book.sent(mid, [f for f, _ in pairs])
        return mid

    def _on_subscribe(self, _c: paho.Client, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        with self._cond:
            refused, text = self._book.answered(mid, codes)
        if refused:  # told before a waiting subscribe() returns
            log.error("%s at %s: a broker limit or its ACL", self._book.refusal, self.server)
            for hook in self._refused_hooks:
                self._guard(hook, refused, text)
        with self._cond:
            self._book.record(mid, text)
            self._cond.notify_all()

    @property
    def refusal(self) -> str:
        """The latest refused subscription, in words ("" if none was)."""
        return self._book.refusal

    @property
    def subscriptions_refused(self) -> int:
        return self._book.refused_count

    @property
    def subscriptions(self) -> list[str]:
        """The filters this link holds (and restores after a reconnection without session)."""
        with self._cond:
            return list(self._book.filters)

    def unsubscribe(self, topic_filter: str | list[str]) -> None:
        filters = [topic_filter] if isinstance(topic_filter, str) else topic_filter
        with self._cond:
            self._book.drop(filters)
        if self._client is not None and filters:
            self._client.unsubscribe(filters)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish; waits while ``window`` earlier publishes are in flight: QoS 1 ones until the
        broker acknowledges them, QoS 0 ones until paho wrote them to the socket (so bulk data at
        QoS 0 is paced by TCP instead of piling up in paho's unbounded queue).

        Called from the network thread (a handler), it never waits: that thread is the one
        that reads the acknowledgements and writes the socket.
        """
        client = self._paho
        on_loop = threading.current_thread() is getattr(client, "_thread", None)
        if not on_loop:
            with self._cond:
                while len(self._pending) >= self.window and not self._closing:
                    self._cond.wait(0.5)
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        if qos == 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            return  # paho dropped it: nothing will come for it
        with self._cond:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._pending.add(info.mid)
                if qos == 0:
                    self._unwritten.add(info.mid)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every QoS 1 publish so far is acknowledged by the broker (and QoS 0 written)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return not self._pending

    def stop(self, final: list[tuple[str, bytes]] | None = None, *, end_session: bool = False) -> None:
        """Publish ``final`` messages (retained, e.g. an offline status), then disconnect.

        ``end_session``: this client id will not come back (a finished run's coordinator), so the
        broker is told to drop its session, subscriptions and queue: MQTT 5 by a session expiry
        of 0 on DISCONNECT; 3.1.1 has no expiry, so a clean-session connection replaces it (else
        it stays on the broker for good: NATS keeps JetStream consumers for it)."""
        if self._client is None:
            return
        for topic, payload in final or []:
            if self.connected.is_set():
                self.publish(topic, payload, qos=1, retain=True)
        if self.connected.is_set():
            self.flush(5.0)
        self._closing, self._roaming = True, False
        with self._cond:
            self._cond.notify_all()
        properties = None
        if end_session and self.protocol == "5":
            properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        self._client.loop_stop()
        self._client = None
        self.connected.clear()
        if end_session and self.protocol == "3.1.1" and self.session_expiry:
            self._replace_session()

    def _replace_session(self) -> None:
        """Connect once with a clean session and leave: the broker drops the persistent one."""
        self._on_connect_hooks, self._routes, self.will = [], [], None  # a goodbye, not a return
        with self._cond:
            self._book = SubscriptionBook()
        expiry, self.session_expiry = self.session_expiry, 0
        try:
            if self._try_connect("3.1.1", 5.0)[0] and self._client is not None:
                self._client.disconnect()
                self._client.loop_stop()
        finally:
            self.session_expiry, self._client = expiry, None
            self.connected.clear()
