"""Where a broker is and what a client leaves behind: plain values, no connection."""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import unquote, urlparse

from .tls import TlsFiles


@dataclass(frozen=True, repr=False)
class BrokerAddress:
    """Where the broker is: ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for TLS), and who
    we are to it: a password, or a client certificate in ``tls_files`` (with its CA).

    Neither ``str()`` nor ``repr()`` shows the password: addresses end up in log lines, error
    messages and the repr of configs that hold one.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_files: TlsFiles | None = None  # None with tls: the system's CAs, no client certificate

    def __post_init__(self) -> None:
        if self.tls_files is not None and not self.tls:
            # files for TLS on a plaintext URL: the user believes the link is encrypted; it would not be
            raise ValueError(f"TLS files are given but the broker URL is {self}; use mqtts:// for TLS")

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
        return replace(self, username=username or self.username, password=password or self.password)

    def with_tls(self, files: TlsFiles | None) -> BrokerAddress:
        """This address with these TLS files; ValueError if it is not an ``mqtts://`` one."""
        return replace(self, tls_files=files)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def __repr__(self) -> str:
        hidden = "'***'" if self.password is not None else "None"
        files = f", tls_files={self.tls_files!r}" if self.tls_files is not None else ""
        return (
            f"BrokerAddress(host={self.host!r}, port={self.port!r}, username={self.username!r}, "
            f"password={hidden}, tls={self.tls!r}{files})"
        )


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True
