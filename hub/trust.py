"""Federation trust: court certificates, join tokens, revocations, and chain verification.

* The **root** node's self-signed certificate is the anchor every node pins at enrollment.
* A parent enrolls a child with a one-time, expiring **join token** (a JWT it signs) that carries
  the parent's address and TLS fingerprint; the child proves possession of its new key and the
  parent issues a **court certificate** (JWT: code, name, level, public key, issuer, validity).
* A certificate is valid only if its issuer is a strict ancestor of its court by code (a node can
  certify only courts in its own subtree), the issuer's own certificate is valid, it is within its
  validity period and its serial is not revoked. Chains end at the pinned root.
* **Revocations** are JWTs signed by an ancestor of the revoked court; they flood the tree with
  announcements and take effect on every node that learns them.

Everything here is synchronous and in memory; ``hub.federation.trustsync`` persists and loads it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.clock import Clock
from hub.codes import CourtCode
from hub.errors import InvalidCode, InvalidInput, TrustError
from hub.keys import CourtKey, b64url, b64url_decode, public_key_from_raw


def below(court: CourtCode, other: CourtCode) -> bool:
    """True when ``court`` is strictly inside ``other``'s subtree."""
    return court != other and court.is_within(other)


CERT_TYPE = "court-cert"
JOIN_TYPE = "join"
REVOCATION_TYPE = "revocation"
PROOF_TYPE = "enroll-proof"
DAY_MS = 86_400_000


