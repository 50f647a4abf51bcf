"""Simulator scaffolding shared by the four reference agency simulators.

An agency subclasses :class:`Agency` and declares its :class:`Operation` s; :class:`SimulatorServer`
does the rest:

* HTTP+JSON over aiohttp; every error is a JSON body ``{"error": {"reason", "message", "field"?}}``
  with a 4xx/5xx status — malformed JSON → 400 ``invalid_json``, a bad field → 400
  ``invalid_field`` naming it (``subject.id_no``), unknown route → 404, wrong method → 405.
* **Idempotency by request id** (请求单号) for every effectful operation: the first successful
  answer is stored with the request in the same SQLite transaction as its effect. The same
  ``request_id`` with the same body returns that stored answer again (header
  ``Idempotent-Replay: true``) and never applies the effect twice; the same ``request_id`` with a
  different body (or endpoint) is ``409 request_id_conflict``. Refusals are not stored: they had no
  effect, and a corrected retry may succeed.
* **Injectable clock.** The simulator's "now" is :class:`SimClock`, persisted in the store. Admin
  endpoint ``POST /admin/clock`` with one of ``{"now_ms": int}``, ``{"now": "2026-01-01T00:00:00Z"}``
  (both pin the clock: it stands still until moved), ``{"advance_ms": int}``, ``{"advance_days":
  number}`` (move it forward), ``{"system": true}`` (back to wall-clock time); ``GET /admin/clock``
  reads it. Term lapse (到期失效) is evaluated against this clock before every request, so tests
  jump a year ahead instead of sleeping.
* **Fault modes** for fault tests: ``POST /admin/fault`` ``{"mode": "normal"|"slow"|"hang"|"error"|
  "garbage"|"drop_reply", "delay_ms": int, "count": int|null}`` — ``slow`` answers after
  ``delay_ms``; ``hang`` never answers (the client must time out); ``error`` answers 503 without
  processing; ``garbage`` answers 200 with a body that is not valid JSON; ``drop_reply`` *processes*
  the request (effects committed) and then answers 503 ``reply_lost`` — the lost-reply case a retry
  with the same request id must survive. ``count`` limits it to the next N requests (null: until
  reset). A single request can carry its own fault instead: header ``X-Sim-Fault: MODE[:DELAY_MS]``
  (e.g. ``slow:1500``). Faults apply to every route except ``/admin/*``. A fixed ``delay_ms`` for
  all answers is a start option.
* ``POST /admin/reset`` ``{"now_ms"|"now"?}`` — drop the store and seed it again (test isolation
  against one running process); the clock restarts pinned at ``now`` (or wall-clock time).
* ``GET /health``, ``GET /v1/info``, ``GET /admin/subjects`` (the seeded people and their assets).
* Approval-gated operations call :meth:`SimContext.require_approval`.

Admin endpoints are for tests and demos only; a simulator binds loopback unless told otherwise.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import json
import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from plugins.agency.approval import ApprovalClaims, ApprovalError, ApprovalVerifier, JwsApprovalVerifier
from plugins.agency.errors import Refused
from plugins.agency.fields import FieldError, Fields
from plugins.agency.ledger import Ledger
from plugins.agency.model import REQUEST_ID_PATTERN, CourtInfo, Subject
from plugins.agency.synth import population

log = logging.getLogger("courthub.agency.sim")

FAULT_HEADER = "X-Sim-Fault"

API_VERSION = 1
DAY_MS = 86_400_000

BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals_used (
    jti TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    iss TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS persons (
    id_no TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    gender TEXT NOT NULL,
    birth TEXT NOT NULL,
    ethnicity TEXT NOT NULL,
    area_code TEXT NOT NULL,
    address TEXT NOT NULL
);
"""


