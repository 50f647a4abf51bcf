"""Seals: detached JWS (RFC 7515 Appendix F, alg EdDSA) over an envelope's header bytes.

The header carries the payload's SHA-256, so the seal covers the payload too without hashing it
twice. A seal is ``BASE64URL(protected) + ".." + BASE64URL(signature)``; the signing input is
``BASE64URL(protected) + "." + BASE64URL(header)`` as the standard says.

The format is plain JWS — PyJWT verifies our seals and we verify PyJWT's (tests prove both ways) —
but the hot path builds and checks the signing input directly: a relay verifies every envelope it
accepts, and that is the largest cost of a hop. Signing uses ``cryptography`` (OpenSSL); verifying
uses libsodium through PyNaCl, which measured about 1.9x faster for Ed25519 verification on the
project's 2-core machines (75 µs vs 140 µs per seal), with the same RFC 8032 semantics.
"""

from __future__ import annotations

import json
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from hub.errors import CourtHubError, TrustError
from hub.keys import CourtKey, b64url, b64url_decode

SEAL_TYPE = "courthub-seal+jws"


@lru_cache(maxsize=4096)
def _protected_for(kid: str) -> str:
    header = {"alg": "EdDSA", "kid": kid, "typ": SEAL_TYPE}
    return b64url(json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode())


@lru_cache(maxsize=4096)
def _parse_protected(protected: str) -> str:
    """Validate a protected header once per distinct value; returns its kid."""
    try:
        header = json.loads(b64url_decode(protected))
    except (CourtHubError, ValueError, UnicodeDecodeError, RecursionError):
        # Anything a peer can put here must end as a refusal, never as another exception.
        raise TrustError("seal protected header is not base64url JSON", reason="bad_seal") from None
    if not isinstance(header, dict) or header.get("alg") != "EdDSA":
        raise TrustError("seal algorithm must be EdDSA", reason="bad_seal")
    if header.get("typ") != SEAL_TYPE:
        raise TrustError(f"seal type must be {SEAL_TYPE}", reason="bad_seal")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TrustError("seal has no kid (origin court)", reason="bad_seal")
    crit = header.keys() - {"alg", "kid", "typ"}
    if crit:
        raise TrustError(f"seal header has unexpected fields {sorted(crit)}", reason="bad_seal")
    return kid


def seal(key: CourtKey, kid: str, content: bytes) -> str:
    """Seal ``content`` (an envelope header's bytes) with the origin court's key."""
    protected = _protected_for(kid)
    signature = key.sign(f"{protected}.{b64url(content)}".encode("ascii"))
    return f"{protected}..{b64url(signature)}"


def seal_kid(token: str) -> str:
    """The origin named in a seal (unverified): which key to check it with."""
    protected, sep, _ = token.partition("..")
    if not sep:
        raise TrustError("seal is not a detached compact JWS", reason="bad_seal")
    return _parse_protected(protected)


def verify(token: str, content: bytes, public: Ed25519PublicKey, *, kid: str) -> None:
    """Raise TrustError unless ``token`` is a valid seal by ``public`` (court ``kid``) over ``content``."""
    parts = token.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise TrustError("seal is not a detached compact JWS (protected..signature)", reason="bad_seal")
    protected, _, sig_b64 = parts
    if _parse_protected(protected) != kid:
        raise TrustError(f"seal names another court than the origin {kid}", reason="bad_seal")
    try:
        signature = b64url_decode(sig_b64)
    except Exception:
        raise TrustError("seal signature is not base64url", reason="bad_seal") from None
    if len(signature) != 64:
        raise TrustError("seal signature has the wrong length (truncated?)", reason="bad_seal")
    signing_input = f"{protected}.{b64url(content)}".encode("ascii")
    try:
        crypto_sign_open(signature + signing_input, public.public_bytes_raw())
    except BadSignatureError:
        raise TrustError(f"seal of {kid} does not verify over this content", reason="bad_seal") from None
