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
  certificate told in words (``failure``), on the first connection and on paho's reconnections.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..protocol.limits import PUBLISH_WINDOW
from .address import BrokerAddress, Will
from .failures import explain
from .subscriptions import SubscriptionBook
from .tls import HandshakeWatch, TlsFileError, TlsFiles, explain_closed, explain_handshake

__all__ = ["VERSIONS", "BrokerAddress", "MqttLink", "TlsFiles", "Will"]

Handler = Callable[[str, bytes, bool], None]  # topic, payload, retained
Refused = Callable[[list[str], str], None]  # the filters the broker refused, and why

log = logging.getLogger("manta_mqtt.transport")


VERSIONS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}


def _no_delay(_c: paho.Client, _u: Any, sock: Any) -> None:
    """Nagle's algorithm off on each new connection's socket (TLS wraps a TCP socket too)."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttLink:
    """One MQTT connection with a persistent session and a bounded publish window."""

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
        if version not in ("auto", *VERSIONS):
            raise ValueError(f"MQTT version must be auto, 5 or 3.1.1, not {version!r}")
        self.client_id = client_id
        self.address = address
        self.will = will
        self.version = version
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.window = window
        self.connected = threading.Event()
        self.failure = ""  # why the last start() failed, in words (failure_line: explained)
        self.protocol: str = ""
        self.max_packet: int | None = None
        self.handler_errors = 0
        self._routes: list[tuple[str, Handler]] = []
        self._book = SubscriptionBook()  # under self._cond
        self._on_connect_hooks: list[Callable[[], None]] = []
        self._cond = threading.Condition()
        self._pending: set[int] = set()
        self._early: set[int] = set()
        self._refused_hooks: list[Refused] = []
        self.session_present = False  # the broker still had our session at the latest CONNACK
        self._connack: tuple[bool, str] | None = None
        self._closing = False
        self._client: paho.Client | None = None
        self._loop_thread: threading.Thread | None = None
        self._handshake = HandshakeWatch()  # the TLS handshake of the latest attempt (paho's too)
        self._answered = False  # the latest attempt got a CONNACK

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

    @property
    def failure_line(self) -> str:
        """Why the last :meth:`start` failed, in one line that says what to check."""
        return explain(self.address, self.failure) if self.failure else ""

    def start(self, timeout: float = 10.0) -> bool:
        """Connect once (blocking); afterwards paho reconnects by itself with back-off.

        Returns False when the broker cannot be reached or refuses us, so that the caller can
        retry with its own back-off.
        """
        self._closing = False
        versions = list(VERSIONS) if self.version == "auto" else [self.version]
        for version in versions:
            # amqtt leaves a refused MQTT 5 connection half-open, so the probe gets less time
            probe = min(timeout, 5.0) if len(versions) > 1 and version == "5" else timeout
            accepted, reason = self._try_connect(version, probe)
            if accepted:
                self.protocol, self.failure = version, ""
                log.info("connected to %s as %s (MQTT %s)", self.address, self.client_id, version)
                return True
            log.info("MQTT %s connection to %s failed: %s", version, self.address, reason)
            self.failure = reason
            if reason.startswith(("unreachable", "TLS")):  # no other MQTT version will do better
                break
        return False

    def _make_client(self, version: str) -> paho.Client:
        protocol = VERSIONS[version]
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if protocol == MQTTProtocolVersion.MQTTv5 else self.session_expiry == 0,
            protocol=protocol,
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            files = self.address.tls_files
            client.tls_set_context(self._handshake.install(files.context() if files else ssl.create_default_context()))
        if self.will:
            client.will_set(self.will.topic, self.will.payload, qos=1, retain=self.will.retain)
        client.reconnect_delay_set(1, 30)
        client.max_inflight_messages_set(self.window)
        client.on_pre_connect = self._on_pre_connect
        client.on_socket_open = _no_delay
        client.on_connect_fail = self._on_connect_fail
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    def _try_connect(self, version: str, timeout: float) -> tuple[bool, str]:
        try:
            client = self._make_client(version)
        except TlsFileError as exc:  # a file removed or replaced since it was checked
            return False, f"TLS: {exc}"
        self._connack = None
        properties = None
        clean_start: Any = paho.MQTT_CLEAN_START_FIRST_ONLY
        if VERSIONS[version] == MQTTProtocolVersion.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.session_expiry
            clean_start = self.session_expiry == 0
        try:
            client.connect(
                self.address.host,
                self.address.port,
                self.keepalive,
                clean_start=clean_start,
                properties=properties,
            )
        except (OSError, ValueError) as exc:
            if self.address.tls and (self._handshake.error is not None or isinstance(exc, ssl.SSLError)):
                return False, explain_handshake(exc, self.address.host, self.address.tls_files)
            return False, f"unreachable: {exc}"
        self._client = client
        client.loop_start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._connack is None and time.monotonic() < deadline:
                self._cond.wait(0.05)
            connack = self._connack
        if connack is not None and connack[0]:
            return True, ""
        client.loop_stop()
        client.disconnect()
        self._client = None
        return False, connack[1] if connack else "no CONNACK (connection closed or timed out)"

    # --- paho callbacks (network thread) -------------------------------------------------

    def _on_pre_connect(self, _c: paho.Client, _u: Any) -> None:
        self._handshake.reset()
        self._answered = False

    def _closed_early(self, rc: Any) -> str:
        """Why the broker closed the connection before its CONNACK."""
        if self.address.tls:
            if self._handshake.error is not None:
                return explain_handshake(self._handshake.error, self.address.host, self.address.tls_files)
            if self._handshake.completed:
                return explain_closed(self.address.tls_files)
            return f"connection closed before CONNACK ({rc})"
        return f"the broker closed the connection before answering ({rc}); if this is a TLS port, use mqtts://"

    def _on_connect_fail(self, _c: paho.Client, _u: Any) -> None:
        """paho's own reconnection failed: say so if it needs a person (TLS), else retry quietly."""
        error = self._handshake.error
        if error is not None and not self._closing:
            log.warning(
                "reconnecting to %s: %s",
                self.address,
                explain_handshake(error, self.address.host, self.address.tls_files),
            )

    def _on_connect(self, client: paho.Client, _u: Any, flags: Any, rc: Any, props: Any) -> None:
        ok = not rc.is_failure
        self._answered = True
        with self._cond:
            self._connack = (ok, str(rc))
            self._cond.notify_all()
        if not ok:
            return
        if props is not None and hasattr(props, "MaximumPacketSize"):
            self.max_packet = int(props.MaximumPacketSize)
        held = list(self._book.filters.items())
        self.session_present = bool(flags.session_present)
        if not flags.session_present and held:
            self._send_subscribe(client, held)
        self.connected.set()
        for hook in self._on_connect_hooks:
            self._guard(hook)

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connected.clear()
        early = not self._answered
        with self._cond:
            if self._connack is None:
                self._connack = (False, self._closed_early(rc))
                self._cond.notify_all()
        if self._closing or not self._connack[0]:
            return
        if early and self.address.tls:  # one of paho's reconnections, refused: certificates changed?
            log.warning("reconnecting to %s: %s", self.address, self._closed_early(rc))
        elif early:  # the same URL worked before: no TLS hint, and paho retries anyway
            log.info("reconnecting to %s: connection closed before CONNACK (%s)", self.address, rc)
        else:
            log.warning("disconnected from %s (%s); paho reconnects with back-off", self.address, rc)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._cond:
            if mid in self._pending:
                self._pending.discard(mid)
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
            log.error("%s at %s: a broker limit or its ACL", self._book.refusal, self.address)
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
        """Publish; QoS 1 waits while ``window`` earlier publishes are unacknowledged.

        Called from the network thread (a handler), it never waits: that thread is the one
        that reads the acknowledgements.
        """
        client = self._paho
        on_loop = threading.current_thread() is getattr(client, "_thread", None)
        if qos and not on_loop:
            with self._cond:
                while len(self._pending) >= self.window and not self._closing:
                    self._cond.wait(0.5)
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        if qos:
            with self._cond:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                else:
                    self._pending.add(info.mid)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every QoS 1 publish so far is acknowledged by the broker."""
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
        self._closing = True
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
