"""Ed25519 court keys on disk.

A node's private key lives in one PEM file created with mode 0600 and never leaves it: not in
logs, errors, config dumps or frames. ``repr()`` of a :class:`CourtKey` shows only the public
key's fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.errors import ConfigError, InvalidInput


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"not base64url: {exc}") from None


def public_key_from_raw(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise InvalidInput(f"Ed25519 public key must be 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw: bytes) -> str:
    """Short, stable fingerprint of a public key, safe to print."""
    return hashlib.sha256(raw).hexdigest()[:16]


def write_secret(path: Path, data: bytes) -> None:
    """Write a secret file that only the owner can read (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class CourtKey:
    """A court's Ed25519 signing key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.public_raw = raw_public(self.public)

    @classmethod
    def generate(cls) -> CourtKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> CourtKey:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            raise ConfigError(f"key file {path} does not exist (run `court-hub init` first)") from None
        if mode & 0o077:
            raise ConfigError(f"key file {path} has mode {mode:o}; it must be 0600 (chmod 600 {path})")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError:
            raise ConfigError(f"key file {path} is not a PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"key file {path} does not hold an Ed25519 key")
        return cls(key)

    def save(self, path: Path) -> None:
        pem = self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_secret(path, pem)

    @property
    def private(self) -> Ed25519PrivateKey:
        """The private key object, for signing (PyJWT takes it directly)."""
        return self._private

    @property
    def kid(self) -> str:
        return key_id(self.public_raw)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"CourtKey(kid={self.kid})"
