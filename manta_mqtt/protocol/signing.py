"""Signed assignments: a node runs only code that the swarm's owner signed.

Broker write access must not mean code execution on every device. The coordinator signs each
assignment with the swarm owner's Ed25519 key (a key of its own, separate from any broker
password), once per node; a node verifies the signature against the public keys its config
trusts before it fetches anything. The signature covers every field of the assignment and the
node it is addressed to, so it cannot be moved to another assignment or another node. The code
bundle and the globals are covered through their sha256, which the node checks on every blob it
fetches: signing the assignment signs what it runs.

``cryptography`` (several MiB resident) is imported only when a key is used: a node reads its
trusted keys as raw bytes, and verifies with them at its first assignment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .messages import Assignment, Signature

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: Bytes signed for ``node``: this context, the node id, NUL, the assignment's unsigned encoding.
CONTEXT = b"manta-mqtt v2 assignment\x00"
PUBLIC_PREFIX = "ed25519:"


class Untrusted(Exception):
    """An assignment this node must not run; the message says why, for the coordinator to show."""


def key_id(public: Ed25519PublicKey | bytes) -> str:
    """A short name for a public key: the first 16 hex digits of the sha256 of its raw bytes."""
    raw = public if isinstance(public, bytes) else public.public_bytes_raw()
    return hashlib.sha256(raw).hexdigest()[:16]


def public_text(public: Ed25519PublicKey) -> str:
    """``ed25519:<base64>``: how a public key is written in a node's config."""
    return PUBLIC_PREFIX + base64.b64encode(public.public_bytes_raw()).decode()


def parse_public(text: str) -> Ed25519PublicKey:
    """Read ``ed25519:<base64 of 32 bytes>``; ValueError says what is wrong."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(parse_public_raw(text))


def parse_public_raw(text: str) -> bytes:
    """:func:`parse_public` without ``cryptography``: the key's 32 raw bytes (what a node keeps)."""
    text = text.strip()
    if not text.startswith(PUBLIC_PREFIX):
        raise ValueError(f"a public key starts with {PUBLIC_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(PUBLIC_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"a public key is base64 after {PUBLIC_PREFIX!r}: {exc}") from exc
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return raw


def signed_bytes(node: str, assignment: Assignment) -> bytes:
    return CONTEXT + node.encode() + b"\x00" + assignment.unsigned_bytes()


@dataclass(frozen=True)
class OwnerKey:
    """The swarm owner's private key, which signs assignments."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> OwnerKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | Path) -> OwnerKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = Path(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise ValueError(f"cannot read the signing key {path}: {exc.strerror or exc}") from exc
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    def save(self, path: str | Path) -> Path:
        """Write the key (0600, refusing to overwrite) and its public half beside it (``.pub``)."""
        from cryptography.hazmat.primitives import serialization

        path = Path(path)
        pem = self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        public = path.with_name(path.name + ".pub")
        public.write_text(public_text(self.public) + "\n")
        return public

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def id(self) -> str:
        return key_id(self.public)

    def sign(self, node: str, assignment: Assignment) -> Assignment:
        """``assignment`` with this key's signature for ``node``."""
        signature = self.private.sign(signed_bytes(node, assignment))
        return assignment.with_signature(Signature(self.id, signature))


class Trust:
    """The keys a node trusts, and whether it runs unsigned work (a local test only)."""

    def __init__(self, keys: Sequence[Ed25519PublicKey | bytes], allow_unsigned: bool = False) -> None:
        """``keys``: public keys, or their 32 raw bytes (:func:`parse_public_raw`; no cryptography yet)."""
        self.keys: dict[str, Ed25519PublicKey | bytes] = {key_id(k): k for k in keys}
        self.allow_unsigned = allow_unsigned

    def describe(self) -> str:
        """What this node runs, in one line, for its log and ``edge-node check``."""
        keys = ", ".join(sorted(self.keys)) or "none"
        if self.allow_unsigned:
            risk = "whoever can publish on the broker can run code here"
            return f"runs UNSIGNED assignments too (allow_unsigned): {risk}; trusted keys: {keys}"
        if not self.keys:
            return "trusts no signing key: it refuses every assignment (add [trust] keys, see manta-mqtt keygen)"
        return f"runs only assignments signed by: {keys}"

    def check(self, node: str, assignment: Assignment) -> None:
        """Return if ``node`` may run ``assignment``; raise :class:`Untrusted` saying why not."""
        sig = assignment.signature
        if sig is None:
            if self.allow_unsigned:
                return
            raise Untrusted("refused: the assignment is not signed (this node runs only signed code)")
        key = self.keys.get(sig.key)
        if key is None:
            if self.allow_unsigned:
                return  # it would run the same assignment unsigned
            raise Untrusted(f"refused: signed by key {sig.key}, which this node does not trust")
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if isinstance(key, bytes):  # loaded now, at the first assignment signed with it
            key = self.keys[sig.key] = Ed25519PublicKey.from_public_bytes(key)
        try:
            key.verify(sig.ed25519, signed_bytes(node, assignment))
        except InvalidSignature:
            raise Untrusted(f"refused: the signature by key {sig.key} does not match the assignment") from None
