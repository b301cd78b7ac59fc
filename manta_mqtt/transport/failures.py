"""Why a connection to the broker failed, in one line that says what to check.

``MqttLink.failure`` holds the raw reason (paho's CONNACK reason, a socket error, or a TLS
explanation from :mod:`.tls`); :func:`explain` turns it into the line every command prints, and
:func:`classify` into a kind that callers may act on (retry quietly, or tell a person).
"""

from __future__ import annotations

from enum import Enum

from .address import BrokerAddress


class Failure(Enum):
    REFUSED = "refused"  # nothing listens there, or a firewall said no
    UNREACHABLE = "unreachable"  # no route, unknown host
    NOT_AUTHORISED = "not authorised"  # the broker answered, and refused our credentials
    TLS = "TLS"  # the handshake failed: certificates, names, or TLS against a plaintext port
    TIMEOUT = "timeout"  # no answer in time
    PROTOCOL = "protocol"  # the broker answered with another refusal (version, client id, ...)


_AUTH = ("not authori", "bad user name or password", "bad username or password", "banned")


def classify(reason: str) -> Failure:
    text = reason.lower()
    if text.startswith("tls") or "certificate" in text or "handshake" in text:
        return Failure.TLS
    if any(word in text for word in _AUTH):
        return Failure.NOT_AUTHORISED
    if "connection refused" in text or "errno 111" in text:
        return Failure.REFUSED
    if text.startswith("unreachable") or "name or service not known" in text or "no route" in text:
        return Failure.UNREACHABLE
    if "timed out" in text or "no connack" in text:
        return Failure.TIMEOUT
    return Failure.PROTOCOL


def explain(address: BrokerAddress, reason: str) -> str:
    """One line: what went wrong connecting to ``address``, and what to check."""
    kind = classify(reason)
    where = f"{address.host}:{address.port}"
    match kind:
        case Failure.REFUSED:
            return f"cannot connect to {where}: connection refused (is the broker running, and is this its port?)"
        case Failure.UNREACHABLE:
            return f"cannot reach {where}: {reason.removeprefix('unreachable: ')} (check the host name and network)"
        case Failure.NOT_AUTHORISED:
            who = f"user {address.username!r}" if address.username else "an anonymous client"
            hint = "check --username and --password-file" if address.username else "give --username and --password-file"
            if address.tls_files is not None and address.tls_files.cert is not None:
                hint = "check that the client certificate is the one the broker expects"
            return f"the broker at {where} refused {who}: not authorised ({hint})"
        case Failure.TLS:
            return f"TLS with {where} failed: {reason.removeprefix('TLS: ')}"
        case Failure.TIMEOUT:
            return f"no answer from {where} in time ({reason}); is it an MQTT broker? for TLS use mqtts://"
    return f"the broker at {where} refused the connection: {reason}"
