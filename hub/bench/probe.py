"""The node side of benchmarks: generate ``bench`` envelopes and record their one-way latency.

Registered on every node (admin socket only): ``bench.emit`` makes this node originate envelopes
in transactions of up to ``chunk``; ``bench.stats`` reports how many arrived here and their
latencies, measured after the commit that stored them.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, Any

from hub.codes import CourtCode
from hub.errors import InvalidInput
from hub.federation.envelope import Target
from hub.federation.exchange import Delivery, Tx
from hub.proto.courthub.v1 import payloads_pb2 as ppb

if TYPE_CHECKING:
    from hub.node import Node


class BenchProbe:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.received = 0
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=100_000)
        self._tasks: set[asyncio.Task[None]] = set()
        node.exchange.handle("bench", self._on_bench, writes=False)

    def _on_bench(self, delivery: Delivery) -> None:
        payload = delivery.payload
        assert isinstance(payload, ppb.BenchPayload)
        sent = payload.sent_at_us

        def arrived() -> None:
            self.received += 1
            self.latencies_ms.append((time.time_ns() // 1000 - sent) / 1000)

        delivery.tx.callbacks.append(arrived)

    async def emit(self, args: dict[str, Any]) -> dict[str, Any]:
        count, size, chunk = int(args.get("count", 1)), int(args.get("size", 1024)), int(args.get("chunk", 200))
        if not (1 <= count <= 1_000_000 and 0 <= size <= 65536 and 1 <= chunk <= 1000):
            raise InvalidInput("bench.emit: count 1–1,000,000, size 0–65,536, chunk 1–1,000")
        target = Target.to_court(CourtCode.parse(str(args["to"])))
        pad = b"\x00" * max(0, size - 16)
        task = asyncio.create_task(self._emit(target, count, chunk, pad))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if args.get("wait"):
            await task
        return {"queued": count}

    async def _emit(self, target: Target, count: int, chunk: int, pad: bytes) -> None:
        exchange = self.node.exchange
        left = count
        pending = []
        while left:
            n = min(chunk, left)
            left -= n

            def work(tx: Tx, first: str, n: int = n) -> None:
                for _ in range(n - 1):
                    exchange.emit(tx, "bench", target, ppb.BenchPayload(sent_at_us=time.time_ns() // 1000, pad=pad))

            payload = ppb.BenchPayload(sent_at_us=time.time_ns() // 1000, pad=pad)
            pending.append(asyncio.ensure_future(exchange.originate("bench", target, payload, extra=work)))
            if len(pending) >= 4:  # keep a few transactions queued so the writer can group them
                await pending.pop(0)
        await asyncio.gather(*pending)

    async def stats(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("reset"):
            self.received = 0
            self.latencies_ms.clear()
        return {"received": self.received, "latencies_ms": list(self.latencies_ms)}
