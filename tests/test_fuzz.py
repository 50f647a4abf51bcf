"""Hypothesis fuzzing of every decoder and parser that hostile or careless input can reach.

Each property: arbitrary input gives either a valid object or the project's clear error
(:class:`hub.errors.CourtHubError` or the parser's own subclass of it) — never another exception,
which would surface as ``internal`` to a peer or a traceback to court staff. Where a serializer
exists, a round trip gives back what went in.

Inputs are drawn two ways for every decoder: wholly arbitrary (bytes/text/JSON), and *near
valid* — a real, correctly built value with one thing changed (a truncation, a flipped byte, a
field swapped for a random one), which is where parsers usually break.

The default profile (``courthub``, 100 examples per property) keeps this file well under a minute;
``HYPOTHESIS_PROFILE=long`` runs 10,000 examples per property (tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import string
import time
import tomllib
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import tomli_w
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hub.codes import PROVINCES, CaseNumber, CaseType, CourtCode
from hub.config import Config, Home
from hub.errors import ConfigError, CourtHubError, InvalidCode, TrustError
from hub.federation.envelope import EnvelopeError, Target, build, open_envelope
from hub.federation.link import MAX_FRAME_BYTES, decode_frame
from hub.keys import CourtKey
from hub.plugins.models import (
    ControlResult,
    HealthResult,
    InquiryRequest,
    InquiryResult,
    InvalidModel,
    PluginInfo,
    coerce,
)
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.proto.courthub.v1 import payloads_pb2 as ppb
from hub.seal import seal, seal_kid, verify
from hub.trust import (
    CourtCertificate,
    JoinToken,
    Revocation,
    issue_certificate,
    issue_join_token,
    issue_revocation,
    verify_join_token,
)
from plugins.agency.server import Agency, SimulatorServer
from plugins.agency.testing import T0_MS
from plugins.bank.sim import BankAgency
from plugins.land.sim import LandAgency
from plugins.public_security.sim import PublicSecurityAgency
from plugins.telecom.sim import TelecomAgency

NOW_MS = 1_767_225_600_000
KEY = CourtKey.generate()
OTHER_KEY = CourtKey.generate()
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])

# --------------------------------------------------------------------------- strategies

PROVINCE = st.sampled_from(sorted(PROVINCES))
DIGITS = st.text(alphabet="0123456789", max_size=6)
# Lookalikes and separators a clerk (or an attacker) might type.
NOISE = st.sampled_from(["", " ", "\u3000", "\x00", "０", "１", "(", "（", ")", "）", "号", "执", "最高法", "\n", "/"])
COURT_TEXT = st.one_of(
    st.text(max_size=12),
    st.builds(lambda p, d, n: p + d + n, PROVINCE, DIGITS, NOISE),
    st.builds(lambda n, p, d: n + p + d, NOISE, PROVINCE, DIGITS),
    st.just("最高法"),
)
VALID_COURT = st.builds(lambda p, d: CourtCode(p, d), PROVINCE, st.sampled_from(["", "01", "14", "1402", "0102"]))
CASE_TYPES = [t.value for t in CaseType]


@st.composite
def case_text(draw: st.DrawFn) -> str:
    opener = draw(st.sampled_from(["(", "（", "[", "〔", ""]))
    closer = draw(st.sampled_from([")", "）", "]", "〕", ""]))
    year = draw(st.one_of(st.integers(1900, 2200).map(str), st.text(alphabet="0123456789０", max_size=6)))
    court = draw(COURT_TEXT)
    kind = draw(st.one_of(st.sampled_from(CASE_TYPES), st.text(max_size=4)))
    serial = draw(st.one_of(st.integers(0, 10**12).map(str), st.text(alphabet="0123456789-", max_size=14)))
    tail = draw(st.sampled_from(["号", "", "號", "号 ", "号\x00"]))
    return f"{opener}{year}{closer}{court}{kind}{serial}{tail}"


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` truncated, with one byte flipped, with bytes inserted, or duplicated."""
    n = len(data)
    return st.one_of(
        st.integers(0, max(0, n - 1)).map(lambda i: data[:i]),
        st.tuples(st.integers(0, max(0, n - 1)), st.integers(1, 255)).map(
            lambda t: data[: t[0]] + bytes([data[t[0]] ^ t[1]]) + data[t[0] + 1 :] if n else data
        ),
        st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=8)).map(
            lambda t: data[: t[0]] + t[1] + data[t[0] :]
        ),
        st.just(data + data),
    )