def _sign(key: CourtKey, kid: str, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": kid})


def _unverified(token: str, what: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TrustError(f"{what} is not a well-formed JWT: {exc}") from None
    if not isinstance(claims, dict):
        raise TrustError(f"{what} has no claims object")
    return claims


def _verified(token: str, public: Ed25519PublicKey, what: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public,
            algorithms=["EdDSA"],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
        )
    except jwt.InvalidSignatureError:
        raise TrustError(f"{what}: signature does not verify", reason="bad_signature") from None
    except jwt.PyJWTError as exc:
        raise TrustError(f"{what}: {exc}") from None
    return claims


def _claim(claims: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = claims.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TrustError(f"{what}: claim '{name}' missing or not a {kind.__name__}")
    return value


def _court(claims: dict[str, Any], name: str, what: str) -> CourtCode:
    text = _claim(claims, name, str, what)
    try:
        return CourtCode.parse(text)
    except InvalidCode as exc:
        raise TrustError(f"{what}: claim '{name}': {exc}") from None


@dataclass(frozen=True)
class CourtCertificate:
    token: str
    court: CourtCode
    name: str
    issuer: CourtCode
    public_raw: bytes
    serial: str
    not_before_ms: int
    not_after_ms: int

    @classmethod
    def parse(cls, token: str) -> CourtCertificate:
        what = "court certificate"
        c = _unverified(token, what)
        if c.get("typ") != CERT_TYPE:
            raise TrustError(f"{what}: typ must be {CERT_TYPE!r}")
        return cls(
            token=token,
            court=_court(c, "sub", what),
            name=_claim(c, "name", str, what),
            issuer=_court(c, "iss", what),
            public_raw=_public_raw(c, what),
            serial=_claim(c, "jti", str, what),
            not_before_ms=_claim(c, "nbf", int, what) * 1000,
            not_after_ms=_claim(c, "exp", int, what) * 1000,
        )

    @property
    def self_signed(self) -> bool:
        return self.court == self.issuer


def _public_raw(claims: dict[str, Any], what: str) -> bytes:
    try:
        raw = b64url_decode(_claim(claims, "pub", str, what))
    except InvalidInput as exc:
        raise TrustError(f"{what}: pub: {exc.message}", reason="bad_certificate") from None
    if len(raw) != 32:
        raise TrustError(f"{what}: pub must be a 32-byte Ed25519 key, got {len(raw)} bytes", reason="bad_certificate")
    return raw


def issue_certificate(
    issuer_key: CourtKey,
    issuer: CourtCode,
    court: CourtCode,
    name: str,
    public_raw: bytes,
    now_ms: int,
    *,
    days: int = 365,
) -> str:
    if court != issuer and not below(court, issuer):
        raise TrustError(f"{issuer} may only certify courts below it, not {court}", reason="not_authorized")
    public_key_from_raw(public_raw)
    now = now_ms // 1000
    claims = {
        "typ": CERT_TYPE,
        "iss": str(issuer),
        "sub": str(court),
        "name": name,
        "level": court.level.value,
        "pub": b64url(public_raw),
        "iat": now,
        "nbf": now - 300,
        "exp": now + days * 86_400,
        "jti": uuid.uuid4().hex,
    }
    return _sign(issuer_key, str(issuer), claims)


@dataclass(frozen=True)
class JoinToken:
    token: str
    parent: CourtCode
    child: CourtCode
    jti: str
    expires_at_ms: int
    address: str
    fingerprint: str

    @classmethod
    def parse(cls, token: str) -> JoinToken:
        what = "join token"
        c = _unverified(token.strip(), what)
        if c.get("typ") != JOIN_TYPE:
            raise TrustError(f"{what}: not a join token (typ {c.get('typ')!r})")
        return cls(
            token=token.strip(),
            parent=_court(c, "iss", what),
            child=_court(c, "sub", what),
            jti=_claim(c, "jti", str, what),
            expires_at_ms=_claim(c, "exp", int, what) * 1000,
            address=_claim(c, "addr", str, what),
            fingerprint=_claim(c, "fp", str, what),
        )


def issue_join_token(
    key: CourtKey,
    parent: CourtCode,
    child: CourtCode,
    address: str,
    fingerprint: str,
    now_ms: int,
    ttl_s: int,
) -> JoinToken:
    if not below(child, parent):
        raise TrustError(f"{parent} can only enroll courts below it; {child} is not", reason="not_authorized")
    claims = {
        "typ": JOIN_TYPE,
        "iss": str(parent),
        "sub": str(child),
        "jti": uuid.uuid4().hex,
        "iat": now_ms // 1000,
        "exp": (now_ms // 1000) + ttl_s,
        "addr": address,
        "fp": fingerprint,
    }
    return JoinToken.parse(_sign(key, str(parent), claims))


def verify_join_token(token: str, key: CourtKey, me: CourtCode, now_ms: int) -> JoinToken:
    """Check a join token presented to this node (its issuer). One-time use is the caller's job."""
    parsed = JoinToken.parse(token)
    _verified(parsed.token, key.public, "join token")
    if parsed.parent != me:
        raise TrustError(f"join token was issued by {parsed.parent}, not by this court ({me})", reason="wrong_issuer")
    if parsed.expires_at_ms <= now_ms:
        raise TrustError("join token has expired; ask the parent court for a new one", reason="token_expired")
    return parsed


def make_proof(key: CourtKey, court: CourtCode, jti: str) -> str:
    """The child's proof of possession of its new key: it signs the token id."""
    return _sign(key, str(court), {"typ": PROOF_TYPE, "sub": str(court), "jti": jti})


def verify_proof(proof: str, public_raw: bytes, court: CourtCode, jti: str) -> None:
    claims = _verified(proof, public_key_from_raw(public_raw), "proof of key possession")
    if claims.get("typ") != PROOF_TYPE or claims.get("jti") != jti or claims.get("sub") != str(court):
        raise TrustError("proof of key possession does not match the join token", reason="bad_proof")


@dataclass(frozen=True)
class Revocation:
    token: str
    revoker: CourtCode
    court: CourtCode
    serial: str
    at_ms: int

    @classmethod
    def parse(cls, token: str) -> Revocation:
        what = "revocation"
        c = _unverified(token, what)
        if c.get("typ") != REVOCATION_TYPE:
            raise TrustError(f"{what}: typ must be {REVOCATION_TYPE!r}")
        return cls(
            token=token,
            revoker=_court(c, "iss", what),
            court=_court(c, "sub", what),
            serial=_claim(c, "serial", str, what),
            at_ms=_claim(c, "iat", int, what) * 1000,
        )


def issue_revocation(key: CourtKey, revoker: CourtCode, cert: CourtCertificate, now_ms: int) -> str:
    if not below(cert.court, revoker):
        raise TrustError(f"{revoker} may only revoke courts below it, not {cert.court}", reason="not_authorized")
    claims = {
        "typ": REVOCATION_TYPE,
        "iss": str(revoker),
        "sub": str(cert.court),
        "serial": cert.serial,
        "iat": now_ms // 1000,
        "jti": uuid.uuid4().hex,
    }
    return _sign(key, str(revoker), claims)


class TrustStore:
    """Known certificates and revocations, with verified-key caching.

    ``public_key(court)`` is the one question the federation asks: the key a court's seals must
    verify with, or a TrustError saying why there is none (unknown, expired, revoked, bad chain).
    """

    def __init__(self, root: CourtCertificate, clock: Clock) -> None:
        if not root.self_signed:
            raise TrustError(f"root certificate of {root.court} is not self-signed")
        _verified(root.token, public_key_from_raw(root.public_raw), "root certificate")
        self.root = root
        self.clock = clock
        self._certs: dict[CourtCode, CourtCertificate] = {root.court: root}
        self._revoked: dict[str, Revocation] = {}
        # Verified keys with the instant their whole chain stops being valid.
        self._keys: dict[CourtCode, tuple[Ed25519PublicKey, int]] = {}

    # -- queries -------------------------------------------------------------------------------
    def certificate(self, court: CourtCode) -> CourtCertificate | None:
        return self._certs.get(court)

    def certificates(self) -> list[CourtCertificate]:
        return list(self._certs.values())

    def revocations(self) -> list[Revocation]:
        return list(self._revoked.values())

    def is_revoked(self, court: CourtCode) -> bool:
        cert = self._certs.get(court)
        return cert is not None and cert.serial in self._revoked

    def public_key(self, court: CourtCode) -> Ed25519PublicKey:
        cached = self._keys.get(court)
        if cached is not None and cached[1] > self.clock.now_ms():
            return cached[0]
        key, _ = self._verify_chain(court, depth=0)
        return key

    def evidence_key(self, court: CourtCode) -> Ed25519PublicKey:
        """The key a court's past seals verify with: chain checked, but revocation and validity
        period ignored (a seal made before a revocation is still evidence of what was sent)."""
        return self._verify_chain(court, depth=0, current=False)[0]

    def _verify_chain(self, court: CourtCode, depth: int, current: bool = True) -> tuple[Ed25519PublicKey, int]:
        """The court's key and until when its whole chain stays valid (cached when ``current``)."""
        if depth > 8:
            raise TrustError(f"certificate chain of {court} is too long")
        cert = self._certs.get(court)
        if cert is None:
            raise TrustError(f"no certificate known for court {court}", reason="unknown_court")
        if current and cert.serial in self._revoked:
            raise TrustError(f"certificate of {court} has been revoked", reason="revoked")
        now = self.clock.now_ms()
        if current and not cert.not_before_ms <= now < cert.not_after_ms:
            raise TrustError(f"certificate of {court} is not valid now", reason="cert_expired")
        public = public_key_from_raw(cert.public_raw)
        if court == self.root.court:
            if cert.token != self.root.token:
                raise TrustError(f"certificate of root {court} does not match the pinned anchor")
            if current:
                self._keys[court] = (public, cert.not_after_ms)
            return public, cert.not_after_ms
        if not below(court, cert.issuer):
            raise TrustError(f"certificate of {court} was issued by {cert.issuer}, which is not above it")
        cached = self._keys.get(cert.issuer) if current else None
        if cached is not None and cached[1] > now:
            issuer_key, issuer_until = cached
        else:
            issuer_key, issuer_until = self._verify_chain(cert.issuer, depth + 1, current)
        _verified(cert.token, issuer_key, f"certificate of {court}")
        until = min(cert.not_after_ms, issuer_until)
        if current:
            self._keys[court] = (public, until)
        return public, until

    # -- updates -------------------------------------------------------------------------------
    def add_certificate(self, token: str) -> CourtCertificate:
        """Verify and remember a certificate; its issuer's certificate must already be known."""
        cert = CourtCertificate.parse(token)
        if cert.court == self.root.court:
            if token != self.root.token:
                raise TrustError(f"a certificate for root {cert.court} that is not the pinned anchor")
            return self.root
        previous = self._certs.get(cert.court)
        if previous is not None and previous.token == token:
            return previous
        self._certs[cert.court] = cert
        self._forget(cert.court)
        try:
            self.public_key(cert.court)
        except TrustError:
            if previous is None:
                del self._certs[cert.court]
            else:
                self._certs[cert.court] = previous
            raise
        return cert

    def add_revocation(self, token: str) -> Revocation | None:
        """Verify and apply a revocation; returns None when it was already known."""
        rev = Revocation.parse(token)
        if rev.serial in self._revoked:
            return None
        if not below(rev.court, rev.revoker):
            raise TrustError(f"{rev.revoker} cannot revoke {rev.court}: not below it", reason="not_authorized")
        _verified(token, self.public_key(rev.revoker), "revocation")
        self._revoked[rev.serial] = rev
        self._forget(rev.court)
        return rev

    def _forget(self, court: CourtCode) -> None:
        for known in list(self._keys):
            if known == court or below(known, court):
                del self._keys[known]
