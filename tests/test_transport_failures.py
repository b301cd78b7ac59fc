"""Connection failures, explained in one line, against real brokers and real sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from manta_mqtt.transport.failures import Failure, classify, explain
from manta_mqtt.transport.mqtt import BrokerAddress, MqttLink

from .test_acl import secured  # noqa: F401  (the fixture)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def failure(url: str, *, username: str | None = None, password: str | None = None) -> tuple[str, str]:
    address = BrokerAddress.parse(url).with_credentials(username, password)
    link = MqttLink("probe", address, version="5", session_expiry=0)
    assert link.start(timeout=3) is False
    return link.failure, link.failure_line


def test_nothing_listening_is_refused() -> None:
    raw, line = failure(f"mqtt://127.0.0.1:{free_port()}")
    assert classify(raw) is Failure.REFUSED
    assert "connection refused (is the broker running, and is this its port?)" in line


def test_a_wrong_password_is_not_authorised(secured) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    raw, line = failure(secured.url, username="n1", password="wrong")
    assert classify(raw) is Failure.NOT_AUTHORISED, raw
    assert "refused user 'n1': not authorised (check --username and --password-file)" in line


def test_no_credentials_on_a_protected_broker_is_not_authorised(secured) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    raw, line = failure(secured.url)
    assert classify(raw) is Failure.NOT_AUTHORISED, raw
    assert "refused an anonymous client: not authorised (give --username and --password-file)" in line


def test_a_silent_port_times_out(tmp_path: Path) -> None:
    with socket.socket() as server:  # accepts the TCP connection, never answers MQTT
        server.bind(("127.0.0.1", 0))
        server.listen()
        raw, line = failure(f"mqtt://127.0.0.1:{server.getsockname()[1]}")
    assert classify(raw) is Failure.TIMEOUT, raw
    assert "is it an MQTT broker? for TLS use mqtts://" in line


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("TLS: the broker's certificate is not trusted", Failure.TLS),
        ("unreachable: [Errno -2] Name or service not known", Failure.UNREACHABLE),
        ("Bad user name or password", Failure.NOT_AUTHORISED),
        ("Not authorized", Failure.NOT_AUTHORISED),
        ("Unsupported protocol version", Failure.PROTOCOL),
    ],
)
def test_reasons_are_classified(reason: str, kind: Failure) -> None:
    assert classify(reason) is kind
    assert explain(BrokerAddress.parse("mqtt://h:1"), reason).count("\n") == 0
