"""Federation trust: certificates chained to the root, revocations, join tokens and proofs.

The chain under test is 最高法 (root, self-signed) → 豫 → 豫14 → 豫1402, with real Ed25519 keys and
a FixedClock so that validity periods are exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest

from hub.clock import FixedClock
from hub.codes import CourtCode
from hub.errors import TrustError
from hub.keys import CourtKey, b64url, b64url_decode, raw_public
from hub.trust import (
    CourtCertificate,
    Revocation,
    TrustStore,
    issue_certificate,
    issue_join_token,
    issue_revocation,
    make_proof,
    verify_join_token,
    verify_proof,
)

T0 = 1_780_000_000_000  # a fixed instant (ms)
DAY = 86_400_000

ROOT = CourtCode.parse("最高法")
HE = CourtCode.parse("豫")
SQ = CourtCode.parse("豫14")
LY = CourtCode.parse("豫1402")
SQ15 = CourtCode.parse("豫15")
LY03 = CourtCode.parse("豫1403")


@dataclass
class Tree:
    clock: FixedClock
    keys: dict[CourtCode, CourtKey] = field(default_factory=dict)
    certs: dict[CourtCode, str] = field(default_factory=dict)

    def certify(self, issuer: CourtCode, court: CourtCode, *, days: int = 365) -> str:
        key = self.keys.setdefault(court, CourtKey.generate())
        token = issue_certificate(
            self.keys[issuer], issuer, court, f"court {court}", key.public_raw, self.clock.now_ms(), days=days
        )
        self.certs[court] = token
        return token

    def store(self) -> TrustStore:
        return TrustStore(CourtCertificate.parse(self.certs[ROOT]), self.clock)


def _tree(*, days: dict[CourtCode, int] | None = None) -> Tree:
    days = days or {}
    tree = Tree(FixedClock(T0))
    tree.keys[ROOT] = CourtKey.generate()
    tree.certify(ROOT, ROOT, days=days.get(ROOT, 3650))
    tree.certify(ROOT, HE, days=days.get(HE, 365))
    tree.certify(HE, SQ, days=days.get(SQ, 365))
    tree.certify(SQ, LY, days=days.get(LY, 365))
    tree.certify(HE, SQ15, days=days.get(SQ15, 365))
    tree.certify(SQ, LY03, days=days.get(LY03, 365))
    return tree


def _loaded(tree: Tree) -> TrustStore:
    trust = tree.store()
    for court in (HE, SQ, LY, SQ15, LY03):
        trust.add_certificate(tree.certs[court])
    return trust


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _forge(key: CourtKey, kid: str, claims: dict[str, Any]) -> str:
    """A JWT signed by ``key`` with arbitrary claims (what a misbehaving node could produce)."""
    return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": kid})


def _tamper(token: str, **changes: Any) -> str:
    """Change claims of a signed JWT but keep the original signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims.update(changes)
    return ".".join([header, b64url(json.dumps(claims).encode()), signature])


# --------------------------------------------------------------------------- the chain


def test_public_key_works_down_the_chain() -> None:
    tree = _tree()
    trust = _loaded(tree)
    for court in (ROOT, HE, SQ, LY):
        assert raw_public(trust.public_key(court)) == tree.keys[court].public_raw
        assert not trust.is_revoked(court)
    cert = trust.certificate(LY)
    assert cert is not None
    assert (cert.court, cert.issuer, cert.name) == (LY, SQ, "court 豫1402")
    assert _claims(tree.certs[LY])["level"] == "basic"


def test_certificate_needs_its_issuer_known_first() -> None:
    tree = _tree()
    trust = tree.store()
    with pytest.raises(TrustError) as info:
        trust.add_certificate(tree.certs[LY])  # 豫14 not yet known
    assert info.value.reason == "unknown_court"
    assert trust.certificate(LY) is None
    with pytest.raises(TrustError):
        trust.public_key(LY)