def _text_mutations(text: str) -> st.SearchStrategy[str]:
    return _mutations(text.encode()).map(lambda b: b.decode("utf-8", "replace"))


JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=30)
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=20,
)


# --------------------------------------------------------------------------- court codes and case numbers


@FUZZ
@given(COURT_TEXT)
def test_court_code_parse(text: str) -> None:
    try:
        code = CourtCode.parse(text)
    except InvalidCode as exc:
        assert exc.message  # a clear message, naming the input
        return
    assert CourtCode.parse(str(code)) == code
    assert str(code) == text.strip()


@FUZZ
@given(VALID_COURT)
def test_court_code_round_trip(code: CourtCode) -> None:
    assert CourtCode.parse(str(code)) == code
    assert all(code.is_within(a) for a in code.ancestors())


@FUZZ
@given(st.one_of(case_text(), st.text(max_size=30)))
def test_case_number_parse(text: str) -> None:
    try:
        number = CaseNumber.parse(text)
    except InvalidCode as exc:
        assert exc.message
        return
    assert CaseNumber.parse(str(number)) == number


@FUZZ
@given(st.integers(1950, 2100), VALID_COURT, st.sampled_from(list(CaseType)), st.integers(1, 99_999))
def test_case_number_round_trip(year: int, court: CourtCode, kind: CaseType, serial: int) -> None:
    try:
        number = CaseNumber(year, court, kind, serial)
    except InvalidCode:
        return  # e.g. a year outside the accepted range: refused clearly, that is all
    assert CaseNumber.parse(str(number)) == number
    assert CaseNumber.parse(str(number).replace("（", "(").replace("）", ")")) == number


# --------------------------------------------------------------------------- envelopes and frames


def _good_envelope(case: str = "") -> epb.Envelope:
    return build(
        KEY,
        CourtCode.parse("豫1402"),
        "directive",
        Target.to_court(CourtCode.parse("豫14")),
        ppb.DirectivePayload(title="标题", body="正文", level="routine"),
        now_ms=NOW_MS,
        case_number=case,
    )


GOOD = _good_envelope("（2024）豫1402执123号")


@st.composite
def envelopes(draw: st.DrawFn) -> epb.Envelope:
    which = draw(st.integers(0, 3))
    if which == 0:  # arbitrary bytes everywhere
        return epb.Envelope(
            header=draw(st.binary(max_size=300)), payload=draw(st.binary(max_size=100)), seal=draw(st.text(max_size=50))
        )
    if which == 1:  # a real header with one part mutated
        return epb.Envelope(header=draw(_mutations(GOOD.header)), payload=GOOD.payload, seal=GOOD.seal)
    if which == 2:  # a header built from arbitrary field values, digest correct
        payload = draw(st.binary(max_size=50))
        dest = draw(
            st.one_of(
                st.builds(lambda c: epb.Destination(court=c), COURT_TEXT),
                st.builds(lambda c: epb.Destination(subtree=c), COURT_TEXT),
                st.builds(lambda c: epb.Destination(capability=c), st.text(max_size=20)),
                st.just(epb.Destination()),
            )
        )
        header = epb.EnvelopeHeader(
            id=draw(st.one_of(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32), st.text(max_size=40))),
            kind=draw(
                st.one_of(st.sampled_from(["directive", "ping", "bench", "x.y", "receipt"]), st.text(max_size=40))
            ),
            origin=draw(COURT_TEXT),
            destination=dest,
            correlation_id=draw(st.one_of(st.just(""), st.text(max_size=34))),
            created_at_ms=draw(st.integers(-(2**63), 2**63 - 1)),
            case_number=draw(st.one_of(st.just(""), case_text())),
            payload_sha256=hashlib.sha256(payload).digest(),
            schema_version=draw(st.integers(0, 2**32 - 1)),
        )
        return epb.Envelope(header=header.SerializeToString(), payload=payload, seal=draw(st.text(max_size=20)))
    return epb.Envelope(header=GOOD.header, payload=draw(_mutations(GOOD.payload)), seal=GOOD.seal)


