"""The baseline for ``bench link``: plain grpc.aio bidirectional streaming, no protobuf, no TLS.

The client writes ``n`` messages of ``size`` bytes, one per write, keeping ``window`` unacknowledged;
the server answers each with an 8-byte ack. That is the cheapest reliable exchange grpc.aio can do
one message at a time, and what a durable, sealed relay is compared against.

Run the server as its own process: ``python -m hub.bench.raw PORT``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator

import grpc

METHOD = "/courthub.bench.Raw/Stream"


async def _serve(port: int) -> None:
    async def stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        seq = 0
        async for _msg in requests:
            seq += 1
            yield seq.to_bytes(8, "big")

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "courthub.bench.Raw",
                {
                    "Stream": grpc.stream_stream_rpc_method_handler(
                        stream, request_deserializer=None, response_serializer=None
                    )
                },
            )
        ]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def throughput(port: int, n: int, size: int, window: int = 256) -> float:
    """Messages per second from first write to last ack."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)()
        slots = asyncio.Semaphore(window)
        body = b"\x01" * size
        started = time.perf_counter()

        async def writer() -> None:
            for _ in range(n):
                await slots.acquire()
                await call.write(body)
            await call.done_writing()

        task = asyncio.create_task(writer())
        acked = 0
        async for _ack in call:
            acked += 1
            slots.release()
            if acked == n:
                break
        elapsed = time.perf_counter() - started
        await task
        return n / elapsed


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
