"""The composition root: one court's hub node, wired from its parts.

    store ─ trust ─ topology/router ─ exchange ─┬─ link server (children dial in)  ┐
                                                ├─ parent link (we dial up)        ├─ gRPC + TLS
                                                ├─ workflows (directives …)       ┘
                                                └─ bus (NATS) · admin socket · maintenance

Everything a part needs is handed to it here; parts do not look each other up. The node is also
the ``LinkHost`` its link sessions talk to: it attaches and detaches sessions, wakes them when the
outbox has rows for them, and passes announcements between topology and the links.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from collections.abc import Awaitable, Coroutine
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy import Connection, func, select

from hub.agency.service import AgencyService
from hub.audit import AuditLog
from hub.audit import head as audit_head
from hub.backup import ResyncMarker
from hub.bench.probe import BenchProbe
from hub.bus import Bus
from hub.clock import Clock, OffsetClock, SystemClock, iso
from hub.codes import CourtCode
from hub.config import Config, Home
from hub.errors import ConfigError, CourtHubError, TrustError
from hub.federation.client import ParentLink
from hub.federation.enrollment import enroll_child
from hub.federation.exchange import Event, Exchange, receipt_handler
from hub.federation.interceptors import ErrorInterceptor
from hub.federation.link import MAX_FRAME_BYTES, LinkSession
from hub.federation.ping import Pinger
from hub.federation.router import Router
from hub.federation.server import SERVICE, LinkServer
from hub.federation.topology import Topology, load_trust, save_revocation
from hub.keys import CourtKey
from hub.metrics import Metrics, refresh_loop
from hub.metrics import serve as serve_metrics
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.store import Store
from hub.store.schema import children, outbox
from hub.trust import CourtCertificate, below, issue_revocation
from hub.workflows import load_workflows
from hub.workflows.directives import Directives
from hub.workflows.duty import current_duty
from hub.workflows.engine import WorkflowEngine

log = logging.getLogger(__name__)


async def _bounded(what: str, step: Awaitable[Any], limit_s: float = 10.0) -> None:
    """Await one shutdown step for at most ``limit_s``; its failure or delay is logged, not raised."""
    try:
        await asyncio.wait_for(step, limit_s)
    except TimeoutError:
        log.warning("shutdown: %s did not stop within %.0f s; going on", what, limit_s)
    except Exception as exc:
        log.warning("shutdown: %s failed: %s", what, exc)


class Node:
    def __init__(self, home: Home, config: Config | None = None, *, clock: Clock | None = None) -> None:
        self.home = home
        self.config = config or home.load()
        if clock is None:
            clock = OffsetClock() if os.environ.get("COURTHUB_CLOCK_CONTROL") == "1" else SystemClock()
        self.clock = clock
        self.me = self.config.court
        self.key = CourtKey.load(home.court_key)
        self.store = Store(home.store_url(self.config))
        self.cpu: Executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify")
        parent = CourtCode.parse(self.config.parent.court) if self.config.parent else None
        self.router = Router(self.me, parent)
        self.sessions: dict[CourtCode, LinkSession] = {}
        # Set by `court-hub restore`: neighbours still to be asked to resend (hub.backup).
        self.resync = ResyncMarker(home)
        self.bus = Bus(self.me, self.config.bus.nats_url, home.nats_dir)
        self.parent_link: ParentLink | None = None
        self._server: grpc.aio.Server | None = None
        self._admin: grpc.aio.Server | None = None
        self.admin: Any = None  # the AdminService, once started
        self._health = health.aio.HealthServicer()
        self._tasks: list[asyncio.Task[Any]] = []
        self._announce_handle: asyncio.TimerHandle | None = None
        self._announce_to: set[CourtCode] = set()
        self.metrics = Metrics()
        # Kinds only a newer peer knows, kept or relayed here since start (also counted in metrics).
        self.unknown_kinds: collections.Counter[str] = collections.Counter()
        self._metrics_http: Any = None
        self.started = asyncio.Event()
        self.stopping = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self.store.migrate)
        self.store.start()
        root = CourtCode.parse(self.config.trust.root or self.config.node.court)
        self.trust = await self.store.read(lambda conn: load_trust(conn, root, self.clock))
        if self.trust.certificate(self.me) is None:
            raise TrustError(f"{self.me} has no court certificate: run `court-hub join` with a token from its parent")
        self.topology = Topology(self.router, self.trust, self.store, self.clock)
        await self.store.read(self.topology.load)
        self.exchange = Exchange(
            self.me,
            self.key,
            self.store,
            self.trust,
            self.router,
            self.clock,
            dedupe_retention_ms=self.config.federation.dedupe_retention_days * 86_400_000,
        )
        self.exchange.on_commit = self._on_commit
        self.exchange.handle("receipt", receipt_handler)
        self.exchange.handle("chain_head", self._on_chain_head)
        self.pinger = Pinger(self)
        self.directives = Directives(self)
        self.workflows = WorkflowEngine(self)
        self.bench = BenchProbe(self)
        await self.bus.start()
        self.agency = AgencyService(self)  # plugins, work queue, 立案即查 (before links: capabilities)
        await self.agency.start()
        from hub.admin import start_admin_server

        self._admin = await start_admin_server(self)
        load_workflows(self)
        self.agency.register(self.admin)
        # Links open last: every handler and workflow must exist before the first envelope arrives.
        await self._start_link_server()
        if self.config.parent is not None:
            self.parent_link = ParentLink(
                self,
                CourtCode.parse(self.config.parent.court),
                self.config.parent.address,
                self.home.parent_cert.read_bytes(),
                self.config.federation.reconnect_max_s,
            )
            self._tasks.append(asyncio.create_task(self.parent_link.run(), name="parent-link"))
        from hub.maintenance import maintenance_tasks

        self._tasks.extend(maintenance_tasks(self))
        self._tasks.append(asyncio.create_task(refresh_loop(self), name="metrics"))
        if self.config.admin.metrics_listen:
            self._metrics_http = await serve_metrics(self, self.config.admin.metrics_listen)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self.home.pid_file.write_text(str(os.getpid()))
        self.started.set()
        log.info("node %s (%s) serving on %s", self.me, self.config.node.name, self.config.node.listen)

    async def _start_link_server(self) -> None:
        server = grpc.aio.server(
            interceptors=[ErrorInterceptor()],
            options=[
                # Four times the application limit, so oversized frames reach decode_frame (and the
                # audit log) instead of vanishing in the transport.
                ("grpc.max_receive_message_length", 4 * MAX_FRAME_BYTES),
                ("grpc.max_send_message_length", 4 * MAX_FRAME_BYTES),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.http2.max_ping_strikes", 0),
                # Half-open connections cost a socket each: a TLS handshake must finish in 10 s,
                # a connection carries at most 100 streams (a child needs 1–3), and a connection
                # with no call in flight for 5 minutes is closed.
                ("grpc.server_handshake_timeout_ms", 10_000),
                ("grpc.max_concurrent_streams", 100),
                ("grpc.max_connection_idle_ms", 300_000),
            ],
        )
        server.add_generic_rpc_handlers([LinkServer(self).handler()])
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        creds = grpc.ssl_server_credentials([(self.home.tls_key.read_bytes(), self.home.tls_cert.read_bytes())])
        if server.add_secure_port(self.config.node.listen, creds) == 0:
            raise ConfigError(f"cannot listen on {self.config.node.listen} (address in use?)")
        await server.start()
        self._server = server

    async def stop(self, grace: float = 3.0) -> None:
        """Graceful shutdown: stop taking links, let in-flight commits finish, close the store.

        Every step is bounded: a part that does not stop in time is logged and left behind, so a
        shutdown (SIGTERM, a test's teardown) can never hang on one stuck part."""
        self.stopping.set()
        await _bounded("health", self._health.enter_graceful_shutdown())
        for task in self._tasks:
            task.cancel()
        await _bounded("background tasks", asyncio.gather(*self._tasks, return_exceptions=True))
        for session in list(self.sessions.values()):
            session.close()
        if self._server is not None:
            await _bounded("link server", self._server.stop(grace), grace + 5)
        if self._admin is not None:
            await _bounded("admin server", self._admin.stop(0.5))
        if self._metrics_http is not None:
            await _bounded("metrics", self._metrics_http.cleanup())
        if getattr(self, "agency", None) is not None:
            await _bounded("agency", self.agency.stop())
        await _bounded("bus", self.bus.stop(), 15)
        await _bounded("store", asyncio.to_thread(self.store.close), 30)
        self.cpu.shutdown(wait=False)
        with contextlib.suppress(FileNotFoundError):
            self.home.pid_file.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.home.admin_socket.unlink()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background loop for the node's lifetime; ``stop`` cancels it."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    # -- LinkHost ------------------------------------------------------------------------------
    def attach(self, session: LinkSession) -> None:
        old = self.sessions.get(session.peer)
        if old is not None:
            old.close()
        self.sessions[session.peer] = session
        session.kick()

    def detach(self, session: LinkSession) -> None:
        if self.sessions.get(session.peer) is session:
            del self.sessions[session.peer]

    def announcement(self, peer: CourtCode, to_child: bool) -> lpb.Announce:
        return self.topology.announcement(peer, to_child)

    async def apply_announcement(self, peer: CourtCode, from_child: bool, announce: lpb.Announce) -> None:
        changes, write = self.topology.apply(peer, from_child, announce)
        await self.store.write(write)
        if changes.revoked:
            await self._enforce_revocations(changes.revoked)
        self.announce_soon(
            up=from_child and (changes.routes or changes.trust),
            down=changes.trust or (not from_child and changes.routes),
            skip=peer,
        )

    def announce_soon(self, *, up: bool = False, down: bool = False, skip: CourtCode | None = None) -> None:
        """Send fresh announcements shortly, coalescing bursts of changes."""
        if up and self.router.parent is not None:
            self._announce_to.add(self.router.parent)
        if down:
            self._announce_to.update(c for c in self.router.children if c != skip)
        if self._announce_to and self._announce_handle is None:
            self._announce_handle = asyncio.get_running_loop().call_later(0.05, self._flush_announcements)

    def _flush_announcements(self) -> None:
        self._announce_handle = None
        peers, self._announce_to = self._announce_to, set()
        for peer in peers:
            session = self.sessions.get(peer)
            if session is not None:
                session.send_announcement()

    def _on_commit(self, hops: set[CourtCode], events: list[Event]) -> None:
        for hop in hops:
            session = self.sessions.get(hop)
            if session is not None:
                session.kick()
        for name, data in events:
            self.bus.publish(name, data)
            self.metrics.events.labels(name).inc()
            if name == "envelope.unknown_kind":
                self.unknown_kinds[data["kind"]] += 1

    async def enroll_child(self, req: lpb.EnrollRequest) -> lpb.EnrollResponse:
        return await enroll_child(self, req)

    async def audit_event(
        self,
        action: str,
        court: str | None,
        reason: str,
        message: str,
        *,
        address: str = "",
        claimed: str = "",
        raw: bytes | None = None,
    ) -> None:
        """Audit a link or enrollment event. ``court`` is a verified court code (or None for an
        unauthenticated peer); the network address and any claimed identity go in the detail."""
        now = self.clock.now_ms()
        detail = {"reason": reason, "message": message}
        if address:
            detail["address"] = address[:128]
        if claimed:
            detail["claimed_court"] = claimed[:64]

        def write(conn: Connection) -> None:
            entry = AuditLog(conn)
            entry.append(action, now, peer=court, detail=detail, raw=raw)
            entry.flush()

        await self.store.write(write)

    def audit_link_event(self, action: str, peer: str, reason: str, message: str, raw: bytes | None = None) -> None:
        asyncio.get_running_loop().create_task(self.audit_event(action, peer, reason, message, raw=raw))

    def count_sent(self, peer: CourtCode, n: int) -> None:
        self.metrics.envelopes_sent.labels(str(peer)).inc(n)

    def count_received(self, peer: CourtCode, new: int, duplicates: int, rejected: list[str]) -> None:
        self.metrics.envelopes_received.labels(str(peer)).inc(new)
        self.metrics.duplicates.inc(duplicates)
        for reason in rejected:
            self.metrics.envelopes_rejected.labels(reason).inc()

    def count_throttled(self, peer: CourtCode, seconds: float) -> None:
        self.metrics.link_throttled.labels(str(peer)).inc(seconds)

    # -- handlers ------------------------------------------------------------------------------
    def _on_chain_head(self, delivery: Any) -> None:
        from hub.maintenance import record_chain_head

        record_chain_head(delivery)

    # -- operations ----------------------------------------------------------------------------
    async def revoke(self, court: CourtCode) -> str:
        if not below(court, self.me):
            raise TrustError(f"{self.me} can only revoke courts below it; {court} is not", reason="not_authorized")
        cert = self.trust.certificate(court)
        if cert is None:
            raise TrustError(f"no certificate known for {court}", reason="unknown_court")
        token = issue_revocation(self.key, self.me, cert, self.clock.now_ms())
        rev = self.trust.add_revocation(token)
        if rev is not None:
            now = self.clock.now_ms()

            def write(conn: Connection) -> None:
                save_revocation(conn, rev)
                entry = AuditLog(conn)
                entry.append("revoked", now, peer=str(court), detail={"serial": rev.serial})
                entry.flush()

            await self.store.write(write)
            await self._enforce_revocations((court,))
        self.announce_soon(up=True, down=True)
        return cert.serial

    async def _enforce_revocations(self, courts: tuple[CourtCode, ...]) -> None:
        for peer, session in list(self.sessions.items()):
            if any(peer.is_within(c) for c in courts) and self.trust.is_revoked(peer):
                session.close()

    async def status(self) -> dict[str, Any]:
        now = self.clock.now_ms()

        def read(conn: Connection) -> dict[str, Any]:
            backlog = conn.execute(
                select(outbox.c.next_hop, func.count(), func.min(outbox.c.created_at_ms))
                .where(outbox.c.state == "pending")
                .group_by(outbox.c.next_hop)
            ).all()
            names = dict(conn.execute(select(children.c.court, children.c.name)).all())
            seq, digest = audit_head(conn)
            return {"backlog": backlog, "names": names, "audit": {"entries": seq, "head": digest}}

        data = await self.store.read(read)
        backlog = {
            hop: {"pending": n, "oldest_age_s": round((now - oldest) / 1000, 3)} for hop, n, oldest in data["backlog"]
        }
        parent = None
        if self.config.parent is not None:
            link = self.parent_link
            parent = {
                "court": self.config.parent.court,
                "address": self.config.parent.address,
                "state": "up" if self.router.parent in self.sessions else (link.state if link else "down"),
                "last_error": link.last_error if link else "",
                "backlog": backlog.get(self.config.parent.court, {"pending": 0, "oldest_age_s": 0}),
            }
        kids = []
        for child in sorted(self.router.children, key=str):
            session = self.sessions.get(child)
            kids.append(
                {
                    "court": str(child),
                    "name": data["names"].get(str(child), ""),
                    "state": "up" if session else ("revoked" if self.trust.is_revoked(child) else "down"),
                    "last_heard": iso(session.stats.last_heard_ms) if session else None,
                    "envelopes_sent": session.stats.envelopes_sent if session else 0,
                    "envelopes_received": session.stats.envelopes_received if session else 0,
                    "backlog": backlog.get(str(child), {"pending": 0, "oldest_age_s": 0}),
                }
            )
        total = sum(b["pending"] for b in backlog.values())
        oldest = max((b["oldest_age_s"] for b in backlog.values()), default=0)
        return {
            "court": str(self.me),
            "name": self.config.node.name,
            "level": self.me.level.value,
            "listen": self.config.node.listen,
            "parent": parent,
            "children": kids,
            "backlog": {"pending": total, "oldest_unacked_age_s": oldest, "by_hop": backlog},
            "routes": sorted(str(c) for c in self.router.routes),
            "capabilities": self.topology.reachable_capabilities(),
            "audit": data["audit"],
            # Envelopes of kinds only a newer peer knows, received or relayed here (kept, not interpreted).
            "unknown_kinds": dict(self.unknown_kinds),
            "bus": {"url": self.bus.url, "embedded": self.bus.server is not None},
            "agency": await self.agency.status(),
            "duty": await current_duty(self),  # 值班: today's duty officer (hub.workflows.duty)
        }

    def certificate(self) -> CourtCertificate:
        cert = self.trust.certificate(self.me)
        if cert is None:
            raise CourtHubError("node has no certificate")
        return cert
