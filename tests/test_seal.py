"""Seals: detached JWS (RFC 7515 Appendix F, EdDSA) over envelope header bytes.

Interoperability is proved both ways with PyJWT: our seal, with its content re-attached as the
Appendix F procedure says, verifies with PyJWT; a PyJWT-made EdDSA JWS with the same protected
header, detached, verifies with ``hub.seal.verify``. Every way a seal can be wrong is a
``TrustError`` with reason ``bad_seal`` — never another exception, whatever string arrives.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub import seal
from hub.errors import TrustError
from hub.keys import CourtKey, b64url

KID = "豫1402"
CONTENT = b"\x0a\x20" + bytes(range(256))  # arbitrary header bytes, not text

_KEY = CourtKey.generate()
_OTHER = CourtKey.generate()


def _protected(header: dict[str, object]) -> str:
    return b64url(json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode())


def _signed_with_protected(key: CourtKey, protected: str, content: bytes) -> str:
    """A detached JWS with an arbitrary protected header, correctly signed by ``key``."""
    signature = key.sign(f"{protected}.{b64url(content)}".encode("ascii"))
    return f"{protected}..{b64url(signature)}"


def _reason(token: str, content: bytes = CONTENT, key: CourtKey = _KEY, kid: str = KID) -> str:
    with pytest.raises(TrustError) as info:
        seal.verify(token, content, key.public, kid=kid)
    return info.value.reason


# --------------------------------------------------------------------------- happy path and interop


def test_seal_verifies_and_names_its_kid() -> None:
    token = seal.seal(_KEY, KID, CONTENT)
    seal.verify(token, CONTENT, _KEY.public, kid=KID)
    assert seal.seal_kid(token) == KID
    protected, sep, signature = token.partition("..")
    assert sep == ".." and protected and signature and "." not in signature


def test_pyjwt_verifies_our_seal_with_the_content_reattached() -> None:
    token = seal.seal(_KEY, KID, CONTENT)
    protected, _, signature = token.partition("..")
    attached = f"{protected}.{b64url(CONTENT)}.{signature}"
    decoded = jwt.api_jws.PyJWS().decode_complete(attached, key=_KEY.public, algorithms=["EdDSA"])
    assert decoded["payload"] == CONTENT
    assert decoded["header"] == {"alg": "EdDSA", "kid": KID, "typ": seal.SEAL_TYPE}
    # ... and PyJWT refuses the same seal over other content (it really checked the signature).
    forged = f"{protected}.{b64url(CONTENT + b'x')}.{signature}"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.api_jws.PyJWS().decode_complete(forged, key=_KEY.public, algorithms=["EdDSA"])


def test_pyjwt_made_detached_jws_verifies_with_hub_seal() -> None:
    token = jwt.api_jws.PyJWS().encode(
        CONTENT, _KEY.private, algorithm="EdDSA", headers={"kid": KID, "typ": seal.SEAL_TYPE}
    )
    protected, payload, signature = token.split(".")
    assert payload == b64url(CONTENT)
    detached = f"{protected}..{signature}"
    seal.verify(detached, CONTENT, _KEY.public, kid=KID)
    assert seal.seal_kid(detached) == KID
    assert _reason(detached, content=CONTENT[:-1]) == "bad_seal"


def test_rfc7797_unencoded_payload_jws_is_not_a_seal() -> None:
    # b64=false changes the signing input; a seal must be the Appendix F form only.
    token = jwt.api_jws.PyJWS().encode(
        CONTENT, _KEY.private, algorithm="EdDSA", headers={"kid": KID, "typ": seal.SEAL_TYPE}, is_payload_detached=True
    )
    assert _reason(token) == "bad_seal"


# --------------------------------------------------------------------------- refusals


def test_altered_content_is_refused() -> None:
    token = seal.seal(_KEY, KID, CONTENT)
    altered = bytearray(CONTENT)
    altered[5] ^= 0x01
    assert _reason(token, content=bytes(altered)) == "bad_seal"
    assert _reason(token, content=CONTENT + b"\x00") == "bad_seal"
    assert _reason(token, content=b"") == "bad_seal"


@pytest.mark.parametrize("cut", [1, 2, 10, 43])
def test_truncated_signature_is_refused(cut: int) -> None:
    token = seal.seal(_KEY, KID, CONTENT)
    assert _reason(token[:-cut]) == "bad_seal"


def test_flipped_signature_bit_is_refused() -> None:
    token = seal.seal(_KEY, KID, CONTENT)
    protected, _, sig = token.partition("..")
    flipped = "A" if sig[0] != "A" else "B"
    assert _reason(f"{protected}..{flipped}{sig[1:]}") == "bad_seal"


def test_wrong_key_is_refused() -> None:
    token = seal.seal(_KEY, KID, CONTENT)
    assert _reason(token, key=_OTHER) == "bad_seal"


def test_wrong_kid_is_refused() -> None:
    token = seal.seal(_KEY, KID, CONTENT)
    # The right key, but the seal names another court than the envelope's origin.
    assert _reason(token, kid="豫1403") == "bad_seal"
    # A seal made by 豫1402's key claiming to be 豫1403 does not verify with 豫1403's key either.
    impostor = seal.seal(_KEY, "豫1403", CONTENT)
    assert _reason(impostor, key=_OTHER, kid="豫1403") == "bad_seal"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "kid": KID, "typ": seal.SEAL_TYPE},
        {"alg": "none", "kid": KID, "typ": seal.SEAL_TYPE},
        {"alg": "ES256", "kid": KID, "typ": seal.SEAL_TYPE},
        {"alg": "eddsa", "kid": KID, "typ": seal.SEAL_TYPE},
        {"kid": KID, "typ": seal.SEAL_TYPE},
        {"alg": "EdDSA", "kid": KID, "typ": "JWT"},
        {"alg": "EdDSA", "kid": KID},
        {"alg": "EdDSA", "typ": seal.SEAL_TYPE},
        {"alg": "EdDSA", "kid": "", "typ": seal.SEAL_TYPE},
        {"alg": "EdDSA", "kid": 1402, "typ": seal.SEAL_TYPE},
        {"alg": "EdDSA", "kid": KID, "typ": seal.SEAL_TYPE, "b64": False, "crit": ["b64"]},
        {"alg": "EdDSA", "kid": KID, "typ": seal.SEAL_TYPE, "jku": "https://evil.example/keys"},
    ],
    ids=repr,
)
def test_bad_protected_header_is_refused_even_when_correctly_signed(header: dict[str, object]) -> None:
    token = _signed_with_protected(_KEY, _protected(header), CONTENT)
    assert _reason(token) == "bad_seal"


def test_hs256_seal_keyed_with_the_public_key_is_refused() -> None:
    # The classic algorithm-confusion attack: HMAC keyed with the (public) verification key.
    protected = _protected({"alg": "HS256", "kid": KID, "typ": seal.SEAL_TYPE})
    mac = hmac.new(_KEY.public_raw, f"{protected}.{b64url(CONTENT)}".encode(), hashlib.sha256).digest()
    assert _reason(f"{protected}..{b64url(mac)}") == "bad_seal"


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "..",
        "...",
        "abc",
        "a.b.c",
        "a..b..c",
        "a..",  # protected is not valid base64url (length 1 mod 4)
        "é..AAAA",  # non-ASCII protected header
        "eyJhbGciOiJFZERTQSJ9..",
        "e30..AAAA",  # {} as header
        "bnVsbA..AAAA",  # null as header
        "WzFd..AAAA",  # [1] as header
        "/w..AAAA",  # 0xff: not UTF-8
        "\x00..\x00",
        "🙂..🙂",
    ],
    ids=repr,
)
def test_garbage_is_refused_as_bad_seal(token: str) -> None:
    assert _reason(token) == "bad_seal"
    with pytest.raises(TrustError) as info:
        seal.seal_kid(token)
    assert info.value.reason == "bad_seal"


def test_garbage_signature_part_is_refused() -> None:
    token = seal.seal(_KEY, KID, CONTENT)
    protected, _, _ = token.partition("..")
    for sig in ["", "!!!!", "A", "é" * 86, "A" * 87, "A" * 85]:
        assert _reason(f"{protected}..{sig}") == "bad_seal", sig


def test_deeply_nested_json_header_is_refused_as_bad_seal() -> None:
    # A hostile peer controls the seal string; a pathological header must not escape as a crash.
    protected = b64url(b"[" * 100_000)
    assert _reason(f"{protected}..{'A' * 86}") == "bad_seal"


# --------------------------------------------------------------------------- properties

_B64 = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.", max_size=120)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=200), st.builds(lambda a, b: f"{a}..{b}", _B64, _B64)))
def test_any_string_as_seal_is_only_ever_a_trust_error(token: str) -> None:
    with pytest.raises(TrustError) as info:
        seal.verify(token, CONTENT, _KEY.public, kid=KID)
    assert info.value.reason == "bad_seal"
    try:
        seal.seal_kid(token)
    except TrustError as exc:
        assert exc.reason == "bad_seal"


@settings(max_examples=100)
@given(content=st.binary(max_size=512), kid=st.text(min_size=1, max_size=20))
def test_seal_round_trips_for_any_content_and_kid(content: bytes, kid: str) -> None:
    token = seal.seal(_KEY, kid, content)
    seal.verify(token, content, _KEY.public, kid=kid)
    assert seal.seal_kid(token) == kid
    with pytest.raises(TrustError):
        seal.verify(token, content + b"\x00", _KEY.public, kid=kid)
