"""Where a broker is and what a client leaves behind: plain values, no connection."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

from .tls import TlsFiles

SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}  # scheme -> TLS
_BAD_HOST = re.compile(r"[\s/?#@\[\]:,%]")


def server_name(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (``[::1]:1883``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, repr=False)
class BrokerAddress:
    """Where the broker is: ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for TLS), and who
    we are to it: a password, or a client certificate in ``tls_files`` (with its CA).

    The URL may name several brokers, the members of one cluster, comma-separated as in NATS or
    MongoDB connection strings: ``mqtt://user:pw@host1:1883,host2:1884,host3`` (each with its own
    port, by default the scheme's; IPv6 addresses in brackets). ``hosts`` holds them all, in
    order; ``host`` and ``port`` are the first. The same credentials and TLS files serve each.

    Neither ``str()`` nor ``repr()`` shows the password: addresses end up in log lines, error
    messages and the repr of configs that hold one.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_files: TlsFiles | None = None  # None with tls: the system's CAs, no client certificate
    hosts: tuple[tuple[str, int], ...] = field(default=())  # every member; () or one: (host, port)

    def __post_init__(self) -> None:
        if len(self.hosts) <= 1:  # a single broker, also after replace(host=...)
            object.__setattr__(self, "hosts", ((self.host, self.port),))
        elif self.hosts[0] != (self.host, self.port):
            raise ValueError(f"host and port {server_name(self.host, self.port)} must be the first of hosts")
        if self.tls_files is not None and not self.tls:
            # files for TLS on a plaintext URL: the user believes the link is encrypted; it would not be
            raise ValueError(f"TLS files are given but the broker URL is {self}; use mqtts:// for TLS")

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """An address from its URL; ValueError saying what is wrong (never quoting a password)."""
        if "://" not in url:
            url = "mqtt://" + url
        scheme, _, rest = url.partition("://")
        scheme = scheme.lower()
        if scheme not in SCHEMES:
            raise ValueError(f"unsupported broker URL scheme {scheme!r} (use mqtt:// or mqtts://)")
        tls = SCHEMES[scheme]
        netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]  # a path or query is ignored, as before
        userinfo, at, hostlist = netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon and secret else None
        default = 8883 if tls else 1883
        parts = hostlist.split(",")
        if re.fullmatch(r"(:\d+)?", hostlist):  # "mqtt://", "mqtt://:1884": this machine, as before
            parts = ["127.0.0.1" + hostlist]
        hosts = [_host_port(part, default) for part in parts]
        names = [server_name(h, p) for h, p in hosts]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"broker URL names {', '.join(twice)} more than once")
        host, port = hosts[0]
        return cls(host, port, username, password, tls, hosts=tuple(hosts))

    @property
    def servers(self) -> list[str]:
        """Each member as ``host:port``, in order."""
        return [server_name(h, p) for h, p in self.hosts]

    def at(self, index: int) -> BrokerAddress:
        """Member ``index`` alone, with the same credentials and TLS (for connections and messages)."""
        host, port = self.hosts[index]
        return replace(self, host=host, port=port, hosts=())

    def with_credentials(self, username: str | None, password: str | None) -> BrokerAddress:
        return replace(self, username=username or self.username, password=password or self.password)

    def with_tls(self, files: TlsFiles | None) -> BrokerAddress:
        """This address with these TLS files; ValueError if it is not an ``mqtts://`` one."""
        return replace(self, tls_files=files)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{','.join(self.servers)}"

    def __repr__(self) -> str:
        hidden = "'***'" if self.password is not None else "None"
        files = f", tls_files={self.tls_files!r}" if self.tls_files is not None else ""
        hosts = f", hosts={self.hosts!r}" if len(self.hosts) > 1 else ""
        return (
            f"BrokerAddress(host={self.host!r}, port={self.port!r}{hosts}, username={self.username!r}, "
            f"password={hidden}, tls={self.tls!r}{files})"
        )


def _host_port(text: str, default: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` of a URL's host list."""
    if not text:
        raise ValueError("broker URL has an empty host in its list (two commas, or one at an end?)")
    if text.startswith("["):  # IPv6
        inside, bracket, after = text[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError(f"broker host {text!r}: an IPv6 address goes in brackets, e.g. [::1]:1883")
        try:
            host = str(ipaddress.IPv6Address(inside))
        except ValueError:
            raise ValueError(f"broker host {text!r}: {inside!r} is not an IPv6 address") from None
        port_text = after[1:] if after else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
        if ":" in port_text_:
            raise ValueError(f"broker host {text!r}: an IPv6 address goes in brackets, e.g. [::1]:1883")
        if not host:
            raise ValueError(f"broker host {text!r} has no name")
        if _BAD_HOST.search(host):
            raise ValueError(f"broker host {host!r} is not a host name or address")
        host = host.lower()  # as urlparse's hostname: names are not case-sensitive
    if port_text is None:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"broker host {text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True
