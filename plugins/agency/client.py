"""The async network client every agency connector uses.

:class:`AgencyClient` speaks the simulators' HTTP+JSON protocol (the same protocol a real agency
endpoint is expected to offer, or an adapter in front of it), with one ``aiohttp.ClientSession``,
a timeout on every call, and **validation of every reply**: a reply that is not what the protocol
promises raises :class:`~plugins.agency.errors.AgencyReplyInvalid` naming the endpoint and the
field. Refusals (4xx) raise :class:`~plugins.agency.errors.AgencyRefused` with the agency's
``reason``/``field``/``message``; connection failures, timeouts and 5xx raise
:class:`~plugins.agency.errors.AgencyUnavailable` (retry with the *same* request id: effectful
calls are idempotent by request id).

Agency packages subclass it with typed methods (``BankClient.inquire`` …); a pluggy connector is
then a thin mapping from hook arguments to those methods.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

import aiohttp

from plugins.agency.errors import AgencyRefused, AgencyReplyInvalid, AgencyUnavailable
from plugins.agency.fields import FieldError, Fields
from plugins.agency.model import ControlOrder, ControlResult, CourtInfo, MeasureView, Subject

T = TypeVar("T")


def new_request_id(prefix: str = "req") -> str:
    """A fresh request id (请求单号). Keep it and reuse it on every retry of the same request."""
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class AgencyHealth:
    kind: str
    seed: int | None
    now_ms: int
    genesis_ms: int | None
    api_version: int

    @classmethod
    def parse(cls, f: Fields) -> AgencyHealth:
        f.text("status", choices=("ok",))
        return cls(
            kind=f.text("kind"),
            seed=f.opt_integer("seed"),
            now_ms=f.integer("now_ms", min=0),
            genesis_ms=f.opt_integer("genesis_ms", min=0),
            api_version=f.integer("api_version", min=1),
        )


@dataclass(frozen=True)
class AgencyInfo:
    kind: str
    name: str
    api_version: int
    capabilities: tuple[str, ...]
    max_term_days: int | None
    approvals_configured: bool

    @classmethod
    def parse(cls, f: Fields) -> AgencyInfo:
        return cls(
            kind=f.text("kind"),
            name=f.text("name"),
            api_version=f.integer("api_version", min=1),
            capabilities=tuple(f.texts("capabilities")),
            max_term_days=f.opt_integer("max_term_days", min=1),
            approvals_configured=f.flag("approvals_configured", False),
        )


@dataclass(frozen=True)
class ClockState:
    now_ms: int
    pinned: bool

    @classmethod
    def parse(cls, f: Fields) -> ClockState:
        return cls(now_ms=f.integer("now_ms", min=0), pinned=f.flag("pinned"))


class AgencyClient:
    """Base client: transport, error mapping, reply validation, common and admin endpoints."""

    kind: ClassVar[str | None] = None

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    # -- transport -------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        parse: Callable[[Fields], T],
        *,
        timeout_s: float | None = None,
    ) -> T:
        """Send one request and return ``parse(reply)``; ``parse`` raising
        :class:`~plugins.agency.fields.FieldError` or ``ValueError`` makes the reply malformed."""
        endpoint = f"{method} {path}"
        who = self._who()
        timeout = aiohttp.ClientTimeout(total=timeout_s if timeout_s is not None else self.timeout_s)
        try:
            async with self._http().request(method, self.base_url + path, json=body, timeout=timeout) as resp:
                status = resp.status
                raw = await resp.read()
        except TimeoutError:
            raise AgencyUnavailable(
                f"{self._who()} did not answer {endpoint} within {timeout.total}s", endpoint=endpoint, timeout=True
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise AgencyUnavailable(f"{self._who()} unreachable for {endpoint}: {exc}", endpoint=endpoint) from None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if status >= 500:
                raise AgencyUnavailable(f"{who} answered {endpoint} with HTTP {status}", endpoint=endpoint) from None
            raise AgencyReplyInvalid(
                f"{self._who()} answered {endpoint} (HTTP {status}) with a body that is not JSON: {exc}",
                endpoint=endpoint,
            ) from None
        if status >= 400:
            reason, message, field = self._error_body(endpoint, status, doc)
            if status >= 500:
                problem = f"{who} failed {endpoint} (HTTP {status}, {reason}): {message}"
                raise AgencyUnavailable(problem, endpoint=endpoint)
            raise AgencyRefused(message, status=status, reason=reason, field=field)
        if status != 200:
            raise AgencyReplyInvalid(f"{who} answered {endpoint} with unexpected HTTP {status}", endpoint=endpoint)
        try:
            fields = Fields(doc)
            if body is not None and "request_id" in body and "request_id" in doc:
                echoed = fields.text("request_id")
                if echoed != body["request_id"]:
                    raise FieldError("request_id", f"echoes {echoed!r}, but the request was {body['request_id']!r}")
            return parse(fields)
        except FieldError as exc:
            raise AgencyReplyInvalid(
                f"{self._who()} sent a malformed reply to {endpoint}: field '{exc.field}' {exc.problem}",
                endpoint=endpoint,
                field=exc.field,
            ) from None
        except ValueError as exc:
            raise AgencyReplyInvalid(
                f"{self._who()} sent a malformed reply to {endpoint}: {exc}", endpoint=endpoint
            ) from None

    async def post(
        self, path: str, body: dict[str, Any], parse: Callable[[Fields], T], *, timeout_s: float | None = None
    ) -> T:
        return await self.call("POST", path, body, parse, timeout_s=timeout_s)

    async def get(self, path: str, parse: Callable[[Fields], T], *, timeout_s: float | None = None) -> T:
        return await self.call("GET", path, None, parse, timeout_s=timeout_s)

    def _who(self) -> str:
        return f"agency {self.kind or ''} at {self.base_url}".replace("  ", " ")

    def _error_body(self, endpoint: str, status: int, doc: Any) -> tuple[str, str, str | None]:
        try:
            err = Fields(doc).obj("error")
            return err.text("reason"), err.text("message", strip=False, max_len=4000), err.opt_text("field")
        except FieldError as exc:
            if status >= 500:
                return "http_error", f"HTTP {status}", None
            raise AgencyReplyInvalid(
                f"{self._who()} refused {endpoint} (HTTP {status}) without a valid error body: field '{exc.field}'"
                f" {exc.problem}",
                endpoint=endpoint,
                field=exc.field,
            ) from None

    @staticmethod
    def envelope(request_id: str | None, court: CourtInfo, subject: Subject, **extra: Any) -> dict[str, Any]:
        """The common request body: request id, requesting court, subject, plus extra fields."""
        body: dict[str, Any] = {
            "request_id": request_id or new_request_id(),
            "court": court.to_json(),
            "subject": subject.to_json(),
        }
        body.update({k: v for k, v in extra.items() if v is not None})
        return body

    # -- common endpoints ------------------------------------------------------------------------

    async def health(self, *, timeout_s: float | None = None) -> AgencyHealth:
        return await self.get("/health", AgencyHealth.parse, timeout_s=timeout_s)

    async def info(self) -> AgencyInfo:
        return await self.get("/v1/info", AgencyInfo.parse)

    # -- simulator admin (tests, demo) -------------------------------------------------------------

    async def set_clock(self, now_ms: int | None = None, *, iso: str | None = None) -> ClockState:
        """Pin the simulator clock at ``now_ms`` (or an ISO-8601 instant)."""
        body: dict[str, Any] = {"now_ms": now_ms} if now_ms is not None else {"now": iso}
        return await self.post("/admin/clock", body, ClockState.parse)

    async def reset(self, now_ms: int | None = None, *, iso: str | None = None) -> ClockState:
        """Drop the simulator's store and seed it again; pin its clock at ``now_ms``/``iso``."""
        body: dict[str, Any] = {}
        if now_ms is not None:
            body["now_ms"] = now_ms
        elif iso is not None:
            body["now"] = iso
        return await self.post("/admin/reset", body, ClockState.parse)

    async def advance_clock(self, *, days: float = 0, ms: int = 0) -> ClockState:
        return await self.post("/admin/clock", {"advance_ms": ms + int(days * 86_400_000)}, ClockState.parse)

    async def system_clock(self) -> ClockState:
        return await self.post("/admin/clock", {"system": True}, ClockState.parse)

    async def clock(self) -> ClockState:
        return await self.get("/admin/clock", ClockState.parse)

    async def set_fault(self, mode: str, *, delay_ms: int = 0, count: int | None = None) -> None:
        """Fault mode for the next requests: normal, slow, hang, error, garbage, drop_reply
        (see :mod:`plugins.agency.server`)."""
        body: dict[str, Any] = {"mode": mode, "delay_ms": delay_ms}
        if count is not None:
            body["count"] = count
        await self.post("/admin/fault", body, raw_fields)

    async def subjects(self) -> list[dict[str, Any]]:
        """The seeded subjects as the simulator reports them (see :mod:`plugins.agency.subjects`)."""
        f = await self.get("/admin/subjects", raw_fields)
        return [dict(item) for item in f.array("subjects")]


