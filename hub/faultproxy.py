"""A TCP proxy that can cut, refuse, delay and stall traffic: link faults for tests and chaos runs.

* ``cut()``: every open connection is aborted (the peers see a reset) and new ones are refused
  until ``heal()`` — a peer restarting or a firewall rejecting.
* ``delay_ms``: every chunk waits this long before it is forwarded, in both directions — latency.
* ``stall()``: nothing moves any more, but no connection is closed either: bytes are held (TCP
  retransmits them in a real network, so none are lost) and new connections are accepted but not
  forwarded until ``heal()`` — a black-holing router or a dead path without resets. Only
  keepalives and timeouts can tell a peer that its link is gone.

It runs its own event loop in a thread so it can be driven from synchronous test code. Only
loopback: it listens on 127.0.0.1 and forwards to a loopback target.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from hub.netutil import free_port


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = listen_port or free_port()
        self.delay_ms = 0
        self.cut_count = 0
        self._refusing = False
        self.stall_count = 0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until ``heal``."""
        self._refusing = True
        self.cut_count += 1
        asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(10)

    def heal(self) -> None:
        """End a cut or a stall: held bytes move again, new connections are forwarded."""
        self._refusing = False
        self._loop.call_soon_threadsafe(self._flowing.set)

    def stall(self) -> None:
        """Hold every byte in both directions, on open and new connections, until ``heal``."""
        self.stall_count += 1
        self._loop.call_soon_threadsafe(self._flowing.clear)

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        self._writers.add(writer)
        await self._flowing.wait()  # a stalled path: the connection is accepted, nothing answers
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data or self._refusing:
                break
            if self.delay_ms:
                await asyncio.sleep(self.delay_ms / 1000)
            await self._flowing.wait()
            if self._refusing:
                break
            writer.write(data)
            await writer.drain()

    def stop(self) -> None:
        async def close() -> None:
            await self._drop_all()
            if self._server is not None:
                self._server.close()
                with contextlib.suppress(Exception):
                    await self._server.wait_closed()
            # Connections still being served (or held by a stall) end here, not at interpreter exit.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self._loop.close()
