"""A hostile federation peer, driven by hand, for the attack tests.

It speaks the real link protocol over the real pinned-TLS channel (``secure_channel``), but frame
by frame, so a test can do what a real node never would: seal with the wrong key, claim another
court's origin, send directives upward, send oversized or garbage bytes. Requests and responses
travel as raw bytes (no generated serializer on either side), exactly as ``LinkServer`` reads them.

* :class:`Identity` — an enrolled court's credentials read from its home (key, certificate,
  pinned parent certificate, parent address), or a court certified offline by such an identity.
* :class:`RogueLink` — one ``Connect`` stream: ``handshake``, ``send``/``send_raw``,
  ``send_batch`` (returns the Ack or the LinkError), ``until`` (reads past announcements,
  heartbeats and batches to the frame a test waits for).
* :func:`enroll_raw` — an ``Enroll`` call with a request the real ``join`` would refuse to send.
* :func:`envelope` — a correctly sealed envelope from any key, as a starting point for forgeries.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from hub.codes import CourtCode
from hub.config import Home
from hub.federation.client import channel_options, secure_channel
from hub.federation.envelope import Target, build
from hub.federation.interceptors import reason_of
from hub.federation.link import MIN_PROTOCOL_VERSION, PROTOCOL_VERSION
from hub.federation.server import SERVICE, auth_content
from hub.keys import CourtKey
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.seal import seal
from hub.store.schema import certificates
from hub.trust import issue_certificate

CONNECT = f"/{SERVICE}/Connect"
ENROLL = f"/{SERVICE}/Enroll"


class LinkEnded(AssertionError):
    """The parent ended the stream (or gRPC aborted it) before the frame the test waited for."""


@dataclass(frozen=True)
class Identity:
    """What a court needs to dial its parent: its key and certificate, and the parent's pin."""

    court: CourtCode
    key: CourtKey
    certificate: str
    parent: CourtCode
    address: str
    parent_pem: bytes

    @classmethod
    def from_home(cls, path: Path) -> Identity:
        """The credentials of an enrolled node, read from its home directory and its store."""
        home = Home(path)
        config = home.load()
        if config.parent is None:
            raise ValueError(f"{path} is not enrolled under a parent")
        engine = create_engine(home.store_url(config), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                mine = select(certificates.c.token).where(certificates.c.court == config.node.court)
                row = conn.execute(mine).first()
        finally:
            engine.dispose()
        if row is None:
            raise ValueError(f"{path} holds no certificate of its own court")
        return cls(
            court=config.court,
            key=CourtKey.load(home.court_key),
            certificate=str(row[0]),
            parent=CourtCode.parse(config.parent.court),
            address=config.parent.address,
            parent_pem=home.parent_cert.read_bytes(),
        )

    def certify(self, court: str, name: str = "伪造的基层法院") -> tuple[CourtKey, str]:
        """A new key for ``court`` (below this one) and its certificate, signed offline by this court."""
        key = CourtKey.generate()
        cert = issue_certificate(
            self.key, self.court, CourtCode.parse(court), name, key.public_raw, int(time.time() * 1000)
        )
        return key, cert


def envelope(
    key: CourtKey,
    origin: str,
    kind: str,
    target: Target,
    payload: Message,
) -> epb.Envelope:
    """An envelope sealed by ``key`` under the name ``origin`` (the right key, or not)."""
    return build(key, CourtCode.parse(origin), kind, target, payload, now_ms=int(time.time() * 1000))


def header_of(env: epb.Envelope) -> epb.EnvelopeHeader:
    header = epb.EnvelopeHeader()
    header.ParseFromString(env.header)
    return header


class RogueLink:
    """One Connect stream to a parent's link server, frame by frame."""

    def __init__(self, address: str, parent_pem: bytes, *, max_send_bytes: int = 0) -> None:
        """``max_send_bytes`` lifts the client's own send limit (default: a real node's)."""
        self.address = address
        self.parent_pem = parent_pem
        self.max_send_bytes = max_send_bytes
        self._channel: Any = None
        self._call: Any = None

    async def __aenter__(self) -> RogueLink:
        if self.max_send_bytes:
            options = [o for o in channel_options() if o[0] != "grpc.max_send_message_length"]
            options.append(("grpc.max_send_message_length", self.max_send_bytes))
            creds = grpc.ssl_channel_credentials(root_certificates=self.parent_pem)
            self._channel = grpc.aio.secure_channel(self.address, creds, options=options)
        else:
            self._channel = secure_channel(self.address, self.parent_pem)
        self._call = self._channel.stream_stream(CONNECT, request_serializer=None, response_deserializer=None)()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._channel is not None:
            await self._channel.close()

    # -- sending --------------------------------------------------------------------------------
    async def send_raw(self, raw: bytes) -> None:
        try:
            await self._call.write(raw)
        except grpc.aio.AioRpcError as exc:
            raise LinkEnded(f"the stream failed while sending: {exc.code().name}: {exc.details()}") from None

    async def send(self, frame: lpb.Frame) -> None:
        await self.send_raw(lpb.ConnectRequest(frame=frame).SerializeToString())

    async def send_batch(self, envelopes: list[epb.Envelope], seq: int = 1, wait_s: float = 15) -> lpb.Frame:
        """Send one batch; returns the parent's Ack for it, or the LinkError that ended the link."""
        await self.send(lpb.Frame(batch=lpb.EnvelopeBatch(seq=seq, envelopes=envelopes)))
        while True:
            frame = await self.until("ack", wait_s=wait_s)
            if frame.WhichOneof("body") == "error" or frame.ack.seq == seq:
                return frame

    # -- receiving ------------------------------------------------------------------------------
    async def receive(self, wait_s: float = 15) -> lpb.Frame | None:
        """The next frame from the parent, or None when it ended the stream normally."""
        try:
            raw = await asyncio.wait_for(self._call.read(), wait_s)
        except grpc.aio.AioRpcError as exc:
            raise LinkEnded(
                f"the parent aborted the stream with gRPC status {exc.code().name}: {exc.details()} "
                "(no LinkError frame)"
            ) from None
        if raw is grpc.aio.EOF:
            return None
        response = lpb.ConnectResponse()
        response.ParseFromString(raw)
        return response.frame

    async def until(self, *bodies: str, wait_s: float = 15) -> lpb.Frame:
        """Read frames until one whose body is in ``bodies`` or a LinkError; skip the rest."""
        deadline = time.monotonic() + wait_s
        while True:
            frame = await self.receive(max(0.1, deadline - time.monotonic()))
            if frame is None:
                raise LinkEnded(f"the parent ended the stream while the test waited for {bodies}")
            body = frame.WhichOneof("body")
            if body == "error" or body in bodies:
                return frame

    async def end(self, wait_s: float = 15) -> list[lpb.Frame]:
        """Everything the parent still sends until it ends the stream."""
        frames: list[lpb.Frame] = []
        while (frame := await self.receive(wait_s)) is not None:
            frames.append(frame)
        return frames

    # -- the handshake --------------------------------------------------------------------------
    async def handshake(self, me: Identity, *, key: CourtKey | None = None) -> lpb.Frame:
        """Hello → Challenge → Auth (signed with ``key``, default ``me.key``); returns the parent's
        Welcome, or the LinkError by which it refused the link."""
        await self.send(
            lpb.Frame(
                hello=lpb.Hello(
                    court=str(me.court),
                    protocol_version=PROTOCOL_VERSION,
                    min_protocol_version=MIN_PROTOCOL_VERSION,
                    certificate=me.certificate,
                )
            )
        )
        challenge = await self.until("challenge")
        if challenge.WhichOneof("body") == "error":
            return challenge
        content = auth_content(challenge.challenge.nonce, me.parent, me.court)
        await self.send(lpb.Frame(auth=lpb.Auth(signature=seal(key or me.key, str(me.court), content))))
        return await self.until("welcome")


@contextlib.asynccontextmanager
async def connected(me: Identity) -> AsyncIterator[RogueLink]:
    """A link authenticated as ``me`` (asserts the parent welcomed it)."""
    async with RogueLink(me.address, me.parent_pem) as link:
        answer = await link.handshake(me)
        assert answer.WhichOneof("body") == "welcome", f"parent refused {me.court}: {answer.error}"
        yield link


async def enroll_raw(address: str, parent_pem: bytes, request: lpb.EnrollRequest | bytes) -> tuple[str, str]:
    """Call Enroll directly (a request, or raw bytes); returns (reason, details) of the refusal,
    or ("", "") on success."""
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    async with secure_channel(address, parent_pem) as channel:
        call = channel.unary_unary(ENROLL, request_serializer=None, response_deserializer=None)
        try:
            await call(raw, timeout=15)
        except grpc.aio.AioRpcError as exc:
            return reason_of(exc), str(exc.details())
    return "", ""