def raw_fields(f: Fields) -> Fields:
    """``parse`` that keeps the validated top-level object as it is."""
    return f


class MeasureClient(AgencyClient):
    """Client of an agency with a control-measure ledger (bank, land, public security vehicles)."""

    async def control(self, order: ControlOrder, *, timeout_s: float | None = None) -> ControlResult:
        """Send a control order; the reply's measure and amounts are validated."""
        return await self.post("/v1/control", order.to_json(), ControlResult.parse, timeout_s=timeout_s)

    async def measure(self, measure_id: str) -> MeasureView:
        from urllib.parse import quote

        return await self.get(f"/v1/measures/{quote(measure_id, safe='')}", MeasureView.parse)


def measures_of(f: Fields) -> tuple[MeasureView, ...]:
    return tuple(f.objs("measures", MeasureView.parse))


async def wait_healthy(client: AgencyClient, *, timeout_s: float = 10.0) -> AgencyHealth:
    """Poll ``/health`` until it answers (e.g. after starting a simulator)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            return await client.health(timeout_s=1.0)
        except AgencyUnavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


def check_subject_echo(f: Fields, subject: Subject) -> None:
    """A reply's ``subject.id_no`` must be the one asked about."""
    echoed = f.obj("subject").text("id_no")
    if echoed != subject.id_no:
        raise FieldError("subject.id_no", f"is {echoed!r}, but the request asked about {subject.id_no!r}")
