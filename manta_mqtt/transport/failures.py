"""Why a connection to the broker failed, in one line that says what to check.

``MqttLink.failure`` holds the raw reason (paho's CONNACK reason, a socket error, or a TLS
explanation from :mod:`.tls`); :func:`explain` turns it into the line every command prints, and
:func:`classify` into a kind that callers may act on (retry quietly, or tell a person).

With several brokers (a cluster URL) it holds each member's reason, ``h1:1883: reason; h2:1883:
reason`` (:func:`joined`); both functions read that form too.
"""

from __future__ import annotations

import re
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


#: A member's part of a joined reason starts with its ``host:port: `` (IPv6 in brackets).
_MEMBER = re.compile(r"(?:^|; )((?:\[[0-9A-Fa-f:.]+\]|[^\s;:\[\]]+):\d+): ")
#: Which kind a joined reason is, when its members failed differently: what needs a person first.
_FIRST = [Failure.NOT_AUTHORISED, Failure.TLS, Failure.PROTOCOL, Failure.TIMEOUT, Failure.UNREACHABLE, Failure.REFUSED]


def joined(tried: list[tuple[str, str]]) -> str:
    """One reason of several members' (``server``, ``reason``); a single one stays as it is."""
    if len(tried) == 1:
        return tried[0][1]
    return "; ".join(f"{server}: {reason}" for server, reason in tried)


def split(reason: str) -> list[tuple[str, str]]:
    """(server, reason) of each member in a :func:`joined` reason; [("", reason)] for a plain one."""
    marks = list(_MEMBER.finditer(reason))
    if not marks or marks[0].start() != 0:
        return [("", reason)]
    ends = [m.start() for m in marks[1:]] + [len(reason)]
    return [(m.group(1), reason[m.end() : end]) for m, end in zip(marks, ends, strict=True)]


def classify(reason: str) -> Failure:
    parts = split(reason)
    if len(parts) > 1:
        return min((classify(part) for _server, part in parts), key=_FIRST.index)
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
    """One line: what went wrong connecting to ``address`` (each member's, for a cluster), and what to check."""
    parts = split(reason)
    if parts[0][0]:  # a joined reason: each member's
        return "; ".join(explain(_member(address, server), part) for server, part in parts)
    kind = classify(reason)
    where = ",".join(address.servers)
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


def _member(address: BrokerAddress, server: str) -> BrokerAddress:
    servers = address.servers
    return address.at(servers.index(server)) if server in servers else address
