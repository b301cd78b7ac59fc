"""The small PKI a site needs, with the ``cryptography`` package: a CA, certificates for the
broker and for each client (the CN is the node id), a revocation list, and Mosquitto password
hashes. No openssl command line, no password on any command line.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: PBKDF2 rounds of the password hashes we write; Mosquitto reads the count from the hash
#: (its own mosquitto_passwd writes 101).
PASSWORD_ROUNDS = 101
DAYS = 825  # certificates' lifetime: rotate before


@dataclass(frozen=True)
class Identity:
    """A private key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> Identity:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def make_ca(name: str, days: int = 3650) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(key, cert)


def issue(ca: Identity, common_name: str, *, server_names: Iterable[str] = (), days: int = DAYS) -> Identity:
    """A certificate signed by ``ca``: for a client (CN = its node id or user), or, with
    ``server_names``, for the broker (those host names and IP addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(server_names)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        # key identifiers: what Python 3.13's strict verification (VERIFY_X509_STRICT) asks of a chain
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
    return Identity(key, builder.sign(ca.key, hashes.SHA256()))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def revocation_list(ca: Identity, serials: Iterable[int], days: int | None = DAYS) -> bytes:
    """A CRL (PEM) revoking ``serials``: Mosquitto's ``crlfile`` refuses those certificates.

    Valid ``days``, or (None) until the CA itself expires: once a CRL is past its next update,
    OpenSSL refuses every certificate of that CA, so a site's CRL must not expire before it."""
    until = ca.cert.not_valid_after_utc if days is None else _now() + datetime.timedelta(days=days)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(_now() - datetime.timedelta(minutes=5))
        .next_update(until)
    )
    for serial in sorted(set(serials)):
        revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(_now()).build()
        builder = builder.add_revoked_certificate(revoked)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def new_password() -> str:
    return secrets.token_urlsafe(24)


def mosquitto_hash(password: str, rounds: int = PASSWORD_ROUNDS, salt: bytes | None = None) -> str:
    """The ``$7$`` PBKDF2-SHA512 hash Mosquitto 2 reads from a ``password_file`` line."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return f"$7${rounds}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_private(path: Path, data: bytes | str) -> None:
    """Write a secret: created 0600 (whatever the umask), replacing what was there."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
