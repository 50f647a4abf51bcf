"""Envelopes: build/open round trip, every structural check of ``open_envelope``, and link frames.

Whatever bytes a peer sends, ``open_envelope`` either returns an ``Opened`` or raises
``EnvelopeError``/``InvalidInput`` naming the problem; ``decode_frame`` either returns a Frame or
raises ``InvalidInput`` with reason ``malformed_frame``/``frame_too_large``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

import pytest
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.codes import CourtCode
from hub.errors import InvalidInput
from hub.federation import kinds
from hub.federation.envelope import (
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    EnvelopeError,
    Opened,
    Target,
    build,
    new_id,
    open_envelope,
)
from hub.federation.link import MAX_FRAME_BYTES, decode_frame
from hub.keys import CourtKey
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.proto.courthub.v1 import payloads_pb2 as pb
from hub.seal import verify

KEY = CourtKey.generate()
ORIGIN = CourtCode.parse("豫1402")
T0 = 1_780_000_000_000
CASE = "（2024）豫1402执123号"


def _directive() -> epb.Envelope:
    return build(
        KEY,
        ORIGIN,
        "directive",
        Target.to_subtree(CourtCode.parse("豫14")),
        pb.DirectivePayload(title="限期反馈", body="请于三日内反馈", level="urgent", feedback_due_ms=T0 + 1),
        now_ms=T0,
        correlation_id=new_id(),
        case_number=CASE,
    )


def _with_header(change: Callable[[epb.EnvelopeHeader], None], payload: bytes | None = None) -> epb.Envelope:
    """A valid envelope whose header was edited by ``change`` (digest kept in step with the payload)."""
    env = _directive()
    header = epb.EnvelopeHeader()
    header.ParseFromString(env.header)
    if payload is not None:
        env.payload = payload
        header.payload_sha256 = hashlib.sha256(payload).digest()
    change(header)
    env.header = header.SerializeToString()
    return env


def _reason(env: epb.Envelope) -> str:
    with pytest.raises(EnvelopeError) as info:
        open_envelope(env)
    return info.value.reason


# --------------------------------------------------------------------------- round trip


def test_build_and_open_round_trip() -> None:
    env = _directive()
    wire = env.SerializeToString()
    received = epb.Envelope()
    received.ParseFromString(wire)
    opened = open_envelope(received)
    assert opened.kind == "directive" and opened.spec is kinds.DIRECTIVE
    assert opened.origin == ORIGIN
    assert opened.target == Target.to_subtree(CourtCode.parse("豫14"))
    assert len(opened.id) == 32 and opened.header.case_number == CASE
    assert opened.header.created_at_ms == T0
    payload = opened.payload()
    assert isinstance(payload, pb.DirectivePayload)
    assert (payload.title, payload.level, payload.feedback_due_ms) == ("限期反馈", "urgent", T0 + 1)
    assert opened.raw() == wire
    # The seal covers the header bytes exactly as they travel.
    verify(received.seal, received.header, KEY.public, kid=str(ORIGIN))


@pytest.mark.parametrize(
    "target",
    [
        Target.to_court(CourtCode.parse("最高法")),
        Target.to_court(CourtCode.parse("京0105")),
        Target.to_subtree(CourtCode.parse("豫")),
        Target.to_capability("bank.inquiry"),
    ],
    ids=str,
)
def test_every_destination_mode_round_trips(target: Target) -> None:
    env = build(KEY, ORIGIN, "ping", target, pb.PingPayload(sent_at_ms=T0), now_ms=T0, envelope_id="a" * 32)
    opened = open_envelope(env)
    assert opened.target == target and opened.id == "a" * 32
    assert not opened.header.case_number and not opened.header.correlation_id


def test_build_refuses_unknown_kind_or_wrong_payload() -> None:
    target = Target.to_court(ORIGIN)
    with pytest.raises(InvalidInput):
        build(KEY, ORIGIN, "gossip", target, pb.PingPayload(), now_ms=T0)
    with pytest.raises(InvalidInput):
        build(KEY, ORIGIN, "directive", target, pb.PingPayload(), now_ms=T0)
    with pytest.raises(InvalidInput):
        Target.to_capability("Bank Inquiry")


def test_payload_of_the_wrong_type_is_refused_when_read() -> None:
    env = _with_header(lambda h: None, payload=b"\xff\xff\xff")
    opened = open_envelope(env)
    with pytest.raises(EnvelopeError):
        opened.payload()


# --------------------------------------------------------------------------- every check


def _set(field: str, value: object) -> Callable[[epb.EnvelopeHeader], None]:
    def change(h: epb.EnvelopeHeader) -> None:
        setattr(h, field, value)

    return change


def _dest(**kw: str) -> Callable[[epb.EnvelopeHeader], None]:
    def change(h: epb.EnvelopeHeader) -> None:
        h.destination.CopyFrom(epb.Destination(**kw))

    return change


def _no_dest(h: epb.EnvelopeHeader) -> None:
    h.ClearField("destination")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_set("id", ""), "malformed_envelope"),
        (_set("id", "A" * 32), "malformed_envelope"),
        (_set("id", "a" * 31), "malformed_envelope"),
        (_set("id", "a" * 33), "malformed_envelope"),
        (_set("id", "12345678-1234-1234-1234-123456789abc"), "malformed_envelope"),
        (_set("id", "g" * 32), "malformed_envelope"),
        (_set("kind", ""), "bad_kind"),
        (_set("kind", "Directive"), "bad_kind"),
        (_set("kind", "a" * 40), "bad_kind"),
        (_set("kind", "x;drop"), "bad_kind"),
        (_set("origin", ""), "malformed_envelope"),
        (_set("origin", "贵01"), "malformed_envelope"),
        (_set("origin", "豫1400"), "malformed_envelope"),
        (_set("origin", "河南"), "malformed_envelope"),
        (_no_dest, "bad_destination"),
        (_dest(court="豫00"), "bad_destination"),
        (_dest(court=""), "bad_destination"),
        (_dest(subtree="X"), "bad_destination"),
        (_dest(capability="bank"), "bad_destination"),
        (_dest(capability="Bank.Inquiry"), "bad_destination"),
        (_set("case_number", "（2024）豫1402民初1号"), "malformed_envelope"),
        (_set("case_number", "2024豫1402执1号"), "malformed_envelope"),
        (_set("correlation_id", "not-an-id"), "malformed_envelope"),
        (_set("created_at_ms", 0), "malformed_envelope"),
        (_set("created_at_ms", -1), "malformed_envelope"),
        (_set("payload_sha256", b""), "bad_digest"),
        (_set("payload_sha256", b"\x00" * 32), "bad_digest"),
    ],
)
def test_each_header_check(change: Callable[[epb.EnvelopeHeader], None], reason: str) -> None:
    env = _with_header(change)
    with pytest.raises(EnvelopeError) as info:
        open_envelope(env)
    assert info.value.reason == reason
    assert str(info.value)  # a message for the sender


def test_bad_id_is_named_and_truncated_in_the_message() -> None:
    env = _with_header(_set("id", "Z" * 1000))
    with pytest.raises(EnvelopeError) as info:
        open_envelope(env)
    assert "Z" * 40 in str(info.value) and "Z" * 41 not in str(info.value)


def test_digest_mismatch_after_payload_change() -> None:
    env = _directive()
    env.payload = env.payload + b"\x00"
    assert _reason(env) == "bad_digest"


def test_header_that_is_not_a_header() -> None:
    env = _directive()
    env.header = b"\xff\xff\xff\xff"
    assert _reason(env) == "malformed_envelope"


def test_too_large_header() -> None:
    env = _with_header(_set("correlation_id", "a" * (MAX_HEADER_BYTES + 1)))
    assert _reason(env) == "too_large"


def test_too_large_payload() -> None:
    big = pb.DirectivePayload(title="t", body="x" * MAX_PAYLOAD_BYTES).SerializeToString()
    env = _with_header(lambda h: None, payload=big)
    assert _reason(env) == "too_large"
    # Just under the limit is fine.
    ok = pb.DirectivePayload(body="x" * (MAX_PAYLOAD_BYTES - 10)).SerializeToString()
    assert len(ok) <= MAX_PAYLOAD_BYTES
    open_envelope(_with_header(lambda h: None, payload=ok))


def test_no_seal() -> None:
    env = _directive()
    env.seal = ""
    assert _reason(env) == "bad_seal"


def test_empty_envelope() -> None:
    with pytest.raises(EnvelopeError):
        open_envelope(epb.Envelope())


# --------------------------------------------------------------------------- properties

_CODES = ["最高法", "豫", "豫14", "豫1402", "京0105", "贵01", "豫00", "", "x"]


def _open_or_refuse(env: epb.Envelope) -> None:
    try:
        opened = open_envelope(env)
    except InvalidInput as exc:  # EnvelopeError is an InvalidInput
        assert exc.reason and str(exc)
        return
    assert isinstance(opened, Opened)
    with contextlib.suppress(EnvelopeError):
        assert isinstance(opened.payload(), Message)


@settings(max_examples=300)
@given(header=st.binary(max_size=600), payload=st.binary(max_size=64), seal=st.text(max_size=20))
def test_arbitrary_header_bytes_only_raise_envelope_errors(header: bytes, payload: bytes, seal: str) -> None:
    _open_or_refuse(epb.Envelope(header=header, payload=payload, seal=seal))


@st.composite
def _headers(draw: st.DrawFn) -> tuple[epb.EnvelopeHeader, bytes]:
    payload = draw(st.binary(max_size=64))
    dest_kind = draw(st.sampled_from(["court", "subtree", "capability", "none"]))
    dest = epb.Destination()
    if dest_kind == "capability":
        dest.capability = draw(st.one_of(st.sampled_from(["bank.inquiry", "a.b"]), st.text(max_size=40)))
    elif dest_kind != "none":
        setattr(dest, dest_kind, draw(st.one_of(st.sampled_from(_CODES), st.text(max_size=8))))
    header = epb.EnvelopeHeader(
        id=draw(st.one_of(st.just(new_id()), st.text(max_size=40))),
        kind=draw(st.one_of(st.sampled_from(kinds.names()), st.text(max_size=12))),
        origin=draw(st.one_of(st.sampled_from(_CODES), st.text(max_size=8))),
        destination=dest,
        correlation_id=draw(st.one_of(st.just(""), st.just(new_id()), st.text(max_size=40))),
        created_at_ms=draw(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        case_number=draw(st.one_of(st.just(""), st.just(CASE), st.text(max_size=30))),
        payload_sha256=draw(st.one_of(st.just(hashlib.sha256(payload).digest()), st.binary(max_size=40))),
        schema_version=draw(st.integers(min_value=0, max_value=2**32 - 1)),
    )
    return header, payload


@settings(max_examples=300)
@given(parts=_headers(), seal=st.one_of(st.just(""), st.text(max_size=20)))
def test_arbitrary_envelopes_only_raise_envelope_errors(parts: tuple[epb.EnvelopeHeader, bytes], seal: str) -> None:
    header, payload = parts
    _open_or_refuse(epb.Envelope(header=header.SerializeToString(), payload=payload, seal=seal))


@settings(max_examples=300)
@given(parts=_headers())
def test_envelopes_that_open_are_fully_valid(parts: tuple[epb.EnvelopeHeader, bytes]) -> None:
    header, payload = parts
    try:
        opened = open_envelope(epb.Envelope(header=header.SerializeToString(), payload=payload, seal="s"))
    except InvalidInput:
        return
    assert len(opened.id) == 32 and kinds.get(opened.kind) is opened.spec
    assert hashlib.sha256(payload).digest() == opened.header.payload_sha256
    assert opened.header.created_at_ms > 0
    assert str(CourtCode.parse(opened.header.origin)) == opened.header.origin.strip()


# --------------------------------------------------------------------------- link frames


@pytest.mark.parametrize("wrapper", [lpb.ConnectRequest, lpb.ConnectResponse])
def test_decode_frame_round_trip(wrapper: type[lpb.ConnectRequest] | type[lpb.ConnectResponse]) -> None:
    frame = lpb.Frame(batch=lpb.EnvelopeBatch(seq=7, envelopes=[_directive()]))
    decoded = decode_frame(wrapper(frame=frame).SerializeToString(), wrapper)
    assert decoded == frame
    assert decoded.WhichOneof("body") == "batch"


@pytest.mark.parametrize("raw", [b"", lpb.ConnectRequest(frame=lpb.Frame()).SerializeToString(), b"\xff\xff"])
def test_decode_frame_refuses_frames_without_body(raw: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_frame(raw, lpb.ConnectRequest)
    assert info.value.reason == "malformed_frame"


def test_oversized_frame_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_frame(b"\x00" * (MAX_FRAME_BYTES + 1), lpb.ConnectRequest)
    assert info.value.reason == "frame_too_large"
    # A well-formed frame over the limit is refused too, before parsing.
    big = epb.Envelope(header=b"h", payload=b"p" * MAX_FRAME_BYTES, seal="s")
    raw = lpb.ConnectResponse(frame=lpb.Frame(batch=lpb.EnvelopeBatch(seq=1, envelopes=[big]))).SerializeToString()
    with pytest.raises(InvalidInput) as info:
        decode_frame(raw, lpb.ConnectResponse)
    assert info.value.reason == "frame_too_large"


@settings(max_examples=300)
@given(raw=st.binary(max_size=300), child=st.booleans())
def test_decode_frame_on_arbitrary_bytes(raw: bytes, child: bool) -> None:
    wrapper = lpb.ConnectRequest if child else lpb.ConnectResponse
    try:
        frame = decode_frame(raw, wrapper)
    except InvalidInput as exc:
        assert exc.reason in {"malformed_frame", "frame_too_large"}
        return
    assert isinstance(frame, lpb.Frame)
    assert frame.WhichOneof("body") is not None
