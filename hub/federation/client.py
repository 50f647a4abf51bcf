"""The child side of a link: dial the parent over pinned TLS, authenticate, run the session,
and redial with capped exponential backoff (with jitter) whenever the link drops."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from hub.backup import SKEW_MARGIN_MS
from hub.codes import CourtCode
from hub.errors import CourtHubError, InvalidInput, TrustError
from hub.federation.link import MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, LinkSession, decode_frame
from hub.federation.server import HANDSHAKE_TIMEOUT_S, SERVICE, auth_content
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.seal import seal
from hub.tls import LINK_TLS_NAME

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)


def channel_options() -> list[tuple[str, object]]:
    return [
        ("grpc.ssl_target_name_override", LINK_TLS_NAME),
        ("grpc.max_receive_message_length", 2 * MAX_FRAME_BYTES),
        ("grpc.max_send_message_length", 2 * MAX_FRAME_BYTES),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def secure_channel(address: str, parent_pem: bytes) -> grpc.aio.Channel:
    """A channel that trusts exactly the pinned parent certificate."""
    creds = grpc.ssl_channel_credentials(root_certificates=parent_pem)
    return grpc.aio.secure_channel(address, creds, options=channel_options())


class ParentLink:
    def __init__(self, node: Node, parent: CourtCode, address: str, parent_pem: bytes, max_backoff_s: float) -> None:
        self.node = node
        self.parent = parent
        self.address = address
        self.parent_pem = parent_pem
        self.max_backoff_s = max_backoff_s
        self.state = "connecting"
        self.last_error = ""
        self.connects = 0

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._once()
                backoff = 0.2
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the node is stopping
                # grpc.aio raises CancelledError from a call it cancelled itself (its stream
                # cancelled under a read or write): that ends this link, never the redial loop.
                self.last_error = "the link's call was cancelled"
                log.info("link to %s down: %s", self.parent, self.last_error)
            except (CourtHubError, grpc.aio.AioRpcError, OSError, StopAsyncIteration) as exc:
                self.last_error = _describe(exc)
                log.info("link to %s down: %s", self.parent, self.last_error)
            except Exception as exc:
                # A bug must not end the link for good: log it in full and redial.
                self.last_error = f"internal error: {type(exc).__name__}"
                log.exception("link to %s failed", self.parent)
            self.state = "down"
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.max_backoff_s)

    async def _once(self) -> None:
        node = self.node
        cert = node.trust.certificate(node.me)
        if cert is None:
            raise TrustError(f"{node.me} has no court certificate; run `court-hub join`")
        self.state = "connecting"
        async with secure_channel(self.address, self.parent_pem) as channel:
            call = channel.stream_stream(
                f"/{SERVICE}/Connect",
                request_serializer=lpb.ConnectRequest.SerializeToString,
                response_deserializer=None,
            )()

            async def send(frame: lpb.Frame) -> None:
                await call.write(lpb.ConnectRequest(frame=frame))

            frames = _decoded(call)
            await send(
                lpb.Frame(
                    hello=lpb.Hello(
                        court=str(node.me),
                        protocol_version=PROTOCOL_VERSION,
                        min_protocol_version=MIN_PROTOCOL_VERSION,
                        certificate=cert.token,
                        resend_since_ms=node.resync.since_for(str(self.parent)),
                    )
                )
            )
            challenge = await asyncio.wait_for(anext(frames), HANDSHAKE_TIMEOUT_S)
            _expect(challenge, "challenge")
            if challenge.challenge.court != str(self.parent):
                raise TrustError(f"expected parent {self.parent}, the link answered as {challenge.challenge.court}")
            version = _check_version(challenge.challenge.protocol_version)
            signature = seal(node.key, str(node.me), auth_content(challenge.challenge.nonce, self.parent, node.me))
            await send(lpb.Frame(auth=lpb.Auth(signature=signature)))
            welcome = await asyncio.wait_for(anext(frames), HANDSHAKE_TIMEOUT_S)
            _expect(welcome, "welcome")
            if version >= 2:
                # The parent reset what it had delivered to this restored node before welcoming it.
                node.resync.done(str(self.parent))
                if welcome.welcome.resend_since_ms < 0:
                    raise InvalidInput("welcome: resend_since_ms must not be negative", reason="protocol_error")
                if welcome.welcome.resend_since_ms:
                    n = await node.store.write(
                        node.exchange.resend_since(self.parent, welcome.welcome.resend_since_ms, SKEW_MARGIN_MS)
                    )
                    log.warning("%s was restored from a backup: resending %d envelopes delivered since", self.parent, n)
            self.state = "up"
            self.connects += 1
            self.last_error = ""
            session = LinkSession(node, self.parent, False, send, node.clock.now_ms)
            node.attach(session)
            try:
                await session.run(frames)
            finally:
                node.detach(session)
                call.cancel()


def _check_version(version: int) -> int:
    if not MIN_PROTOCOL_VERSION <= version <= PROTOCOL_VERSION:
        raise InvalidInput(
            f"parent chose link protocol {version}; this node speaks {MIN_PROTOCOL_VERSION}..{PROTOCOL_VERSION}",
            reason="version_unsupported",
        )
    return version


def _expect(frame: lpb.Frame, body: str) -> None:
    got = frame.WhichOneof("body")
    if got == "error":
        raise CourtHubError(
            f"parent refused the link: {frame.error.reason}: {frame.error.message}", reason=frame.error.reason
        )
    if got != body:
        raise InvalidInput(f"expected {body} from parent, got {got}", reason="protocol_error")


async def _decoded(call: AsyncIterator[bytes]) -> AsyncIterator[lpb.Frame]:
    async for raw in call:
        yield decode_frame(raw, lpb.ConnectResponse)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, StopAsyncIteration):
        return "parent closed the stream"
    if isinstance(exc, TimeoutError):
        return "the parent did not complete the handshake in time"
    return str(exc)
