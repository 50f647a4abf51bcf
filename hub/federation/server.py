"""The parent side of links: the LinkService (Connect handshake, Enroll).

Connect takes raw bytes (no generated deserializer) so that every frame — including garbage and
oversized ones — reaches ``decode_frame``, which refuses it with a clear error that is audited.
gRPC's own receive limit is set to four times the application limit: a frame beyond *that* is
dropped by the transport (RESOURCE_EXHAUSTED to the sender) without the handler ever seeing it, so
it leaves only a ``handshake_incomplete``/``link_closed`` entry rather than ``frame_too_large``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import DecodeError

from hub.backup import SKEW_MARGIN_MS
from hub.codes import CourtCode
from hub.errors import CourtHubError, InvalidCode, InvalidInput, TrustError
from hub.federation.link import MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, LinkSession, decode_frame
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.seal import seal, verify
from hub.trust import CourtCertificate

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT_S = 10.0
SERVICE = "courthub.v1.LinkService"


def auth_content(nonce: bytes, parent: CourtCode, child: CourtCode) -> bytes:
    """What the child signs to prove it holds its certified key, bound to this link."""
    return b"courthub-link-auth\x00" + nonce + str(parent).encode() + b"\x00" + str(child).encode()


class LinkServer:
    def __init__(self, node: Node) -> None:
        self.node = node

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Connect": grpc.stream_stream_rpc_method_handler(
                    self.connect, request_deserializer=None, response_serializer=lpb.ConnectResponse.SerializeToString
                ),
                "Enroll": grpc.unary_unary_rpc_method_handler(
                    self.enroll, request_deserializer=None, response_serializer=lpb.EnrollResponse.SerializeToString
                ),
            },
        )

    # -- Enroll --------------------------------------------------------------------------------
    async def enroll(self, raw: bytes, context: grpc.aio.ServicerContext) -> lpb.EnrollResponse:
        claimed = ""
        try:
            try:
                req = lpb.EnrollRequest.FromString(raw)
            except DecodeError:
                raise InvalidInput("enroll request is not a valid EnrollRequest", reason="malformed_frame") from None
            claimed = req.court
            return await self.node.enroll_child(req)
        except CourtHubError as exc:
            await self.node.audit_event(
                "enroll_refused",
                _court_or_none(claimed),
                exc.reason,
                exc.message,
                address=context.peer(),
                claimed=claimed,
            )
            raise

    # -- Connect -------------------------------------------------------------------------------
    async def connect(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        node = self.node
        peer = context.peer()

        async def send(frame: lpb.Frame) -> None:
            await context.write(lpb.ConnectResponse(frame=frame))

        frames = _decoded(requests)
        try:
            child, asked = await asyncio.wait_for(self._handshake(frames, send), HANDSHAKE_TIMEOUT_S)
        except (CourtHubError, TimeoutError, StopAsyncIteration) as exc:
            if isinstance(exc, CourtHubError):
                reason, message = exc.reason, exc.message
            elif isinstance(exc, TimeoutError):
                reason, message = "handshake_timeout", "no complete handshake in time"
            else:
                reason, message = "handshake_incomplete", "the stream ended before the handshake completed"
            await node.audit_event("link_refused", None, reason, message, address=peer)
            await _try_send(send, lpb.Frame(error=lpb.LinkError(reason=reason, message=message)))
            return
        except Exception:
            # Never tell an unauthenticated peer about our internals; the log has the details.
            log.exception("link handshake from %s failed", peer)
            await _try_send(send, lpb.Frame(error=lpb.LinkError(reason="internal", message="internal error")))
            return
        session = LinkSession(node, child, True, send, node.clock.now_ms)
        node.attach(session)
        try:
            await session.run(_resync_done(frames, node, str(child)) if asked else frames)
        except CourtHubError as exc:
            await node.audit_event("link_closed", str(child), exc.reason, exc.message, address=peer)
            await _try_send(send, lpb.Frame(error=lpb.LinkError(reason=exc.reason, message=exc.message)))
        except Exception:
            log.exception("link with %s failed", child)
            await _try_send(send, lpb.Frame(error=lpb.LinkError(reason="internal", message="internal error")))
        finally:
            node.detach(session)

    async def _handshake(self, frames: AsyncIterator[lpb.Frame], send: object) -> tuple[CourtCode, bool]:
        node = self.node
        first = await anext(frames)
        if first.WhichOneof("body") != "hello":
            raise InvalidInput("the first frame on a link must be hello", reason="protocol_error")
        hello = first.hello
        if hello.protocol_version < MIN_PROTOCOL_VERSION or hello.min_protocol_version > PROTOCOL_VERSION:
            raise InvalidInput(
                f"child speaks link protocol {hello.min_protocol_version}..{hello.protocol_version}; "
                f"this node speaks {MIN_PROTOCOL_VERSION}..{PROTOCOL_VERSION}",
                reason="version_unsupported",
            )
        try:
            child = CourtCode.parse(hello.court)
        except InvalidCode as exc:
            raise InvalidInput(f"hello: {exc}", reason="protocol_error") from None
        if child not in node.router.children:
            raise TrustError(f"{child} is not enrolled under {node.me}", reason="not_enrolled")
        cert = CourtCertificate.parse(hello.certificate)
        if cert.court != child:
            raise TrustError(f"hello from {child} carries the certificate of {cert.court}", reason="bad_certificate")
        known = node.trust.certificate(child)
        if known is None or known.token != cert.token:
            raise TrustError(f"{child} presented a certificate this node did not issue", reason="bad_certificate")
        public = node.trust.public_key(child)  # raises when revoked or expired
        nonce = os.urandom(32)
        version = min(PROTOCOL_VERSION, hello.protocol_version)
        assert callable(send)
        await send(lpb.Frame(challenge=lpb.Challenge(nonce=nonce, court=str(node.me), protocol_version=version)))
        reply = await anext(frames)
        if reply.WhichOneof("body") != "auth":
            raise InvalidInput("expected auth after challenge", reason="protocol_error")
        verify(reply.auth.signature, auth_content(nonce, node.me, child), public, kid=str(child))
        asked = 0
        if version >= 2:
            if hello.resend_since_ms < 0:
                raise InvalidInput("hello: resend_since_ms must not be negative", reason="protocol_error")
            if hello.resend_since_ms:
                # The child was restored from a backup: resend what it lost before the link runs.
                n = await node.store.write(node.exchange.resend_since(child, hello.resend_since_ms, SKEW_MARGIN_MS))
                log.warning("%s was restored from a backup: resending %d envelopes delivered since then", child, n)
            asked = node.resync.since_for(str(child))
        elif node.resync.since_for(str(child)):
            log.warning("%s speaks link protocol %d: it cannot resend what this restored node lost", child, version)
        welcome = lpb.Welcome(court=str(node.me), protocol_version=version, resend_since_ms=asked)
        await send(lpb.Frame(welcome=welcome))
        return child, bool(asked)


def _court_or_none(text: str) -> str | None:
    """A claimed court code fit for the audit's court column, or None if it is not one."""
    try:
        return str(CourtCode.parse(text))
    except InvalidCode:
        return None


async def _try_send(send: Callable[[lpb.Frame], Awaitable[None]], frame: lpb.Frame) -> None:
    """Best effort: the peer may already be gone."""
    with contextlib.suppress(Exception):
        await send(frame)


async def _resync_done(frames: AsyncIterator[lpb.Frame], node: Node, child: str) -> AsyncIterator[lpb.Frame]:
    """Pass frames through; the first one proves the child processed the Welcome (and so reset
    what it had delivered to this restored node): only then is it crossed off the marker."""
    first = True
    async for frame in frames:
        if first:
            node.resync.done(child)
            first = False
        yield frame


async def _decoded(requests: AsyncIterator[bytes]) -> AsyncIterator[lpb.Frame]:
    async for raw in requests:
        yield decode_frame(raw, lpb.ConnectRequest)


def sign_auth(node_key: object, nonce: bytes, parent: CourtCode, child: CourtCode) -> str:
    from hub.keys import CourtKey

    assert isinstance(node_key, CourtKey)
    return seal(node_key, str(child), auth_content(nonce, parent, child))
