"""One authenticated link session between a node and a neighbour (parent or child).

Both ends run the same session once the handshake is done:

* **pump** — reads pending outbox rows for this neighbour in id order, packs them into batches (one
  gRPC message, one ack each) and keeps up to ``WINDOW`` batches in flight. On reconnect the
  session starts from the first pending row again, so everything unacked is resent in order.
* **receive pipeline** — each incoming batch is checked (structure, link authority, seals) in a
  worker thread while earlier batches commit; commits are submitted in order to the store's writer
  (which groups them) and acks go out in order, each only after its batch is committed.
* **announcements** — routes, certificates and revocations, sent on start and whenever they change.
* **heartbeats** — both ways; a silent link is closed and the child redials.
* **rate limit** — on a parent, each child's received envelopes pass a token bucket
  (``[federation] child_rate_per_s``/``child_burst``); when it is empty the reader pauses, so
  HTTP/2 flow control pushes back on a flooding child while the other links are served as usual.
  Nothing is dropped; the paused time is counted (``LinkStats.throttled_s``, metric
  ``courthub_link_throttled_seconds_total``).

Every frame read is size-checked and decoded here; a frame that is garbage or too large is an
audit entry and a LinkError, then the link closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.protobuf.message import DecodeError
from sqlalchemy import Connection, select

from hub.codes import CourtCode
from hub.config import Config
from hub.errors import CourtHubError, InvalidInput, StoreError
from hub.federation.exchange import Accepted, Exchange
from hub.federation.ratelimit import TokenBucket
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.store import Store
from hub.store.schema import outbox

log = logging.getLogger(__name__)

# Link protocol versions (negotiated in the hello: the lower of both maxima, refused below the
# minimum). 2 adds resend-after-restore (Hello/Welcome.resend_since_ms, hub.backup).
PROTOCOL_VERSION = 2
MIN_PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 4 << 20
WINDOW = 8
BATCH_MAX_ENVELOPES = 256
BATCH_MAX_BYTES = 1 << 20
HEARTBEAT_S = 5.0
SILENCE_S = 20.0
POLL_S = 1.0
# Batches up to this many envelopes are checked on the event loop; larger ones in worker threads.
INLINE_CHECK_MAX = 4


class LinkClosed(CourtHubError):
    reason = "link_closed"


class LinkHost(Protocol):
    """What a session needs from its node."""

    me: CourtCode
    config: Config
    store: Store
    exchange: Exchange
    cpu: Executor

    def announcement(self, peer: CourtCode, to_child: bool) -> lpb.Announce: ...

    async def apply_announcement(self, peer: CourtCode, from_child: bool, announce: lpb.Announce) -> None: ...

    def audit_link_event(self, action: str, peer: str, reason: str, message: str, raw: bytes | None = None) -> None: ...

    def count_sent(self, peer: CourtCode, n: int) -> None: ...

    def count_received(self, peer: CourtCode, new: int, duplicates: int, rejected: list[str]) -> None: ...

    def count_throttled(self, peer: CourtCode, seconds: float) -> None: ...


def decode_frame(raw: bytes, wrapper: type[lpb.ConnectRequest] | type[lpb.ConnectResponse]) -> lpb.Frame:
    """Decode one frame from a link, refusing oversized and malformed input."""
    if len(raw) > MAX_FRAME_BYTES:
        raise InvalidInput(
            f"frame of {len(raw)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit", reason="frame_too_large"
        )
    msg = wrapper()
    try:
        msg.ParseFromString(raw)
    except DecodeError:
        raise InvalidInput(
            f"frame of {len(raw)} bytes is not a valid {wrapper.__name__}", reason="malformed_frame"
        ) from None
    if not msg.HasField("frame") or msg.frame.WhichOneof("body") is None:
        raise InvalidInput("frame has no body", reason="malformed_frame")
    return msg.frame


@dataclass
class LinkStats:
    batches_sent: int = 0
    envelopes_sent: int = 0
    batches_received: int = 0
    envelopes_received: int = 0
    duplicates: int = 0
    rejected: int = 0
    last_heard_ms: int = 0
    connected_at_ms: int = 0
    # Reads paused by the rate limit: total seconds and how many batches had to wait.
    throttled_s: float = 0.0
    throttled_batches: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class LinkSession:
    def __init__(
        self,
        host: LinkHost,
        peer: CourtCode,
        peer_is_child: bool,
        send: Callable[[lpb.Frame], Awaitable[None]],
        now_ms: Callable[[], int],
    ) -> None:
        self.host = host
        self.peer = peer
        self.peer_is_child = peer_is_child
        self._send = send
        self._now_ms = now_ms
        self._out: asyncio.Queue[lpb.Frame] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._window = asyncio.Semaphore(WINDOW)
        self._inflight: dict[int, list[int]] = {}
        self._seq = 0
        self._checking: asyncio.Queue[tuple[int, asyncio.Future[Any]]] = asyncio.Queue()
        self._committing: asyncio.Queue[tuple[int, asyncio.Future[Accepted]]] = asyncio.Queue()
        self._closed = asyncio.Event()
        self.stats = LinkStats(connected_at_ms=now_ms(), last_heard_ms=now_ms())
        federation = host.config.federation
        # Only what children send is limited: a parent's traffic (directives, a drained backlog)
        # comes from the node this one answers to.
        rate = federation.child_rate_per_s if peer_is_child else 0.0
        self.limiter = TokenBucket(rate, federation.child_burst)
        self._paused = False

    def kick(self) -> None:
        """New outbox rows for this neighbour were committed."""
        self._wake.set()

    def send_announcement(self) -> None:
        self._out.put_nowait(lpb.Frame(announce=self.host.announcement(self.peer, self.peer_is_child)))

    def close(self) -> None:
        self._closed.set()

    async def run(self, frames: AsyncIterator[lpb.Frame]) -> None:
        """Serve the link until the stream ends, the peer falls silent or ``close`` is called."""
        self.send_announcement()
        tasks = [
            asyncio.create_task(self._writer(), name=f"link-writer-{self.peer}"),
            asyncio.create_task(self._pump(), name=f"link-pump-{self.peer}"),
            asyncio.create_task(self._verify_stage(), name=f"link-verify-{self.peer}"),
            asyncio.create_task(self._ack_stage(), name=f"link-ack-{self.peer}"),
            asyncio.create_task(self._heartbeat(), name=f"link-heartbeat-{self.peer}"),
            asyncio.create_task(self._read(frames), name=f"link-read-{self.peer}"),
            asyncio.create_task(self._closed.wait(), name=f"link-closed-{self.peer}"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._abandon_pipeline()

    def _abandon_pipeline(self) -> None:
        """Batches still being checked or committed when the link ends are not acked (the peer
        resends them); retrieve their outcomes so a failed commit is not reported again as an
        unretrieved future exception."""
        for queue in (self._checking, self._committing):
            while not queue.empty():
                _seq, future = queue.get_nowait()
                future.add_done_callback(_retrieve)

    async def _writer(self) -> None:
        while True:
            frame = await self._out.get()
            await self._send(frame)

    async def _read(self, frames: AsyncIterator[lpb.Frame]) -> None:
        async for frame in frames:
            self.stats.last_heard_ms = self._now_ms()
            body = frame.WhichOneof("body")
            if body == "batch":
                await self._throttle(len(frame.batch.envelopes))
                await self._on_batch(frame.batch)
            elif body == "ack":
                self._on_ack(frame.ack)
            elif body == "announce":
                await self.host.apply_announcement(self.peer, self.peer_is_child, frame.announce)
            elif body == "heartbeat":
                pass
            elif body == "error":
                raise LinkClosed(f"{self.peer} closed the link: {frame.error.reason}: {frame.error.message}")
            else:
                raise InvalidInput(f"unexpected {body} frame after the handshake", reason="protocol_error")

    async def _throttle(self, n: int) -> None:
        """Pause reading this link until its bucket holds ``n`` tokens (backpressure, no drops)."""
        if self.limiter.unlimited or not self.limiter.wait_s(n):
            self.limiter.take(n)
            return
        self._paused = True
        try:
            waited = await self.limiter.acquire(n)
        finally:
            self._paused = False
            # The peer was not silent: this end stopped listening.
            self.stats.last_heard_ms = self._now_ms()
        self.stats.throttled_s += waited
        self.stats.throttled_batches += 1
        self.host.count_throttled(self.peer, waited)

    # -- sending ------------------------------------------------------------------------------
    async def _pump(self) -> None:
        cursor = 0
        peer = str(self.peer)
        while True:
            await self._window.acquire()
            self._wake.clear()
            # An indexed read of pooled SQLite takes ~0.1 ms: cheaper inline than a thread hand-off.
            # PostgreSQL is a network round trip, so it goes to a reader thread.
            pending = _pending(peer, cursor)
            store = self.host.store
            rows = store.read_sync(pending) if store.is_sqlite else await store.read(pending)
            if not rows:
                self._window.release()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
                continue
            cursor = rows[-1].id
            self._seq += 1
            self._inflight[self._seq] = [r.id for r in rows]
            envelopes = [epb.Envelope(header=r.header, payload=r.payload, seal=r.seal) for r in rows]
            self.stats.batches_sent += 1
            self.stats.envelopes_sent += len(envelopes)
            self.host.count_sent(self.peer, len(envelopes))
            await self._out.put(lpb.Frame(batch=lpb.EnvelopeBatch(seq=self._seq, envelopes=envelopes)))

    def _on_ack(self, ack: lpb.Ack) -> None:
        ids = self._inflight.pop(ack.seq, None)
        if ids is None:
            raise InvalidInput(f"ack for unknown batch {ack.seq}", reason="protocol_error")
        rejections = {r.envelope_id: (r.reason, r.message) for r in ack.rejections}
        future = self.host.store.submit(self.host.exchange.mark_acked(ids, rejections, self.peer))
        future.add_done_callback(_log_failure)
        self._window.release()

    # -- receiving ----------------------------------------------------------------------------
    async def _on_batch(self, batch: lpb.EnvelopeBatch) -> None:
        loop = asyncio.get_running_loop()
        self.stats.batches_received += 1
        self.stats.envelopes_received += len(batch.envelopes)
        check = self.host.exchange.check
        envelopes = list(batch.envelopes)
        future: asyncio.Future[Any]
        if len(envelopes) <= INLINE_CHECK_MAX:
            # A few seals verify in well under a millisecond; a thread hand-off would cost more.
            future = loop.create_future()
            future.set_result(check(envelopes, self.peer, self.peer_is_child))
        else:
            future = loop.run_in_executor(self.host.cpu, check, envelopes, self.peer, self.peer_is_child)
        await self._checking.put((batch.seq, future))

    async def _verify_stage(self) -> None:
        exchange, store = self.host.exchange, self.host.store
        while True:
            seq, future = await self._checking.get()
            checked = await future
            await self._committing.put((seq, store.submit(exchange.accept(checked, self.peer))))

    async def _ack_stage(self) -> None:
        while True:
            seq, future = await self._committing.get()
            try:
                result = await future
            except StoreError as exc:
                # Not committed, so not acked: the sender keeps it and resends after reconnect.
                raise LinkClosed(f"could not commit batch {seq} from {self.peer}: {exc}") from None
            self.host.exchange.accepted(result)
            self.stats.duplicates += result.duplicates
            self.stats.rejected += len(result.rejections)
            self.host.count_received(self.peer, result.new, result.duplicates, [r for _e, r, _m in result.rejections])
            ack = lpb.Ack(
                seq=seq,
                rejections=[lpb.Rejection(envelope_id=e, reason=r, message=m) for e, r, m in result.rejections],
            )
            await self._out.put(lpb.Frame(ack=ack))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            silent_ms = self._now_ms() - self.stats.last_heard_ms
            if silent_ms > SILENCE_S * 1000 and not self._paused:
                raise LinkClosed(f"{self.peer} silent for {silent_ms / 1000:.0f}s")
            await self._out.put(lpb.Frame(heartbeat=lpb.Heartbeat(sent_at_ms=self._now_ms())))


def _pending(peer: str, cursor: int) -> Callable[[Connection], list[Any]]:
    def read(conn: Connection) -> list[Any]:
        rows = conn.execute(
            select(outbox.c.id, outbox.c.header, outbox.c.payload, outbox.c.seal)
            .where(outbox.c.next_hop == peer, outbox.c.state == "pending", outbox.c.id > cursor)
            .order_by(outbox.c.id)
            .limit(BATCH_MAX_ENVELOPES)
        ).all()
        size, keep = 0, list[Any]()
        for row in rows:
            size += len(row.header) + len(row.payload) + len(row.seal)
            if keep and size > BATCH_MAX_BYTES:
                break
            keep.append(row)
        return keep

    return read


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("marking acked envelopes failed (they will be resent): %s", future.exception())