@FUZZ
@given(envelopes())
def test_open_envelope(env: epb.Envelope) -> None:
    try:
        opened = open_envelope(env)
    except EnvelopeError as exc:
        assert exc.reason and exc.message
        return
    try:
        opened.payload()
    except EnvelopeError as exc:
        assert "payload" in exc.message
    # What opens also verifies or is refused as bad_seal, never anything else.
    try:
        verify(env.seal, env.header, KEY.public, kid=str(opened.origin))
    except TrustError as exc:
        assert exc.reason == "bad_seal"


@FUZZ
@given(st.text(max_size=20), st.text(max_size=40), st.sampled_from(["豫1402", "京", "最高法"]))
def test_envelope_round_trip(title: str, body: str, origin: str) -> None:
    payload = ppb.DirectivePayload(title=title, body=body, level="routine")
    env = build(
        KEY, CourtCode.parse(origin), "directive", Target.to_subtree(CourtCode.parse("豫")), payload, now_ms=NOW_MS
    )
    wire = epb.Envelope.FromString(env.SerializeToString())
    opened = open_envelope(wire)
    assert opened.origin == CourtCode.parse(origin)
    assert opened.payload() == payload
    verify(wire.seal, wire.header, KEY.public, kid=origin)


GOOD_FRAME = lpb.ConnectRequest(frame=lpb.Frame(batch=lpb.EnvelopeBatch(seq=7, envelopes=[GOOD]))).SerializeToString()


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=400),
        _mutations(GOOD_FRAME),
        # protobuf nesting bombs: unknown groups opened deeper than any parser's recursion limit
        st.integers(1, 5000).map(lambda n: b"\x7b" * n + b"\x7c" * n),
        st.integers(1, 5000).map(lambda n: b"\x0a\x02\x7b" * n),
    ),
    st.sampled_from([lpb.ConnectRequest, lpb.ConnectResponse]),
)
def test_decode_frame(raw: bytes, wrapper: type[lpb.ConnectRequest] | type[lpb.ConnectResponse]) -> None:
    try:
        frame = decode_frame(raw, wrapper)
    except CourtHubError as exc:
        assert exc.reason in ("malformed_frame", "frame_too_large")
        return
    assert frame.WhichOneof("body") is not None


def test_decode_frame_refuses_a_deep_nesting_bomb_and_an_oversized_frame() -> None:
    for depth in (10_000, 200_000):
        bomb = b"\x7b" * depth + b"\x7c" * depth  # unknown field 15, wire type 3 (start group), nested
        with pytest.raises(CourtHubError) as refused:
            decode_frame(bomb, lpb.ConnectRequest)
        assert refused.value.reason == "malformed_frame"
    with pytest.raises(CourtHubError) as refused:
        decode_frame(b"\x00" * (MAX_FRAME_BYTES + 1), lpb.ConnectRequest)
    assert refused.value.reason == "frame_too_large"


