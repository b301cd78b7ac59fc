"""TLS for broker connections: the CA that vouches for the broker, and our own certificate and key.

One value, :class:`TlsFiles`, travels inside the :class:`~.address.BrokerAddress`: the CLI
(``--tls-ca/--tls-cert/--tls-key``) and node.toml (``[broker] tls_ca/tls_cert/tls_key``) build it
with :meth:`TlsFiles.load`, which checks the files at once, so a wrong path, an expired
certificate or a key that is not the certificate's stops a command before it connects.
:class:`MqttLink` turns it into an ``ssl`` context for each connection, re-reading the files, so
a renewed certificate is used at the next reconnection.

A refused handshake is turned into a sentence that says what to fix: OpenSSL's own words
("EOF occurred in violation of protocol", when Mosquitto refuses our certificate) do not.
"""

from __future__ import annotations

import datetime
import os
import shlex
import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a certificate is read: a node without TLS never loads cryptography
    from cryptography import x509

__all__ = ["HandshakeWatch", "TlsFileError", "TlsFiles", "explain_closed", "explain_handshake"]

#: More than any certificate bundle: a wrong path (a model file, say) is not read whole.
MAX_PEM_BYTES = 1024 * 1024
#: OpenSSL verify codes (X509_V_ERR_*) that mean "valid certificate, wrong name".
_NAME_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_CERT_EXPIRED = 10
#: Handshake errors that mean the other end does not speak TLS at all.
_NOT_TLS = {
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "UNKNOWN_PROTOCOL",
    "HTTP_REQUEST",
    "PACKET_LENGTH_TOO_LONG",
}


class TlsFileError(ValueError):
    """A CA, certificate or key file that cannot be used; ``which`` is "ca", "cert" or "key"."""

    def __init__(self, which: str, message: str) -> None:
        super().__init__(message)
        self.which = which


