"""Getting and keeping an MQTT connection: the first one (:meth:`Connection.start`), paho's
reconnections, and failover between the members of a broker cluster.

A :class:`~.address.BrokerAddress` may name several brokers (``mqtt://h1:1883,h2:1883,h3``).
``start()`` tries each in turn, the current one first, until one accepts. Once connected, paho's
own loop reconnects after a loss; before each of its attempts (``on_pre_connect``) the link moves
to the next member, so a dead one is left at the first retry, and :class:`Members` sets the wait
before the attempt after it: 1 s while members remain untried in this round, then 2, 4 ... 30 s
between rounds (all down: a fleet must not hammer the cluster). A member that takes the
connection but does not answer is left after 1.5 s (doubling per round) for the next one at
once, and then the rounds do not back off: that member is up (a NATS member answers no
connection made while JetStream elects a leader, and a new one as soon as it has). A client whose broker
dies is on the next live member about 1 s later per dead member on the way. A single broker
keeps paho's own back-off (1 s doubling to 30 s), exactly as before clusters.

:class:`Connection` is the base of :class:`~.mqtt.MqttLink`, which adds the traffic.
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
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .address import BrokerAddress, Will
from .failures import explain, joined
from .members import MAX_WAIT, NEXT_MEMBER_WAIT, PAHO_CONNECT_TIMEOUT, Members
from .tls import HandshakeWatch, TlsFileError, explain_closed, explain_handshake

log = logging.getLogger("manta_mqtt.transport")

VERSIONS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}


def _aim(client: paho.Client, member: BrokerAddress, timeout: float) -> None:
    """Point paho's next connection attempt at ``member``, its TCP connect and TLS handshake
    bounded by ``timeout`` seconds (paho's default: 5).

    From ``on_pre_connect`` only: the socket is closed then, but paho 2.2's setters refuse any
    state but NEW or DISCONNECTED and reconnect() has set CONNECTING. The socket (and TLS: SNI
    and the certificate's name) is made from ``_host``/``_port`` right after.
    """
    client._host, client._port = member.host, member.port
    client._connect_timeout = min(timeout, PAHO_CONNECT_TIMEOUT)


def _hang_up(sock: Any) -> None:
    """End a connection under paho's network loop: it reads EOF, and reconnects as after a loss."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # not SSLSocket's, which drops its TLS state


class Connection:
    """One MQTT connection to one of the address's brokers (see the module's doc)."""

    def __init__(
        self,
        client_id: str,
        address: BrokerAddress,
        *,
        will: Will | None,
        version: str,
        session_expiry: int,
        keepalive: int,
        window: int,
    ) -> None:
        if version not in ("auto", *VERSIONS):
            raise ValueError(f"MQTT version must be auto, 5 or 3.1.1, not {version!r}")
        self.client_id = client_id
        self.address = address
        self.will = will
        # the will of each connection, from its number (1, 2, ...): a will that the broker
        # delivers late (after our next connection's status) must say which connection it ends
        self.will_for: Callable[[int], Will] | None = None
        self.version = version
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.window = window
        self.connected = threading.Event()
        self.failure = ""  # why the last start() failed, in words (failure_line: explained)
        self.protocol: str = ""
        self.connections = 0  # CONNACKs that accepted us: 1 after start(), more after reconnections
        self.session_present = False  # the broker still had our session at the latest CONNACK
        self._members = Members(address)
        self._last_server = ""  # where the latest accepted CONNACK came from
        self._roaming = False  # start() succeeded: paho's reconnections move between members
        self._cond = threading.Condition()
        self._connack: tuple[bool, str] | None = None
        self._closing = False
        self._client: paho.Client | None = None
        self._handshake = HandshakeWatch()  # the TLS handshake of the latest attempt (paho's too)
        self._answered = False  # the latest attempt got a CONNACK
        self._attempt = 0  # paho's reconnection attempts that wait for an answer (_no_answer)
        self._silenced = -1  # the attempt _no_answer hung up on

    @property
    def server(self) -> str:
        """``host:port`` of the broker we are connected to, or tried last."""
        return self._members.server

    @property
    def failure_line(self) -> str:
        """Why the last :meth:`start` failed, in one line that says what to check."""
        return explain(self.address, self.failure) if self.failure else ""

    def start(self, timeout: float = 10.0) -> bool:
        """Connect once (blocking); afterwards paho reconnects by itself with back-off.

        With several brokers, each is tried in turn (``timeout`` each), the current one first.
        Returns False when none can be reached or accepts us (``failure`` says why, for each),
        so that the caller can retry with its own back-off.
        """
        self._closing, self._roaming = False, False
        tried: list[tuple[str, str]] = []
        for turn in range(len(self.address.hosts)):
            if turn:
                self._members.step()
            reason = self._start_here(timeout)
            if not reason:
                self.failure, self._roaming = "", True
                return True
            tried.append((self._members.server, reason))
        self.failure = joined(tried)
        return False

    def _start_here(self, timeout: float) -> str:
        """Connect to the current member, trying each MQTT version of ``auto``: "" or why not."""
        versions = list(VERSIONS) if self.version == "auto" else [self.version]
        reason = ""
        for version in versions:
            # amqtt leaves a refused MQTT 5 connection half-open, so the probe gets less time
            probe = min(timeout, 5.0) if len(versions) > 1 and version == "5" else timeout
            accepted, reason = self._try_connect(version, probe)
            if accepted:
                self.protocol = version
                log.info("connected to %s as %s (MQTT %s)", self._members.current, self.client_id, version)
                return ""
            log.info("MQTT %s connection to %s failed: %s", version, self._members.current, reason)
            if reason.startswith(("unreachable", "TLS")):  # no other MQTT version will do better
                break
        return reason

    def _wire(self, client: paho.Client) -> None:
        """Set the callbacks of the traffic (messages, acknowledgements): the link's."""

    def _established(self, client: paho.Client, flags: Any, props: Any) -> None:
        """After each accepted CONNACK, on the network thread: the link restores what it holds."""

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
        self._set_will(client)
        client.reconnect_delay_set(1, MAX_WAIT)
        client.max_inflight_messages_set(self.window)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._wire(client)
        return client

    def _try_connect(self, version: str, timeout: float) -> tuple[bool, str]:
        member = self._members.current
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
            client.connect(member.host, member.port, self.keepalive, clean_start=clean_start, properties=properties)
        except (OSError, ValueError) as exc:
            if member.tls and (self._handshake.error is not None or isinstance(exc, ssl.SSLError)):
                return False, explain_handshake(exc, member.host, member.tls_files)
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

    def _set_will(self, client: paho.Client) -> None:
        if self.will_for is not None:
            self.will = self.will_for(self.connections + 1)
        if self.will:
            client.will_set(self.will.topic, self.will.payload, qos=1, retain=self.will.retain)

    def _on_pre_connect(self, client: paho.Client, _u: Any) -> None:
        self._handshake.reset()
        self._answered, self._silenced = False, -1
        try:
            self._set_will(client)
        except Exception:  # what escapes from here ends paho's network thread
            log.exception("setting the will of the next connection failed")
        if not (self._roaming and self._members.several) or self._closing:
            return  # start()'s own attempts choose their member; one broker: paho's back-off
        try:  # paho raises what escapes from here out of its network thread, ending it
            member, patience = self._members.retry(), self._members.answer_wait()
            _aim(client, member, patience)
            wait = self._members.wait()
            client.reconnect_delay_set(wait, wait)
            log.info("reconnecting: trying broker %s", self._members.server)
            if patience < self.keepalive:  # beyond, paho's keepalive ends a silent connection
                self._attempt += 1
                timer = threading.Timer(patience, self._no_answer, (client, self._attempt, patience))
                timer.daemon = True
                timer.start()
        except Exception:
            log.exception("choosing the next broker failed; paho retries %s", self._members.server)

    def _no_answer(self, client: paho.Client, attempt: int, patience: float) -> None:
        """On a timer: a member that took the connection but gave no CONNACK (a NATS member waits
        4 s for JetStream when a peer died) is left for the next one, at once."""
        if attempt != self._attempt or self._answered or self._closing or client is not self._client:
            return
        sock = client.socket()
        if sock is None:  # still connecting: the connect timeout (_aim) ends that
            return
        wait = self._members.wait(silent=True)
        client.reconnect_delay_set(wait, wait)
        self._silenced = attempt
        log.info("no answer from broker %s in %.1f s; trying the next", self._members.server, patience)
        _hang_up(sock)

    def _closed_early(self, rc: Any) -> str:
        """Why the broker closed the connection before its CONNACK."""
        member = self._members.current
        if member.tls:
            if self._handshake.error is not None:
                return explain_handshake(self._handshake.error, member.host, member.tls_files)
            if self._handshake.completed:
                return explain_closed(member.tls_files)
            return f"connection closed before CONNACK ({rc})"
        return f"the broker closed the connection before answering ({rc}); if this is a TLS port, use mqtts://"

    def _on_connect_fail(self, _c: paho.Client, _u: Any) -> None:
        """paho's own reconnection failed: say so if it needs a person (TLS), else retry quietly."""
        error = self._handshake.error
        if error is not None and not self._closing:
            member = self._members.current
            log.warning("reconnecting to %s: %s", member, explain_handshake(error, member.host, member.tls_files))

    def _on_connect(self, client: paho.Client, _u: Any, flags: Any, rc: Any, props: Any) -> None:
        ok = not rc.is_failure
        self._answered = True
        with self._cond:
            self._connack = (ok, str(rc))
            self._cond.notify_all()
        if not ok:
            return
        self.connections += 1
        server = self._members.server
        if self._last_server and server != self._last_server:
            log.warning("moved to broker %s (from %s)", server, self._last_server)
        self._last_server = server
        if self._members.several:  # the first retry after a loss comes 1 s after it (Members.retry)
            self._members.connected()
            client.reconnect_delay_set(NEXT_MEMBER_WAIT, NEXT_MEMBER_WAIT)
        self.session_present = bool(flags.session_present)
        self._established(client, flags, props)

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connected.clear()
        early = not self._answered
        with self._cond:
            if self._connack is None:
                self._connack = (False, self._closed_early(rc))
                self._cond.notify_all()
        if self._closing or not self._connack[0] or (early and self._silenced == self._attempt):
            return
        member = self._members.current
        if early and member.tls:  # one of paho's reconnections, refused: certificates changed?
            log.warning("reconnecting to %s: %s", member, self._closed_early(rc))
        elif early:  # the same URL worked before: no TLS hint, and paho retries anyway
            log.info("reconnecting to %s: connection closed before CONNACK (%s)", member, rc)
        else:
            again = "moves to the next broker" if self._members.several else "reconnects with back-off"
            log.warning("disconnected from %s (%s); paho %s", member, rc, again)