def parse_iso_ms(text: str) -> int:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SimClock:
    """The simulator's clock: wall-clock time plus an offset, or pinned at an instant."""

    def __init__(self, pinned_ms: int | None = None, offset_ms: int = 0) -> None:
        self.pinned_ms = pinned_ms
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        if self.pinned_ms is not None:
            return self.pinned_ms
        return time.time_ns() // 1_000_000 + self.offset_ms

    def pin(self, now_ms: int) -> None:
        self.pinned_ms = now_ms

    def advance(self, ms: int) -> None:
        if self.pinned_ms is not None:
            self.pinned_ms += ms
        else:
            self.offset_ms += ms

    def unpin(self) -> None:
        self.pinned_ms = None
        self.offset_ms = 0

    def state(self) -> dict[str, Any]:
        now = self.now_ms()
        return {"now_ms": now, "now": iso_ms(now), "pinned": self.pinned_ms is not None, "offset_ms": self.offset_ms}


@dataclass
class FaultState:
    mode: str = "normal"  # normal | slow | hang | error | garbage
    delay_ms: int = 0
    remaining: int | None = None  # None: until reset

    MODES: ClassVar[tuple[str, ...]] = ("normal", "slow", "hang", "error", "garbage", "drop_reply")

    def take(self) -> tuple[str, int]:
        """The fault to apply to the next request (and count it down)."""
        if self.mode == "normal":
            return "normal", 0
        mode, delay = self.mode, self.delay_ms
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.mode, self.delay_ms, self.remaining = "normal", 0, None
        return mode, delay


@dataclass
class SimContext:
    """What a handler may use: the store connection, the clock, the approval verifier."""

    kind: str
    seed: int
    conn: sqlite3.Connection
    clock: SimClock
    genesis_ms: int
    verifier: ApprovalVerifier | None

    def check_subject(self, subject: Subject) -> sqlite3.Row | None:
        """The seeded person with this ID number (``None`` if unknown); a known number with another
        name is refused (姓名与证件号码不符)."""
        row = self.conn.execute("SELECT * FROM persons WHERE id_no = ?", (subject.id_no,)).fetchone()
        if row is not None and row["name"] != subject.name:
            raise Refused(
                "name_mismatch", f"姓名“{subject.name}”与证件号码{subject.id_no}登记的姓名不符", field="subject.name"
            )
        assert row is None or isinstance(row, sqlite3.Row)
        return row

    def require_approval(
        self, token: str | None, action: str, subject_id: str, court: CourtInfo, request_id: str
    ) -> ApprovalClaims:
        """Verify a sealed approval for ``action`` and record its ``jti`` (one approval, one request)."""
        if self.verifier is None:
            raise Refused(
                "approval_unverifiable",
                "本机构未配置受信任的审批机关，无法办理需审批的事项",
                status=403,
                field="approval",
            )
        try:
            claims = self.verifier.verify_approval(token or "", action, subject_id)
        except ApprovalError as exc:
            raise Refused(exc.reason, exc.message, status=403, field="approval") from None
        if claims.sub != court.case_no:
            raise Refused(
                "approval_wrong_case",
                f"审批所涉案号{claims.sub}与请求案号{court.case_no}不符",
                status=403,
                field="approval",
            )
        used = self.conn.execute("SELECT request_id FROM approvals_used WHERE jti = ?", (claims.jti,)).fetchone()
        if used is not None and used[0] != request_id:
            raise Refused("approval_replayed", "该审批签章已用于另一请求，不能重复使用", status=403, field="approval")
        if used is None:
            self.conn.execute(
                "INSERT INTO approvals_used (jti, request_id, iss, at) VALUES (?, ?, ?, ?)",
                (claims.jti, request_id, claims.iss, self.clock.now_ms()),
            )
        return claims


@dataclass
class Call:
    """One request as a handler sees it."""

    ctx: SimContext
    body: Fields
    now_ms: int
    match: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.ctx.conn

    def court(self) -> CourtInfo:
        return CourtInfo.parse(self.body.obj("court"))

    def subject(self) -> Subject:
        return Subject.parse(self.body.obj("subject"))

    def person_query(self) -> tuple[Subject, sqlite3.Row | None]:
        """The shape every "what does this person hold" query shares: a requesting court, one
        subject and nothing else; the subject checked against the agency's records (ID, name).
        Returns the subject and the person's row (None when the agency does not know them)."""
        self.court()
        subject = self.subject()
        self.body.reject_unknown()
        return subject, self.ctx.check_subject(subject)