@dataclass(frozen=True)
class TlsFiles:
    """The CA file that signed the broker's certificate (None: the system's CAs) and our client
    certificate and its private key (both or neither), as PEM files."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def load(
        cls,
        ca: str | Path | None,
        cert: str | Path | None,
        key: str | Path | None,
        *,
        warn: Callable[[str], None],
    ) -> TlsFiles | None:
        """Checked files, or None when none is given; ``warn`` hears of a key others may read.

        Raises :class:`TlsFileError` naming the file and what is wrong with it.
        """
        if ca is None and cert is None and key is None:
            return None
        if (cert is None) != (key is None):
            which, other = ("cert", "key") if key is None else ("key", "cert")
            raise TlsFileError(which, f"a client {_NOUN[which]} needs its {_NOUN[other]} too (give both)")
        files = cls(*(Path(p).expanduser().absolute() if p is not None else None for p in (ca, cert, key)))
        now = datetime.datetime.now(datetime.timezone.utc)
        if files.ca is not None:
            for authority in _certificates("ca", files.ca):
                _check_dates("ca", files.ca, authority, now)
        if files.cert is not None and files.key is not None:
            _check_dates("cert", files.cert, _certificates("cert", files.cert)[0], now)
            mode, _pem = _read("key", files.key)
            if mode & 0o044:
                warn(_shared_key_warning(files.key, mode))
        files.context()  # the key is the certificate's, the CA loads
        return files

    def context(self) -> ssl.SSLContext:
        """A client context: the broker verified against ``ca`` only (not also the system's CAs,
        which would let any public CA vouch for it), our certificate presented."""
        try:  # TLS 1.2+, CERT_REQUIRED, check_hostname
            context = ssl.create_default_context(cafile=str(self.ca) if self.ca is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise TlsFileError("ca", f"{self.ca} holds no usable CA certificate: {_words(exc)}") from None
        if self.cert is not None:
            try:
                context.load_cert_chain(str(self.cert), str(self.key), password=_no_passphrase)
            except _Encrypted:
                raise TlsFileError(
                    "key", f"{self.key} is encrypted with a passphrase, which nobody can type here"
                ) from None
            except (OSError, ssl.SSLError) as exc:
                if "KEY_VALUES_MISMATCH" in str(exc):
                    raise TlsFileError("key", f"{self.key} is not the key of the certificate {self.cert}") from None
                raise TlsFileError("key", f"{self.cert} and {self.key} cannot be loaded: {_words(exc)}") from None
        return context

    def describe_cert(self) -> str:
        """``n1.crt (CN 'n1', issued by 'site CA', valid until 2027-01-01)``, for error messages."""
        if self.cert is None:
            return "(none)"
        from cryptography import x509

        try:
            cert = x509.load_pem_x509_certificates(self.cert.read_bytes())[0]
        except (OSError, ValueError, IndexError):
            return str(self.cert)
        issuer = _common_name(cert.issuer) or cert.issuer.rfc4514_string()
        until = cert.not_valid_after_utc.date().isoformat()
        return f"{self.cert} (CN {_common_name(cert.subject)!r}, issued by {issuer!r}, valid until {until})"

    def common_name(self) -> str | None:
        """The CN of our certificate: the identity a broker with use_identity_as_username sees."""
        if self.cert is None:
            return None
        from cryptography import x509

        return _common_name(x509.load_pem_x509_certificates(self.cert.read_bytes())[0].subject)


_NOUN = {"ca": "CA certificate", "cert": "certificate", "key": "key"}


class _Encrypted(Exception):
    pass


def _no_passphrase() -> bytes:
    """Never prompt on a terminal (OpenSSL would): an encrypted key is an error instead."""
    raise _Encrypted


def _read(which: str, path: Path) -> tuple[int, bytes]:
    """(mode, content) of a regular file; the errors name it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise TlsFileError(which, f"{_NOUN[which]} file {path} does not exist") from None
    except OSError as exc:
        raise TlsFileError(which, f"{_NOUN[which]} file {path} cannot be read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # read again at every connection: a pipe would be empty then
            raise TlsFileError(which, f"{_NOUN[which]} file {path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise TlsFileError(which, f"{_NOUN[which]} file {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PEM_BYTES:
        raise TlsFileError(which, f"{_NOUN[which]} file {path} is larger than {MAX_PEM_BYTES} bytes")
    return mode, data


def _certificates(which: str, path: Path) -> list[x509.Certificate]:
    from cryptography import x509

    _mode, data = _read(which, path)
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError:
        found = []
    if not found:
        raise TlsFileError(which, f"{_NOUN[which]} file {path} holds no PEM certificate")
    return found


def _check_dates(which: str, path: Path, cert: x509.Certificate, now: datetime.datetime) -> None:
    if now > cert.not_valid_after_utc:
        when = cert.not_valid_after_utc.isoformat(sep=" ")
        raise TlsFileError(which, f"the {_NOUN[which]} in {path} expired on {when}")
    if now < cert.not_valid_before_utc:
        when = cert.not_valid_before_utc.isoformat(sep=" ")
        raise TlsFileError(which, f"the {_NOUN[which]} in {path} is not valid before {when} (check the clock)")


def _common_name(name: x509.Name) -> str | None:
    from cryptography.x509.oid import NameOID

    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def _shared_key_warning(path: Path, mode: int) -> str:
    who = " and ".join(w for w, bit in (("group", 0o040), ("others", 0o004)) if mode & bit)
    quoted = shlex.quote(str(path))
    return (
        f"{path} holds a private key but is readable by {who} (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {quoted}"
    )


def _words(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    return getattr(exc, "strerror", None) or str(exc)


# --- what went wrong, in words ------------------------------------------------------------------


class HandshakeWatch:
    """How far the TLS handshake of the latest connection attempt got, seen from its socket.

    paho swallows the exception of a failed reconnection; the socket class installed here keeps it.
    """

    def __init__(self) -> None:
        self.completed = False
        self.error: OSError | None = None

    def reset(self) -> None:
        self.completed, self.error = False, None

    def install(self, context: ssl.SSLContext) -> ssl.SSLContext:
        watch = self

        class WatchedSocket(ssl.SSLSocket):
            def do_handshake(self, block: bool = False) -> None:
                try:
                    super().do_handshake(block)
                except OSError as exc:
                    watch.error = exc
                    raise
                watch.completed = True

        context.sslsocket_class = WatchedSocket
        return context


def explain_handshake(exc: BaseException, host: str, files: TlsFiles | None) -> str:
    """Why the TLS handshake with ``host`` failed, and what to fix."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or _words(exc)
        if exc.verify_code in _NAME_MISMATCH:
            return f"TLS: the broker's certificate is not valid for {host} ({detail}); use the name it was issued for"
        if exc.verify_code == _CERT_EXPIRED:
            return f"TLS: the broker's certificate has expired ({detail})"
        ca = f"the CA in {files.ca}" if files is not None and files.ca is not None else "the system's CAs (no --tls-ca)"
        return f"TLS: the broker's certificate is not trusted ({detail}): {ca} did not sign it"
    reason = str(getattr(exc, "reason", "") or "")
    if reason in _NOT_TLS or isinstance(exc, ConnectionResetError):
        return f"TLS: the broker does not speak TLS on this port ({_words(exc)}); use mqtt:// or its TLS port"
    if isinstance(exc, (ssl.SSLEOFError, ConnectionAbortedError, BrokenPipeError)):
        return f"TLS: the broker closed the connection during the handshake: {_refusal(files)}"
    return f"TLS: the handshake failed ({_words(exc)})"


def explain_closed(files: TlsFiles | None) -> str:
    """Why a broker closes a connection right after a good handshake, before any MQTT answer."""
    return f"TLS: the broker closed the connection after the handshake: {_refusal(files)}"


def _refusal(files: TlsFiles | None) -> str:
    # Mosquitto refuses a certificate by closing, without a TLS alert: the client cannot tell
    # "no certificate" from "wrong CA" from "expired", so say what we sent.
    if files is None or files.cert is None:
        return "it wants a client certificate (--tls-cert and --tls-key; in node.toml broker.tls_cert and tls_key)"
    return (
        f"it refused our certificate {files.describe_cert()}; is it signed by the CA this port trusts "
        "(node certificates on the nodes' port, operator certificates on the operators' port), and not revoked?"
    )
