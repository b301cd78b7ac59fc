"""Where a broker is and what a client leaves behind: plain values, no connection."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlparse


@dataclass(frozen=True, repr=False)
class BrokerAddress:
    """Where the broker is: ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for TLS).

    Neither ``str()`` nor ``repr()`` shows the password: addresses end up in log lines, error
    messages and the repr of configs that hold one.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        if "://" not in url:
            url = "mqtt://" + url
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"unsupported broker URL scheme {parsed.scheme!r}")
        tls = parsed.scheme in ("mqtts", "ssl")
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or (8883 if tls else 1883),
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            tls=tls,
        )

    def with_credentials(self, username: str | None, password: str | None) -> BrokerAddress:
        return BrokerAddress(self.host, self.port, username or self.username, password or self.password, self.tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def __repr__(self) -> str:
        hidden = "'***'" if self.password is not None else "None"
        return (
            f"BrokerAddress(host={self.host!r}, port={self.port!r}, username={self.username!r}, "
            f"password={hidden}, tls={self.tls!r})"
        )


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True
