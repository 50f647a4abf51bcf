"""Build, seal and validate envelopes.

``build`` is used by the origin only. ``open_envelope`` is what every receiver runs on bytes from
a link before trusting anything in them: it parses the header, checks every field (naming the one
that is wrong), and checks the payload digest. Seal verification needs the origin's key and is
done by the caller (``exchange``), off the event loop.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache

from google.protobuf.message import DecodeError, Message

from hub.codes import CaseNumber, CourtCode
from hub.errors import InvalidCode, InvalidInput
from hub.federation import kinds
from hub.keys import CourtKey
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.seal import seal

MAX_HEADER_BYTES = 4096
MAX_PAYLOAD_BYTES = 1 << 20
_ID = re.compile(r"^[0-9a-f]{32}$")
_CAPABILITY = re.compile(r"^[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,31}$")


class EnvelopeError(InvalidInput):
    """An envelope from a link is malformed; ``reason`` says which check failed."""

    reason = "malformed_envelope"


@dataclass(frozen=True)
class Target:
    """A parsed destination."""

    mode: str  # court | subtree | capability
    court: CourtCode | None = None
    capability: str = ""

    @classmethod
    def to_court(cls, court: CourtCode) -> Target:
        return cls("court", court=court)

    @classmethod
    def to_subtree(cls, court: CourtCode) -> Target:
        return cls("subtree", court=court)

    @classmethod
    def to_capability(cls, capability: str) -> Target:
        if not _CAPABILITY.match(capability):
            raise InvalidInput(f"capability {capability!r} must look like 'bank.inquiry'")
        return cls("capability", capability=capability)

    def to_proto(self) -> epb.Destination:
        if self.mode == "court":
            return epb.Destination(court=str(self.court))
        if self.mode == "subtree":
            return epb.Destination(subtree=str(self.court))
        return epb.Destination(capability=self.capability)

    def __str__(self) -> str:
        if self.mode == "capability":
            return f"capability:{self.capability}"
        return f"{self.mode}:{self.court}"


@dataclass(frozen=True)
class Opened:
    """A structurally valid envelope (seal not yet checked)."""

    envelope: epb.Envelope
    header: epb.EnvelopeHeader
    spec: kinds.KindSpec
    origin: CourtCode
    target: Target

    @property
    def id(self) -> str:
        return self.header.id

    @property
    def kind(self) -> str:
        return self.header.kind

    def payload(self) -> Message:
        msg = self.spec.payload()
        try:
            msg.ParseFromString(self.envelope.payload)
        except DecodeError:
            raise EnvelopeError(f"envelope {self.id}: payload is not a valid {self.spec.name} message") from None
        return msg

    def raw(self) -> bytes:
        return self.envelope.SerializeToString()


@lru_cache(maxsize=8192)
def _court(text: str) -> CourtCode:
    """Court codes repeat endlessly on a link; parse each distinct one once."""
    return CourtCode.parse(text)


def new_id() -> str:
    return uuid.uuid4().hex


def build(
    key: CourtKey,
    origin: CourtCode,
    kind: str,
    target: Target,
    payload: Message,
    *,
    now_ms: int,
    correlation_id: str = "",
    case_number: str = "",
    envelope_id: str | None = None,
) -> epb.Envelope:
    spec = kinds.get(kind)
    if spec is None or not isinstance(payload, spec.payload):
        raise InvalidInput(f"unknown envelope kind {kind!r} or wrong payload type")
    body = payload.SerializeToString()
    header = epb.EnvelopeHeader(
        id=envelope_id or new_id(),
        kind=kind,
        origin=str(origin),
        destination=target.to_proto(),
        correlation_id=correlation_id,
        created_at_ms=now_ms,
        case_number=case_number,
        payload_sha256=hashlib.sha256(body).digest(),
        schema_version=1,
    )
    header_bytes = header.SerializeToString()
    return epb.Envelope(header=header_bytes, payload=body, seal=seal(key, str(origin), header_bytes))


def _target(dest: epb.Destination, eid: str) -> Target:
    which = dest.WhichOneof("target")
    try:
        if which == "court":
            return Target.to_court(_court(dest.court))
        if which == "subtree":
            return Target.to_subtree(_court(dest.subtree))
        if which == "capability":
            return Target.to_capability(dest.capability)
    except InvalidInput as exc:
        raise EnvelopeError(f"envelope {eid}: destination: {exc}", reason="bad_destination") from None
    raise EnvelopeError(f"envelope {eid}: no destination", reason="bad_destination")


def open_envelope(envelope: epb.Envelope) -> Opened:
    """Validate an envelope's structure; raises EnvelopeError naming what is wrong."""
    if len(envelope.header) > MAX_HEADER_BYTES:
        raise EnvelopeError(
            f"envelope header is {len(envelope.header)} bytes; limit {MAX_HEADER_BYTES}", reason="too_large"
        )
    if len(envelope.payload) > MAX_PAYLOAD_BYTES:
        raise EnvelopeError(
            f"envelope payload is {len(envelope.payload)} bytes; limit {MAX_PAYLOAD_BYTES}", reason="too_large"
        )
    header = epb.EnvelopeHeader()
    try:
        header.ParseFromString(envelope.header)
    except DecodeError:
        raise EnvelopeError("envelope header is not a valid EnvelopeHeader message") from None
    eid = header.id
    if not _ID.match(eid):
        raise EnvelopeError(f"envelope id {eid[:40]!r} is not 32 lowercase hex digits")
    spec = kinds.get(header.kind) or kinds.unknown(header.kind)
    if spec is None:
        raise EnvelopeError(f"envelope {eid}: kind {header.kind[:40]!r} is not a kind name", reason="bad_kind")
    try:
        origin = _court(header.origin)
    except InvalidCode as exc:
        raise EnvelopeError(f"envelope {eid}: origin: {exc}") from None
    if header.created_at_ms <= 0:
        raise EnvelopeError(f"envelope {eid}: created_at_ms must be positive")
    if header.case_number:
        try:
            CaseNumber.parse(header.case_number)
        except InvalidCode as exc:
            raise EnvelopeError(f"envelope {eid}: case number: {exc}") from None
    if header.correlation_id and not _ID.match(header.correlation_id):
        raise EnvelopeError(f"envelope {eid}: correlation id is not 32 lowercase hex digits")
    if hashlib.sha256(envelope.payload).digest() != header.payload_sha256:
        raise EnvelopeError(f"envelope {eid}: payload does not match its SHA-256 in the header", reason="bad_digest")
    if not envelope.seal:
        raise EnvelopeError(f"envelope {eid}: no seal", reason="bad_seal")
    return Opened(envelope, header, spec, origin, _target(header.destination, eid))