@FUZZ
@given(st.integers(0, 2**63 - 1), st.lists(st.text(max_size=10), max_size=3), st.binary(max_size=40))
def test_frame_round_trip(seq: int, reasons: list[str], nonce: bytes) -> None:
    frames = [
        lpb.Frame(batch=lpb.EnvelopeBatch(seq=seq, envelopes=[GOOD])),
        lpb.Frame(ack=lpb.Ack(seq=seq, rejections=[lpb.Rejection(envelope_id="e", reason=r) for r in reasons])),
        lpb.Frame(challenge=lpb.Challenge(nonce=nonce, court="豫", protocol_version=2)),
    ]
    for frame in frames:
        assert decode_frame(lpb.ConnectResponse(frame=frame).SerializeToString(), lpb.ConnectResponse) == frame


# --------------------------------------------------------------------------- seals


SEALED = seal(KEY, "豫1402", b"content")


@FUZZ
@given(st.one_of(st.text(max_size=200), _text_mutations(SEALED)), st.binary(max_size=30))
def test_seal_verify(token: str, content: bytes) -> None:
    try:
        verify(token, content, KEY.public, kid="豫1402")
    except TrustError as exc:
        assert exc.reason == "bad_seal" and exc.message
    else:
        assert token == SEALED and content == b"content"
    try:
        kid = seal_kid(token)
    except TrustError as exc:
        assert exc.reason == "bad_seal"
    else:
        assert isinstance(kid, str) and kid


@FUZZ
@given(st.binary(max_size=200), st.text(min_size=1, max_size=20))
def test_seal_round_trip(content: bytes, kid: str) -> None:
    token = seal(KEY, kid, content)
    assert seal_kid(token) == kid
    verify(token, content, KEY.public, kid=kid)
    with pytest.raises(TrustError):
        verify(token, content, OTHER_KEY.public, kid=kid)
    with pytest.raises(TrustError):
        verify(token[:-2], content, KEY.public, kid=kid)  # truncated


# --------------------------------------------------------------------------- certificates, join tokens, revocations


CERT = issue_certificate(
    KEY, CourtCode.parse("豫14"), CourtCode.parse("豫1402"), "梁园区", OTHER_KEY.public_raw, NOW_MS
)
JOIN = issue_join_token(KEY, CourtCode.parse("豫14"), CourtCode.parse("豫1402"), "127.0.0.1:1", "ab" * 32, NOW_MS, 60)
REVOCATION = issue_revocation(KEY, CourtCode.parse("豫14"), CourtCertificate.parse(CERT), NOW_MS)


@st.composite
def jwt_tokens(draw: st.DrawFn) -> str:
    """Correctly signed JWTs with arbitrary claims (typ chosen to reach every parser's checks)."""
    claims = draw(
        st.dictionaries(
            st.sampled_from(["iss", "sub", "name", "pub", "jti", "nbf", "exp", "addr", "fp", "serial", "iat"]),
            JSON,
            max_size=10,
        )
    )
    claims["typ"] = draw(st.sampled_from(["court-cert", "join", "revocation", "proof", None]))
    for name in ("iss", "sub"):
        if draw(st.booleans()):
            claims[name] = draw(COURT_TEXT)
    try:
        return jwt.encode(claims, KEY.private, algorithm="EdDSA", headers={"kid": "豫14"})
    except (TypeError, ValueError, OverflowError):
        assume(False)
        raise AssertionError("unreachable") from None


TOKENS = st.one_of(
    st.text(max_size=120),
    _text_mutations(CERT),
    _text_mutations(JOIN.token),
    _text_mutations(REVOCATION),
    jwt_tokens(),
)


@FUZZ
@given(TOKENS)
def test_trust_token_parsers(token: str) -> None:
    for parser in (CourtCertificate.parse, JoinToken.parse, Revocation.parse):
        try:
            parser(token)
        except CourtHubError as exc:
            assert exc.message
    try:
        verify_join_token(token, KEY, CourtCode.parse("豫14"), NOW_MS)
    except CourtHubError as exc:
        assert exc.message