Handler = Callable[[Call], dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    method: str  # GET | POST
    path: str  # aiohttp route, e.g. /v1/inquiry or /v1/measures/{measure_id}
    handler: Handler
    effectful: bool = False  # idempotent by request_id; stored answer replayed
    summary: str = ""


class Agency(abc.ABC):
    """One agency's data model and rules. Subclasses set the class attributes and implement the
    three methods; :class:`SimulatorServer` supplies everything else."""

    kind: ClassVar[str]
    display_name: ClassVar[str]  # e.g. 中国工商银行（模拟）
    capabilities: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        self.ledger: Ledger | None = None

    @abc.abstractmethod
    def create_schema(self, conn: sqlite3.Connection) -> None: ...

    @abc.abstractmethod
    def populate(self, conn: sqlite3.Connection, seed: int, genesis_ms: int) -> None:
        """Write the seeded data (called once, when the store is created)."""

    @abc.abstractmethod
    def operations(self) -> list[Operation]: ...

    def info(self) -> dict[str, Any]:
        """Agency-specific additions to ``GET /v1/info``."""
        out: dict[str, Any] = {}
        if self.ledger is not None:
            out["max_term_days"] = self.ledger.policy.max_term_days
            out["term_rule"] = self.ledger.policy.term_rule
        return out

    # Helpers shared by agencies with a ledger.

    def ledger_operations(self) -> list[Operation]:
        """``POST /v1/control`` and ``GET /v1/measures/{measure_id}`` over :attr:`ledger`."""
        ledger = self.ledger
        assert ledger is not None

        def control(call: Call) -> dict[str, Any]:
            from plugins.agency.model import ControlOrder

            order = ControlOrder.parse(call.body)
            call.ctx.check_subject(order.subject)
            return ledger.apply(call.conn, order, call.now_ms).to_json()

        def measure(call: Call) -> dict[str, Any]:
            view = ledger.view(call.conn, call.match["measure_id"])
            if view is None:
                raise Refused("measure_not_found", f"未找到措施{call.match['measure_id']}", status=404)
            events = call.conn.execute(
                "SELECT at, event, detail FROM measure_events WHERE measure_id = ? ORDER BY id",
                (view.measure_id,),
            ).fetchall()
            out = view.to_json()
            out["history"] = [{"at_ms": e["at"], "event": e["event"], "detail": e["detail"]} for e in events]
            return out

        return [
            Operation("POST", "/v1/control", control, effectful=True, summary="control order (codes 01–08)"),
            Operation("GET", "/v1/measures/{measure_id}", measure, summary="one measure and its history"),
        ]


def _json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def _error(status: int, reason: str, message: str, field: str | None = None) -> web.Response:
    err: dict[str, Any] = {"reason": reason, "message": message}
    if field is not None:
        err["field"] = field
    return _json_response({"error": err}, status)


class SimulatorServer:
    """Owns the store, the clock and the aiohttp application of one simulator."""

    def __init__(
        self,
        agency: Agency,
        *,
        db_path: Path,
        seed: int,
        delay_ms: int = 0,
        verifier: ApprovalVerifier | None = None,
        trusted: Mapping[str, Sequence[Ed25519PublicKey]] | None = None,
        now_ms: int | None = None,
    ) -> None:
        self.agency = agency
        self.seed = seed
        self.delay_ms = delay_ms
        self.fault = FaultState()
        self.db_path = db_path
        self.clock = SimClock()
        self.conn = self._open(db_path, now_ms)
        if verifier is None and trusted is not None:
            verifier = JwsApprovalVerifier(trusted, self.clock)
        self.ctx = SimContext(
            kind=agency.kind,
            seed=seed,
            conn=self.conn,
            clock=self.clock,
            genesis_ms=int(self._meta("genesis_ms") or 0),
            verifier=verifier,
        )
        self._hang = asyncio.Event()

    # -- store -----------------------------------------------------------------------------------

    def _open(self, db_path: Path, now_ms: int | None) -> sqlite3.Connection:
        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self.conn = conn
        conn.executescript(BASE_SCHEMA)
        kind = self._meta("kind")
        if kind is not None and kind != self.agency.kind:
            raise ValueError(f"store {db_path} belongs to a {kind} simulator, not {self.agency.kind}")
        self.agency.create_schema(conn)  # executescript commits: not inside the transaction below
        if kind is None:
            if now_ms is not None:
                self.clock.pin(now_ms)
            genesis = self.clock.now_ms() // DAY_MS * DAY_MS
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._populate_persons(conn)
                self.agency.populate(conn, self.seed, genesis)
                for key, value in (
                    ("kind", self.agency.kind),
                    ("seed", str(self.seed)),
                    ("genesis_ms", str(genesis)),
                    ("schema_version", "1"),
                ):
                    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
                self._save_clock()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        else:
            stored_seed = int(self._meta("seed") or -1)
            if stored_seed != self.seed:
                raise ValueError(
                    f"store {db_path} was seeded with {stored_seed}, not {self.seed}; use another data dir"
                )
            pinned = self._meta("clock_pinned_ms")
            self.clock.pinned_ms = int(pinned) if pinned else None
            self.clock.offset_ms = int(self._meta("clock_offset_ms") or 0)
            if now_ms is not None:
                self.clock.pin(now_ms)
                self._save_clock()
        return conn

    def _populate_persons(self, conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO persons (id_no, idx, name, gender, birth, ethnicity, area_code, address)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (p.id_no, p.index, p.name, p.gender, p.birth.isoformat(), p.ethnicity, p.area.code, p.address)
                for p in population(self.seed)
            ],
        )

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _save_clock(self) -> None:
        for key, value in (
            ("clock_pinned_ms", "" if self.clock.pinned_ms is None else str(self.clock.pinned_ms)),
            ("clock_offset_ms", str(self.clock.offset_ms)),
        ):
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def reset(self, now_ms: int | None) -> None:
        """Throw the store away and seed it again (same seed); the clock restarts at ``now_ms`` or
        wall-clock time. Used by tests to isolate cases against one running process."""
        self.conn.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(self.db_path) + suffix).unlink(missing_ok=True)
        self.clock.unpin()
        self.fault = FaultState()
        self.conn = self._open(self.db_path, now_ms)
        self.ctx.conn = self.conn
        self.ctx.genesis_ms = int(self._meta("genesis_ms") or 0)

    def release_hung(self) -> None:
        """Let requests held by the ``hang`` fault finish (with 503); used on shutdown."""
        self._hang.set()

    def close(self) -> None:
        self._hang.set()
        self.conn.close()

    # -- application -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors_middleware], client_max_size=1024 * 1024)
        app.router.add_get("/health", self._wrap(self._health, effectful=False, faults=True))
        app.router.add_get("/v1/info", self._wrap(self._info, effectful=False, faults=True))
        app.router.add_get("/admin/clock", self._admin_clock_get)
        app.router.add_post("/admin/clock", self._admin_clock_set)
        app.router.add_post("/admin/fault", self._admin_fault)
        app.router.add_get("/admin/subjects", self._admin_subjects)
        app.router.add_post("/admin/reset", self._admin_reset)
        for op in self.agency.operations():
            app.router.add_route(op.method, op.path, self._wrap(op.handler, effectful=op.effectful, faults=True))
        return app

    @web.middleware
    async def _errors_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException as exc:
            if exc.status == 404:
                return _error(404, "no_such_endpoint", f"no endpoint {request.method} {request.path}")
            if exc.status == 405:
                return _error(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}")
            if exc.status == 413:
                return _error(413, "body_too_large", "request body is larger than 1 MiB")
            return _error(exc.status, "http_error", exc.reason)

    async def _apply_faults(self, request: web.Request) -> tuple[web.Response | None, bool]:
        """Apply the fault for this request: ``(early response or None, drop the real reply)``."""
        header = request.headers.get(FAULT_HEADER)
        if header:
            mode, _, arg = header.partition(":")
            if mode not in FaultState.MODES or (arg and not arg.isdigit()):
                return _error(400, "invalid_fault", f"{FAULT_HEADER} must be MODE[:DELAY_MS], got {header!r}"), False
            delay = int(arg or 0)
        else:
            mode, delay = self.fault.take()
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        if mode == "slow":
            await asyncio.sleep(delay / 1000)
        elif mode == "hang":
            await self._hang.wait()
            return _error(503, "shutting_down", "simulator is stopping"), False
        elif mode == "error":
            return _error(503, "injected_fault", "simulated agency outage (fault mode 'error')"), False
        elif mode == "garbage":
            return web.Response(text='{"this is": not json', status=200, content_type="application/json"), False
        return None, mode == "drop_reply"

    def _wrap(self, handler: Handler, *, effectful: bool, faults: bool) -> Callable[[web.Request], Any]:
        async def endpoint(request: web.Request) -> web.Response:
            drop_reply = False
            if faults:
                faulty, drop_reply = await self._apply_faults(request)
                if faulty is not None:
                    return faulty
            raw: Any = {}
            if request.method == "POST":
                text = await request.text()
                try:
                    raw = json.loads(text) if text.strip() else None
                except json.JSONDecodeError as exc:
                    return _error(400, "invalid_json", f"request body is not valid JSON: {exc}")
                if not isinstance(raw, dict):
                    return _error(400, "invalid_json", "request body must be a JSON object")
            response = self._run(request, handler, raw, effectful)
            if drop_reply:
                return _error(503, "reply_lost", "simulated lost reply: the request WAS processed (fault 'drop_reply')")
            return response

        return endpoint

    def _run(self, request: web.Request, handler: Handler, raw: dict[str, Any], effectful: bool) -> web.Response:
        conn = self.conn
        body = Fields(raw)
        request_id: str | None = None
        digest = ""
        if request.method == "POST":
            try:
                request_id = body.text("request_id", pattern=REQUEST_ID_PATTERN)
            except FieldError as exc:
                return _error(400, "invalid_field", str(exc), exc.field)
        if effectful and request_id is not None:
            canonical = json.dumps(
                {"path": request.path, "body": raw}, sort_keys=True, ensure_ascii=False, separators=(",", ":")
            )
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            row = conn.execute(
                "SELECT path, body_hash, status, response FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is not None:
                if row["body_hash"] != digest:
                    return _error(
                        409,
                        "request_id_conflict",
                        f"request_id {request_id!r} was already used for a different request"
                        f" ({row['path']}); use a new request_id",
                        "request_id",
                    )
                return web.Response(
                    text=row["response"],
                    status=row["status"],
                    content_type="application/json",
                    charset="utf-8",
                    headers={"Idempotent-Replay": "true"},
                )
        now = self.clock.now_ms()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.agency.ledger is not None:
                self.agency.ledger.settle(conn, now)
            call = Call(ctx=self.ctx, body=body, now_ms=now, match=request.match_info, query=request.query)
            result = handler(call)
            text = json.dumps(result, ensure_ascii=False)
            if effectful and request_id is not None:
                conn.execute(
                    "INSERT INTO requests (request_id, path, body_hash, status, response, at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (request_id, request.path, digest, 200, text, now),
                )
            conn.execute("COMMIT")
        except FieldError as exc:
            conn.execute("ROLLBACK")
            return _error(400, "invalid_field", str(exc), exc.field)
        except Refused as exc:
            conn.execute("ROLLBACK")
            return _error(exc.status, exc.reason, exc.message, exc.field)
        except BaseException:
            conn.execute("ROLLBACK")
            log.exception("simulator handler failed")
            return _error(500, "internal_error", "simulator internal error (see its log)")
        return web.Response(text=text, status=200, content_type="application/json", charset="utf-8")

    # -- built-in endpoints ----------------------------------------------------------------------

    def _health(self, call: Call) -> dict[str, Any]:
        return {
            "status": "ok",
            "kind": self.agency.kind,
            "seed": self.seed,
            "now_ms": call.now_ms,
            "genesis_ms": self.ctx.genesis_ms,
            "api_version": API_VERSION,
        }

    def _info(self, call: Call) -> dict[str, Any]:
        out = {
            "kind": self.agency.kind,
            "name": self.agency.display_name,
            "api_version": API_VERSION,
            "capabilities": list(self.agency.capabilities),
            "seed": self.seed,
            "genesis_ms": self.ctx.genesis_ms,
            "approvals_configured": self.ctx.verifier is not None,
            "endpoints": [
                {"method": op.method, "path": op.path, "effectful": op.effectful, "summary": op.summary}
                for op in self.agency.operations()
            ],
        }
        out.update(self.agency.info())
        return out

    async def _admin_clock_get(self, request: web.Request) -> web.Response:
        return _json_response(self.clock.state())

    async def _admin_clock_set(self, request: web.Request) -> web.Response:
        try:
            body = Fields(await request.json())
            if body.has("now_ms"):
                self.clock.pin(body.integer("now_ms", min=0))
            elif body.has("now"):
                text = body.text("now")
                try:
                    self.clock.pin(parse_iso_ms(text))
                except ValueError:
                    raise body.fail("now", f"is not an ISO-8601 instant: {text!r}") from None
            elif body.has("advance_ms"):
                self.clock.advance(body.integer("advance_ms"))
            elif body.has("advance_days"):
                self.clock.advance(int(body.number("advance_days") * DAY_MS))
            elif body.flag("system", False):
                self.clock.unpin()
            else:
                raise FieldError("now_ms", "give one of now_ms, now, advance_ms, advance_days, system")
            body.reject_unknown()
        except FieldError as exc:
            return _error(400, "invalid_field", str(exc), exc.field)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, "invalid_json", f"request body is not valid JSON: {exc}")
        self.conn.execute("BEGIN IMMEDIATE")
        self._save_clock()
        if self.agency.ledger is not None:
            self.agency.ledger.settle(self.conn, self.clock.now_ms())
        self.conn.execute("COMMIT")
        return _json_response(self.clock.state())

    async def _admin_fault(self, request: web.Request) -> web.Response:
        try:
            body = Fields(await request.json())
            mode = body.text("mode", choices=FaultState.MODES)
            delay = body.opt_integer("delay_ms", min=0, max=600_000) or 0
            count = body.opt_integer("count", min=1)
            body.reject_unknown()
        except FieldError as exc:
            return _error(400, "invalid_field", str(exc), exc.field)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, "invalid_json", f"request body is not valid JSON: {exc}")
        if mode != "hang":
            self._hang.set()  # let requests hung so far finish (with 503)
            self._hang = asyncio.Event()
        self.fault = FaultState(mode, delay, count if mode != "normal" else None)
        return _json_response({"mode": mode, "delay_ms": delay, "count": count})

    async def _admin_reset(self, request: web.Request) -> web.Response:
        try:
            text = await request.text()
            body = Fields(json.loads(text) if text.strip() else {})
            now_ms = body.opt_integer("now_ms", min=0)
            now_text = body.opt_text("now")
            body.reject_unknown()
            if now_text is not None:
                try:
                    now_ms = parse_iso_ms(now_text)
                except ValueError:
                    raise body.fail("now", f"is not an ISO-8601 instant: {now_text!r}") from None
        except FieldError as exc:
            return _error(400, "invalid_field", str(exc), exc.field)
        except json.JSONDecodeError as exc:
            return _error(400, "invalid_json", f"request body is not valid JSON: {exc}")
        self.reset(now_ms)
        return _json_response({"seed": self.seed, "genesis_ms": self.ctx.genesis_ms, **self.clock.state()})

    async def _admin_subjects(self, request: web.Request) -> web.Response:
        from plugins.agency.subjects import seeded_subjects

        return _json_response({"seed": self.seed, "subjects": [s.to_json() for s in seeded_subjects(self.seed)]})


def bind_socket(listen: str) -> socket.socket:
    """Bind ``HOST:PORT`` (``[::1]:0`` for IPv6; port 0 picks a free port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, int(port_text)), family=family, reuse_port=False)
    sock.setblocking(False)
    return sock


def socket_url(sock: socket.socket) -> str:
    addr = sock.getsockname()
    host = addr[0]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{addr[1]}"
