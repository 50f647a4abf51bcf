"""Sealed approvals (远程电子签章审批) checked by agencies before approval-gated actions.

Some actions (border exit control 边控 at public security, location 定位 at a telecom operator)
need an upper court's sealed approval. Here the seal is a compact JWS (EdDSA / Ed25519, PyJWT)
signed by the approving court with claims::

    {"iss": "豫14",                      # approving court's code (法院代字)
     "sub": "（2025）豫1402执123号",       # the case number the approval is for
     "act": "border_control" | "location",
     "subject_id": "411402198001011234",  # the person concerned
     "exp": 1767225600, "jti": "...", "iat": ...}

The simulator is configured with the trusted approvers' public keys (a JSON file, see
:func:`load_trusted_approvers`). Everything a simulator needs is the small interface
:class:`ApprovalVerifier` — ``verify_approval(token, action, subject_id) -> ApprovalClaims`` — so the
federation's certificate-chain check can replace :class:`JwsApprovalVerifier` without touching the
agencies. Expiry is judged against the simulator clock, not the wall clock.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.clock import Clock

ACTIONS = ("border_control", "location")


class ApprovalError(Exception):
    """The approval is missing or does not hold; ``reason`` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ApprovalClaims:
    iss: str  # approving court
    sub: str  # case number
    act: str
    subject_id: str
    exp: int  # epoch seconds
    jti: str
    iat: int | None = None


class ApprovalVerifier(Protocol):
    def verify_approval(self, token: str, action: str, subject_id: str) -> ApprovalClaims:
        """Return the approval's claims, or raise :class:`ApprovalError` saying why not."""
        ...


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PublicKey) -> str:
    """An Ed25519 public key as unpadded base64url of its 32 raw bytes (the trust-file format)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Accept a PEM public key or base64url of the 32 raw bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("PEM key is not an Ed25519 public key")
        return key
    raw = _b64url_decode(text)
    if len(raw) != 32:
        raise ValueError(f"raw Ed25519 public key must be 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_trusted_approvers(path: Path) -> dict[str, list[Ed25519PublicKey]]:
    """Read ``{"approvers": [{"court_code": "豫14", "public_key": "<base64url|PEM>"}, ...]}``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read trusted approvers file {path}: {exc}") from exc
    approvers = doc.get("approvers") if isinstance(doc, dict) else None
    if not isinstance(approvers, list):
        raise ValueError(f"{path}: expected an object with an 'approvers' array")
    out: dict[str, list[Ed25519PublicKey]] = {}
    for i, item in enumerate(approvers):
        if not isinstance(item, dict) or not isinstance(item.get("court_code"), str):
            raise ValueError(f"{path}: approvers[{i}].court_code must be a string")
        if not isinstance(item.get("public_key"), str):
            raise ValueError(f"{path}: approvers[{i}].public_key must be a string")
        try:
            key = parse_public_key(item["public_key"])
        except ValueError as exc:
            raise ValueError(f"{path}: approvers[{i}].public_key: {exc}") from exc
        out.setdefault(item["court_code"], []).append(key)
    return out


def write_trusted_approvers(path: Path, approvers: Mapping[str, Ed25519PublicKey]) -> None:
    """Write a trust file for :func:`load_trusted_approvers` (tests, demo)."""
    doc = {"approvers": [{"court_code": c, "public_key": public_key_text(k)} for c, k in approvers.items()]}
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")


def make_approval(
    key: Ed25519PrivateKey,
    *,
    iss: str,
    sub: str,
    act: str,
    subject_id: str,
    now_s: int,
    ttl_s: int = 7 * 86_400,
    jti: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Issue a sealed approval (what the approving court's node does; tests and the demo use it)."""
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": sub,
        "act": act,
        "subject_id": subject_id,
        "iat": now_s,
        "exp": now_s + ttl_s,
        "jti": jti or uuid.uuid4().hex,
    }
    if extra:
        claims.update(extra)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": "court-approval+jwt"})


def verify_approval(
    token: str,
    action: str,
    subject_id: str,
    *,
    trusted: Mapping[str, Sequence[Ed25519PublicKey]],
    now_ms: int,
) -> ApprovalClaims:
    """Check a sealed approval: signature by a trusted approving court, action, subject, expiry."""
    if not token:
        raise ApprovalError("approval_required", "缺少审批签章：该措施须经上级法院电子签章审批")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ApprovalError("approval_malformed", f"审批签章格式错误：{exc}") from None
    iss = unverified.get("iss")
    if not isinstance(iss, str) or not iss:
        raise ApprovalError("approval_malformed", "审批签章缺少签发法院（iss）")
    keys = trusted.get(iss)
    if not keys:
        raise ApprovalError("approval_untrusted", f"审批法院{iss}不在受信任的审批机关名单中")
    claims: dict[str, Any] | None = None
    for key in keys:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise ApprovalError("approval_malformed", f"审批签章无法校验：{exc}") from None
    if claims is None:
        raise ApprovalError("approval_bad_signature", f"审批签章签名校验失败（签发法院{iss}）")
    for name in ("sub", "act", "subject_id", "jti"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            raise ApprovalError("approval_malformed", f"审批签章缺少字段{name}")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int):
        raise ApprovalError("approval_malformed", "审批签章缺少有效期（exp）")
    if claims["act"] != action:
        raise ApprovalError("approval_wrong_action", f"审批事项为{claims['act']}，与请求的{action}不符")
    if claims["subject_id"] != subject_id:
        raise ApprovalError("approval_wrong_subject", "审批所涉人员证件号码与请求不符")
    if now_ms >= exp * 1000:
        raise ApprovalError("approval_expired", "审批签章已过有效期")
    iat = claims.get("iat")
    return ApprovalClaims(
        iss=iss,
        sub=claims["sub"],
        act=claims["act"],
        subject_id=claims["subject_id"],
        exp=exp,
        jti=claims["jti"],
        iat=iat if isinstance(iat, int) and not isinstance(iat, bool) else None,
    )


class JwsApprovalVerifier:
    """:class:`ApprovalVerifier` over a fixed set of trusted approver keys and a clock."""

    def __init__(self, trusted: Mapping[str, Sequence[Ed25519PublicKey]], clock: Clock) -> None:
        self.trusted = trusted
        self.clock = clock

    def verify_approval(self, token: str, action: str, subject_id: str) -> ApprovalClaims:
        return verify_approval(token, action, subject_id, trusted=self.trusted, now_ms=self.clock.now_ms())