def test_root_must_be_self_signed_and_pinned() -> None:
    tree = _tree()
    with pytest.raises(TrustError):
        TrustStore(CourtCertificate.parse(tree.certs[HE]), tree.clock)
    trust = tree.store()
    other_root_key = CourtKey.generate()
    impostor = issue_certificate(other_root_key, ROOT, ROOT, "fake root", other_root_key.public_raw, T0)
    with pytest.raises(TrustError):
        trust.add_certificate(impostor)
    # A province certified by the impostor root does not chain to the pinned one.
    fake_he = issue_certificate(other_root_key, ROOT, HE, "fake", CourtKey.generate().public_raw, T0)
    with pytest.raises(TrustError) as info:
        trust.add_certificate(fake_he)
    assert info.value.reason == "bad_signature"
    assert trust.certificate(HE) is None


def test_non_ancestor_cannot_issue() -> None:
    tree = _tree()
    # The issuing API refuses outright ...
    with pytest.raises(TrustError) as info:
        issue_certificate(tree.keys[SQ15], SQ15, LY, "stolen", CourtKey.generate().public_raw, T0)
    assert info.value.reason == "not_authorized"
    with pytest.raises(TrustError):  # a sibling basic court cannot certify its sibling
        issue_certificate(tree.keys[LY03], LY03, LY, "stolen", CourtKey.generate().public_raw, T0)
    # ... and a hand-made certificate by 豫15 for 豫1402 is refused by the trust store.
    trust = _loaded(tree)
    mallory = CourtKey.generate()
    forged = _forge(
        tree.keys[SQ15],
        str(SQ15),
        {**_claims(tree.certs[LY]), "iss": str(SQ15), "pub": b64url(mallory.public_raw), "jti": "f" * 32},
    )
    with pytest.raises(TrustError):
        trust.add_certificate(forged)
    # The genuine certificate is still the one in force.
    assert raw_public(trust.public_key(LY)) == tree.keys[LY].public_raw


def test_issuer_claim_lying_about_the_signer_is_refused() -> None:
    tree = _tree()
    trust = _loaded(tree)
    mallory = CourtKey.generate()
    # Claims iss=豫14 (a true ancestor) but is signed by 豫15's key.
    forged = _forge(
        tree.keys[SQ15], str(SQ), {**_claims(tree.certs[LY]), "pub": b64url(mallory.public_raw), "jti": "e" * 32}
    )
    with pytest.raises(TrustError) as info:
        trust.add_certificate(forged)
    assert info.value.reason == "bad_signature"
    assert raw_public(trust.public_key(LY)) == tree.keys[LY].public_raw


@pytest.mark.parametrize(
    "changes",
    [
        {"pub": b64url(CourtKey.generate().public_raw)},
        {"sub": "豫1403"},
        {"exp": 4_102_444_800},
        {"name": "someone else"},
    ],
    ids=repr,
)
def test_tampered_certificate_is_refused(changes: dict[str, Any]) -> None:
    tree = _tree()
    trust = _loaded(tree)
    before = trust.certificate(LY03)
    with pytest.raises(TrustError) as info:
        trust.add_certificate(_tamper(tree.certs[LY], **changes))
    assert info.value.reason == "bad_signature"
    assert trust.certificate(LY03) == before
    assert raw_public(trust.public_key(LY)) == tree.keys[LY].public_raw


def test_expired_certificate_is_refused() -> None:
    tree = _tree(days={LY: 1})
    trust = _loaded(tree)
    trust.public_key(LY)  # valid now (and cached)
    tree.clock.advance(days=1, ms=1)
    with pytest.raises(TrustError) as info:
        trust.public_key(LY)
    assert info.value.reason == "cert_expired"
    assert raw_public(trust.public_key(LY03)) == tree.keys[LY03].public_raw  # the sibling is fine
    # Evidence checks ignore the validity period: old seals stay checkable.
    assert raw_public(trust.evidence_key(LY)) == tree.keys[LY].public_raw