@FUZZ
@given(
    st.sampled_from(["豫1402", "豫14", "京0101"]),
    st.text(min_size=1, max_size=30),
    st.integers(NOW_MS - 10**12, NOW_MS + 10**12),
)
def test_certificate_and_revocation_round_trip(court: str, name: str, now_ms: int) -> None:
    issuer = CourtCode.parse("京" if court.startswith("京") else "豫")
    token = issue_certificate(KEY, issuer, CourtCode.parse(court), name, OTHER_KEY.public_raw, now_ms)
    cert = CourtCertificate.parse(token)
    assert (cert.court, cert.issuer, cert.name, cert.public_raw) == (
        CourtCode.parse(court),
        issuer,
        name,
        OTHER_KEY.public_raw,
    )
    revocation = Revocation.parse(issue_revocation(KEY, issuer, cert, now_ms))
    assert (revocation.court, revocation.serial, revocation.revoker) == (cert.court, cert.serial, issuer)


def test_token_attacks_are_trust_errors() -> None:
    """The classic JWT tricks: alg none, a token signed by another key, HS256 with the public key."""
    claims = jwt.decode(JOIN.token, options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    other = jwt.encode(claims, OTHER_KEY.private, algorithm="EdDSA", headers={"kid": "豫14"})
    hs = jwt.encode(claims, KEY.public_raw, algorithm="HS256")
    for token in (unsigned, other, hs):
        with pytest.raises(TrustError):
            verify_join_token(token, KEY, CourtCode.parse("豫14"), NOW_MS)
    for court in ("豫15", "豫1402"):  # a token of 豫14 presented to another court
        with pytest.raises(TrustError) as refused:
            verify_join_token(JOIN.token, KEY, CourtCode.parse(court), NOW_MS)
        assert refused.value.reason == "wrong_issuer"


# --------------------------------------------------------------------------- configuration files


@pytest.fixture(scope="module")
def config_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return Home(tmp_path_factory.mktemp("fuzz-config"))


BASE_CONFIG: dict[str, Any] = {
    "node": {"court": "豫14", "name": "商丘市中级人民法院", "listen": "127.0.0.1:7000"},
    "parent": {"court": "豫", "address": "127.0.0.1:7001", "fingerprint": "ab" * 32},
    "federation": {"dedupe_retention_days": 30, "child_rate_per_s": 100.0},
}
TOML_VALUE = st.recursive(
    st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=10,
)


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    which = draw(st.integers(0, 2))
    if which == 0:
        return draw(st.text(max_size=200))
    data = json.loads(json.dumps(BASE_CONFIG))
    section = draw(st.sampled_from(["node", "parent", "federation", "store", "agency", "admin", "trust", "nope"]))
    key = draw(
        st.one_of(
            st.sampled_from(
                [
                    "court",
                    "name",
                    "listen",
                    "address",
                    "fingerprint",
                    "url",
                    "child_rate_per_s",
                    "child_burst",
                    "dedupe_retention_days",
                    "worker_concurrency",
                ]
            ),
            st.text(max_size=10),
        )
    )
    data.setdefault(section, {})[key] = draw(TOML_VALUE)
    if which == 1:
        return tomli_w.dumps(data)
    return draw(_text_mutations(tomli_w.dumps(data)))


@FUZZ
@given(config_texts())
def test_config_loading(config_home: Home, text: str) -> None:
    config_home.config_file.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = config_home.load(environ={})
    except ConfigError as exc:
        assert str(config_home.config_file) in exc.message or "config" in exc.message
        return
    # What loads saves and loads back unchanged.
    config_home.save(config)
    assert config_home.load(environ={}) == config
    assert isinstance(tomllib.loads(config_home.config_file.read_text(encoding="utf-8")), dict)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "COURTHUB_FEDERATION__CHILD_BURST",
                "COURTHUB_NODE__COURT",
                "COURTHUB_STORE",
                "COURTHUB_X__Y",
                "COURTHUB_NODE__LISTEN",
            ]
        ),
        st.text(max_size=12),
        max_size=3,
    )
)
def test_config_environment_overrides(config_home: Home, environ: dict[str, str]) -> None:
    config_home.config_file.write_text(tomli_w.dumps(BASE_CONFIG), encoding="utf-8")
    try:
        config_home.load(environ=environ)
    except ConfigError as exc:
        assert exc.message


