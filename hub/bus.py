"""The node's bus: NATS (JetStream) — embedded by default, or an external cluster by URL.

The bus carries work and events; it is never the only copy of anything the node promised to keep
(JetStream fsyncs lazily — DESIGN.md §7). Events are published after the store commit that caused
them, on ``courthub.<court-token>.events.<name>``, and captured by a per-node JetStream stream so a
late subscriber (a console, a worker) can replay them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from hub.codes import CourtCode
from hub.errors import InvalidInput
from hub.natsserver import EmbeddedNats, ensure_stream, nats_servers, stream_replicas, while_electing

log = logging.getLogger(__name__)


def court_token(court: CourtCode | str) -> str:
    """A NATS-subject-safe token for a court code: ASCII kept, other characters as u<hex>.

    ``豫1402`` → ``u8c6b1402``; ``最高法`` → ``u6700u9ad8u6cd5``. Subjects and stream names (which
    become directory names on the server) stay ASCII whatever the servers' handling of UTF-8. The
    agency work queue (:mod:`hub.jobs`) names its streams with the same token.
    """
    text = str(court)
    if not text:
        raise InvalidInput("court code is empty")
    return "".join(ch if ch.isascii() and ch.isalnum() else f"u{ord(ch):x}" for ch in text)


class Bus:
    def __init__(self, court: CourtCode, url: str, data_dir: Path) -> None:
        self.court = court
        self.token = court_token(court)
        self.url = url
        self.data_dir = data_dir
        self.server: EmbeddedNats | None = None
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=100_000)
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.dropped = 0
        self.restarts = 0  # times the embedded nats-server was found dead and started again

    @property
    def events_stream(self) -> str:
        return f"COURTHUB_EVENTS_{self.token}"

    def subject(self, name: str) -> str:
        return f"courthub.{self.token}.events.{name}"

    async def start(self) -> None:
        if not self.url:
            self.server = await EmbeddedNats(self.data_dir).start_async()
            self.url = self.server.url
        # Several URLs (a cluster, comma-separated) form the client's pool: it reconnects to a survivor.
        self.nc = await nats.connect(
            nats_servers(self.url), name=f"court-hub {self.court}", max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
        self.js = self.nc.jetstream()
        events = StreamConfig(
            name=self.events_stream,
            subjects=[f"courthub.{self.token}.events.>"],
            storage=StorageType.FILE,
            max_age=7 * 86_400,
            max_msgs=1_000_000,
            num_replicas=stream_replicas(self.nc),  # three on a cluster of three or more
        )
        # On a cluster, right after a server died, JetStream answers only once a leader is elected.
        await while_electing("events stream", functools.partial(ensure_stream, self.js, events))
        self._task = asyncio.create_task(self._publisher(), name="bus-publisher")
        if self.server is not None:
            self._watchdog = asyncio.create_task(self._watch(), name="bus-watchdog")

    async def _watch(self, every_s: float = 1.0) -> None:
        """Restart the embedded nats-server if it dies (crash, OOM kill, an operator's kill -9).

        It comes back on the same port and data directory, so the client's own reconnect loop finds
        it again and JetStream recovers its streams from disk; whatever the bus lost is re-published
        from the store (the store, not the bus, is the source of truth — DESIGN.md §7)."""
        while True:
            await asyncio.sleep(every_s)
            server = self.server
            if server is None or server.running:
                continue
            port = server.port
            log.warning("embedded nats-server (port %d) is gone; starting it again", port)
            try:
                self.server = await EmbeddedNats(self.data_dir, port=port).start_async()
                self.restarts += 1
            except Exception as exc:
                log.error("embedded nats-server could not be restarted: %s", exc)

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """Queue an event for publication (never blocks the caller, never raises)."""
        try:
            self._queue.put_nowait((self.subject(name), json.dumps(data, ensure_ascii=False).encode()))
        except asyncio.QueueFull:
            self.dropped += 1  # events are notifications; the store holds the state

    async def _publisher(self) -> None:
        while True:
            subject, body = await self._queue.get()
            if self.nc is None:
                continue
            try:
                await self.nc.publish(subject, body)
            except Exception as exc:
                log.warning("event %s not published: %s", subject, exc)

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        if self.server is not None:
            await self.server.stop_async()