def test_adding_an_already_expired_certificate_is_refused() -> None:
    tree = _tree()
    trust = _loaded(tree)
    tree.clock.advance(days=-400)
    stale = tree.certify(SQ, LY, days=1)  # genuinely signed by 豫14, but long expired
    tree.clock.advance(days=400)
    with pytest.raises(TrustError) as info:
        trust.add_certificate(stale)
    assert info.value.reason == "cert_expired"
    cert = trust.certificate(LY)
    assert cert is not None and cert.token != stale  # the valid one stays in force


def test_not_yet_valid_certificate_is_refused() -> None:
    tree = _tree()
    trust = _loaded(tree)
    tree.clock.advance(days=10)
    future = tree.certify(SQ, LY, days=30)  # issued "in 10 days"
    tree.clock.advance(days=-10)
    with pytest.raises(TrustError) as info:
        trust.add_certificate(future)
    assert info.value.reason == "cert_expired"


def test_expired_intermediate_breaks_the_chain_below_it() -> None:
    # A certificate is valid only if its issuer's certificate is valid (hub/trust.py docstring).
    tree = _tree(days={SQ: 1})
    trust = _loaded(tree)
    assert raw_public(trust.public_key(LY)) == tree.keys[LY].public_raw
    tree.clock.advance(days=2)
    with pytest.raises(TrustError) as info:
        trust.public_key(SQ)
    assert info.value.reason == "cert_expired"
    with pytest.raises(TrustError) as info:
        trust.public_key(LY)
    assert info.value.reason == "cert_expired"


# --------------------------------------------------------------------------- revocation


def test_revocation_by_ancestor_revokes_court_and_descendants() -> None:
    tree = _tree()
    trust = _loaded(tree)
    for court in (SQ, LY, LY03):
        trust.public_key(court)  # warm the cache: revocation must invalidate it
    sq_cert = trust.certificate(SQ)
    assert sq_cert is not None
    token = issue_revocation(tree.keys[HE], HE, sq_cert, tree.clock.now_ms())
    rev = trust.add_revocation(token)
    assert rev is not None and (rev.revoker, rev.court, rev.serial) == (HE, SQ, sq_cert.serial)
    assert trust.add_revocation(token) is None  # idempotent
    assert trust.is_revoked(SQ)
    for court in (SQ, LY, LY03):
        with pytest.raises(TrustError) as info:
            trust.public_key(court)
        assert info.value.reason == "revoked", court
        # Past seals stay verifiable as evidence.
        assert raw_public(trust.evidence_key(court)) == tree.keys[court].public_raw
    # Outside the revoked subtree nothing changes.
    for court in (ROOT, HE, SQ15):
        assert raw_public(trust.public_key(court)) == tree.keys[court].public_raw
    assert [r.serial for r in trust.revocations()] == [sq_cert.serial]


def test_revocation_by_grandparent_and_by_root() -> None:
    tree = _tree()
    trust = _loaded(tree)
    ly = trust.certificate(LY)
    assert ly is not None
    trust.add_revocation(issue_revocation(tree.keys[ROOT], ROOT, ly, T0))
    with pytest.raises(TrustError) as info:
        trust.public_key(LY)
    assert info.value.reason == "revoked"
    assert raw_public(trust.public_key(SQ)) == tree.keys[SQ].public_raw