def test_config_round_trip(config_home: Home) -> None:
    config = Config.model_validate(BASE_CONFIG)
    config_home.save(config)
    assert config_home.load(environ={}) == config


# --------------------------------------------------------------------------- agency simulators


AGENCIES: list[type[Agency]] = [BankAgency, LandAgency, PublicSecurityAgency, TelecomAgency]


@pytest.fixture(scope="module")
def simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SimulatorServer]]:
    base = tmp_path_factory.mktemp("fuzz-sims")
    servers = [SimulatorServer(a(), db_path=base / f"{a.__name__}.db", seed=7, now_ms=T0_MS) for a in AGENCIES]
    yield servers
    for server in servers:
        server.close()


SUBJECT = {"name": "张三", "id_type": "resident_id", "id_no": "11010519491231002X"}


@st.composite
def request_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Arbitrary JSON objects, and request-shaped ones with arbitrary values in known fields."""
    if draw(st.booleans()):
        return draw(st.dictionaries(st.text(max_size=12), JSON, max_size=6))
    body: dict[str, Any] = {
        "request_id": draw(
            st.one_of(st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=40), JSON)
        ),
        "court": {"code": "豫1402", "name": "商丘市梁园区人民法院"},
        "subject": SUBJECT,
        "case_number": "（2024）豫1402执123号",
    }
    field = draw(
        st.sampled_from(
            [
                "court",
                "subject",
                "case_number",
                "account_no",
                "amount",
                "phone",
                "measure",
                "action",
                "order",
                "since",
                "until",
                "approval",
            ]
        )
    )
    body[field] = draw(JSON)
    return body


@FUZZ
@given(st.data())
def test_simulator_request_parsing(simulators: list[SimulatorServer], data: st.DataObject) -> None:
    server = data.draw(st.sampled_from(simulators))
    ops = [op for op in server.agency.operations() if op.method == "POST"]
    op = data.draw(st.sampled_from(ops))
    body = data.draw(request_bodies())
    request = make_mocked_request("POST", op.path)
    response = server._run(request, op.handler, body, op.effectful)
    assert response.status != 500, response.text
    if response.status >= 400:
        assert response.text is not None
        error = json.loads(response.text)["error"]
        assert error["reason"] and error["message"]


# --------------------------------------------------------------------------- plugin results


MODELS = [InquiryResult, ControlResult, HealthResult, PluginInfo, InquiryRequest]


@FUZZ
@given(
    st.sampled_from(MODELS),
    st.one_of(
        JSON,
        st.dictionaries(
            st.sampled_from(
                [
                    "request_id",
                    "status",
                    "assets",
                    "answered_at_ms",
                    "agency_ref",
                    "message",
                    "action",
                    "measure_id",
                    "name",
                    "version",
                    "capabilities",
                    "api_version",
                ]
            ),
            JSON,
            max_size=6,
        ),
    ),
)
def test_plugin_result_validation(model: type[Any], value: object) -> None:
    try:
        result = coerce(value, model)
    except InvalidModel as exc:
        assert exc.message and model.__name__ in exc.message
        return
    assert coerce(result.to_dict(), model) == result


def test_plugin_result_round_trip() -> None:
    result = InquiryResult(request_id="req-1", status="not_found", answered_at_ms=int(time.time() * 1000))  # type: ignore[arg-type]
    assert coerce(result.to_dict(), InquiryResult) == result
    assert coerce(result, InquiryResult) == result
