"""Sealed round trips for diagnosis (``court-hub ping``)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from hub.codes import CourtCode
from hub.federation.envelope import Target
from hub.federation.exchange import Delivery
from hub.federation.router import path
from hub.proto.courthub.v1 import payloads_pb2 as ppb

if TYPE_CHECKING:
    from hub.node import Node


class Pinger:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._waiting: dict[str, asyncio.Future[int]] = {}
        node.exchange.handle("ping", self._on_ping, writes=False)
        node.exchange.handle("pong", self._on_pong, writes=False)

    def _on_ping(self, delivery: Delivery) -> None:
        ping = delivery.payload
        assert isinstance(ping, ppb.PingPayload)
        delivery.reply(
            "pong",
            ppb.PongPayload(
                ping_id=delivery.opened.id, ping_sent_at_ms=ping.sent_at_ms, answered_at_ms=delivery.now_ms
            ),
        )

    def _on_pong(self, delivery: Delivery) -> None:
        pong = delivery.payload
        assert isinstance(pong, ppb.PongPayload)
        future = self._waiting.get(pong.ping_id)
        if future is not None:
            loop = future.get_loop()
            answered = pong.answered_at_ms
            delivery.tx.callbacks.append(lambda: _settle_from_any_thread(loop, future, answered))

    async def ping(self, court: CourtCode, count: int, timeout_s: float) -> list[dict[str, Any]]:
        results = []
        route = [str(c) for c in path(self.node.me, court)]
        for _ in range(count):
            started = time.perf_counter()
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            payload = ppb.PingPayload(sent_at_ms=self.node.clock.now_ms())
            eid = ""
            try:
                eid, _ = await self.node.exchange.originate(
                    "ping",
                    Target.to_court(court),
                    payload,
                    extra=lambda tx, eid, f=future: self._waiting.__setitem__(eid, f),  # type: ignore[misc]
                )
                await asyncio.wait_for(future, timeout_s)
                rtt = (time.perf_counter() - started) * 1000
                results.append({"envelope_id": eid, "ok": True, "round_trip_ms": round(rtt, 2), "route": route})
            except TimeoutError:
                results.append(
                    {"envelope_id": eid, "ok": False, "error": f"no pong within {timeout_s}s", "route": route}
                )
            finally:
                self._waiting.pop(eid, None)
        return results


def _settle_from_any_thread(loop: asyncio.AbstractEventLoop, future: asyncio.Future[int], value: int) -> None:
    loop.call_soon_threadsafe(_settle, future, value)


def _settle(future: asyncio.Future[int], value: int) -> None:
    if not future.done():
        future.set_result(value)