def test_revocation_by_non_ancestor_is_refused() -> None:
    tree = _tree()
    trust = _loaded(tree)
    ly = trust.certificate(LY)
    assert ly is not None
    with pytest.raises(TrustError) as info:
        issue_revocation(tree.keys[SQ15], SQ15, ly, T0)
    assert info.value.reason == "not_authorized"
    with pytest.raises(TrustError):  # a court cannot revoke itself ...
        issue_revocation(tree.keys[LY], LY, ly, T0)
    with pytest.raises(TrustError):  # ... nor its sibling
        issue_revocation(tree.keys[LY03], LY03, ly, T0)
    # Hand-made revocations by a non-ancestor are refused by the store.
    for revoker in (SQ15, LY03, LY):
        forged = _forge(
            tree.keys[revoker],
            str(revoker),
            {"typ": "revocation", "iss": str(revoker), "sub": str(LY), "serial": ly.serial, "iat": T0 // 1000},
        )
        with pytest.raises(TrustError) as info:
            trust.add_revocation(forged)
        assert info.value.reason == "not_authorized"
    assert not trust.is_revoked(LY)
    assert raw_public(trust.public_key(LY)) == tree.keys[LY].public_raw


def test_revocation_signed_by_wrong_key_or_tampered_is_refused() -> None:
    tree = _tree()
    trust = _loaded(tree)
    ly, ly03 = trust.certificate(LY), trust.certificate(LY03)
    assert ly is not None and ly03 is not None
    # Claims 豫14 as revoker but is signed by 豫15.
    forged = _forge(
        tree.keys[SQ15],
        str(SQ),
        {"typ": "revocation", "iss": str(SQ), "sub": str(LY), "serial": ly.serial, "iat": T0 // 1000},
    )
    with pytest.raises(TrustError) as info:
        trust.add_revocation(forged)
    assert info.value.reason == "bad_signature"
    # A genuine revocation of 豫1403, edited to revoke 豫1402 instead.
    genuine = issue_revocation(tree.keys[SQ], SQ, ly03, T0)
    with pytest.raises(TrustError) as info:
        trust.add_revocation(_tamper(genuine, sub=str(LY), serial=ly.serial))
    assert info.value.reason == "bad_signature"
    assert not trust.is_revoked(LY) and not trust.is_revoked(LY03)
    assert Revocation.parse(genuine).court == LY03


def test_revoked_issuer_cannot_revoke() -> None:
    tree = _tree()
    trust = _loaded(tree)
    sq, ly = trust.certificate(SQ), trust.certificate(LY)
    assert sq is not None and ly is not None
    trust.add_revocation(issue_revocation(tree.keys[HE], HE, sq, T0))
    with pytest.raises(TrustError) as info:
        trust.add_revocation(issue_revocation(tree.keys[SQ], SQ, ly, T0))
    assert info.value.reason == "revoked"


def test_recertified_court_after_revocation_works_again() -> None:
    tree = _tree()
    trust = _loaded(tree)
    ly = trust.certificate(LY)
    assert ly is not None
    trust.add_revocation(issue_revocation(tree.keys[SQ], SQ, ly, T0))
    with pytest.raises(TrustError):
        trust.public_key(LY)
    del tree.keys[LY]  # a new key, a new certificate (new serial)
    trust.add_certificate(tree.certify(SQ, LY))
    assert raw_public(trust.public_key(LY)) == tree.keys[LY].public_raw


# --------------------------------------------------------------------------- join tokens and proofs


def test_join_token_round_trip() -> None:
    tree = _tree()
    token = issue_join_token(tree.keys[SQ], SQ, LY, "10.0.0.1:7400", "ab" * 32, T0, 600)
    parsed = verify_join_token(token.token, tree.keys[SQ], SQ, T0 + 599_000)
    assert (parsed.parent, parsed.child, parsed.address, parsed.fingerprint) == (SQ, LY, "10.0.0.1:7400", "ab" * 32)
    assert parsed.jti == token.jti and parsed.expires_at_ms == T0 + 600_000
    # Whitespace from copy and paste is tolerated.
    assert verify_join_token(f"  {token.token}\n", tree.keys[SQ], SQ, T0).jti == token.jti
    # Every token is one of a kind.
    assert issue_join_token(tree.keys[SQ], SQ, LY, "a:1", "ab" * 32, T0, 600).jti != token.jti


def test_expired_join_token_is_refused() -> None:
    tree = _tree()
    token = issue_join_token(tree.keys[SQ], SQ, LY, "a:1", "ab" * 32, T0, 600)
    with pytest.raises(TrustError) as info:
        verify_join_token(token.token, tree.keys[SQ], SQ, T0 + 600_000)
    assert info.value.reason == "token_expired"


def test_join_token_from_another_issuer_is_refused() -> None:
    tree = _tree()
    token = issue_join_token(tree.keys[SQ15], SQ15, CourtCode.parse("豫1501"), "a:1", "ab" * 32, T0, 600)
    # Presented to 豫14: not signed by 豫14's key.
    with pytest.raises(TrustError) as info:
        verify_join_token(token.token, tree.keys[SQ], SQ, T0)
    assert info.value.reason == "bad_signature"
    # Signed by this node's key but naming another issuer (e.g. a key shared by mistake).
    same_key = issue_join_token(tree.keys[SQ], SQ15, CourtCode.parse("豫1501"), "a:1", "ab" * 32, T0, 600)
    with pytest.raises(TrustError) as info:
        verify_join_token(same_key.token, tree.keys[SQ], SQ, T0)
    assert info.value.reason == "wrong_issuer"


@pytest.mark.parametrize("child", ["豫1501", "豫14", "豫", "最高法", "京0105"])
def test_join_token_for_child_outside_subtree_is_refused(child: str) -> None:
    tree = _tree()
    with pytest.raises(TrustError) as info:
        issue_join_token(tree.keys[SQ], SQ, CourtCode.parse(child), "a:1", "ab" * 32, T0, 600)
    assert info.value.reason == "not_authorized"


@pytest.mark.parametrize(
    "changes", [{"sub": "豫1403"}, {"exp": 4_102_444_800}, {"addr": "evil:1"}, {"fp": "cd" * 32}], ids=repr
)
def test_tampered_join_token_is_refused(changes: dict[str, Any]) -> None:
    tree = _tree()
    token = issue_join_token(tree.keys[SQ], SQ, LY, "a:1", "ab" * 32, T0, 600)
    with pytest.raises(TrustError) as info:
        verify_join_token(_tamper(token.token, **changes), tree.keys[SQ], SQ, T0)
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("garbage", ["", "x", "a.b.c", "eyJ0eXAiOiJqb2luIn0.e30.", "ab" * 40])
def test_garbage_join_token_is_a_trust_error(garbage: str) -> None:
    tree = _tree()
    with pytest.raises(TrustError):
        verify_join_token(garbage, tree.keys[SQ], SQ, T0)


def test_certificate_is_not_a_join_token() -> None:
    tree = _tree()
    with pytest.raises(TrustError):
        verify_join_token(tree.certs[LY], tree.keys[SQ], SQ, T0)


def test_proof_of_possession() -> None:
    new_key, other = CourtKey.generate(), CourtKey.generate()
    jti = "1" * 32
    proof = make_proof(new_key, LY, jti)
    verify_proof(proof, new_key.public_raw, LY, jti)
    with pytest.raises(TrustError) as info:
        verify_proof(proof, new_key.public_raw, LY, "2" * 32)  # another token
    assert info.value.reason == "bad_proof"
    with pytest.raises(TrustError) as info:
        verify_proof(proof, new_key.public_raw, LY03, jti)  # another court
    assert info.value.reason == "bad_proof"
    with pytest.raises(TrustError) as info:
        verify_proof(proof, other.public_raw, LY, jti)  # not this key's proof
    assert info.value.reason == "bad_signature"
    with pytest.raises(TrustError) as info:
        verify_proof(_tamper(proof, jti="2" * 32), new_key.public_raw, LY, "2" * 32)
    assert info.value.reason == "bad_signature"
    # Something else signed by the key (a certificate-shaped JWT) is not a proof.
    not_proof = _forge(new_key, str(LY), {"typ": "court-cert", "sub": str(LY), "jti": jti})
    with pytest.raises(TrustError) as info:
        verify_proof(not_proof, new_key.public_raw, LY, jti)
    assert info.value.reason == "bad_proof"
