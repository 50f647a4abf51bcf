"""Shared base of the built-in agency connectors (pluggy plugins of project ``courthub``).

A connector is the hub-side half of an agency link: it implements the hooks of
:mod:`hub.plugins.hookspec` by mapping the hub's models (:mod:`hub.plugins.models`) onto the typed
agency client of its package (``plugins/<kind>/client.py``) and the client's replies back onto the
hub's results. :class:`AgencyConnector` does everything that is the same for every agency:

* **Info** from class attributes (``default_name``, ``agency_kind``, ``description``) plus the
  configured ``scope``; capabilities are ``<kind>.inquiry`` and ``<kind>.control``. Variants (边控,
  定位, 扣划 …) are :class:`~hub.plugins.models.ControlAction` s of ``<kind>.control``, not
  capabilities of their own: the hookspec serves ``*.inquiry``/``*.control``/``*.notify`` only,
  and capability routing announces operations, not actions.
* **Configuration** (``[plugins.<name>]``, see :func:`parse_settings`): ``url`` (required),
  ``timeout_s``, ``scope``, and for connectors with approval-gated actions ``approvers``. Every
  problem raises :class:`~hub.plugins.models.PluginConfigError` naming the key; unknown keys are
  refused (a typo must not silently fall back to a default).
* **Health**: ``GET /health`` of the agency endpoint, with the round trip measured; an unreachable
  endpoint or one that turns out to be another kind of agency is ``down`` (never raised).
* **Transport**: one ``aiohttp.ClientSession`` (keep-alive pool) per event loop, created on the
  first call and closed when that loop shuts down (``asyncio.run``/``asyncio.Runner`` cancel a
  small guard task that closes it inside the loop) or by :meth:`AgencyConnector.aclose` — the
  hookspec has no shutdown hook to tell plugins.
* **Errors** (the contract of :mod:`hub.plugins.models`):

  - agency unreachable, timed out or 5xx → :class:`~hub.plugins.models.AgencyUnavailable`
    (retryable; the hub retries with the *same* request id, which the agency deduplicates);
  - a reply that is not what the protocol promises (garbage, a missing field) →
    :class:`AgencyReplyInvalid` (retryable, and an :class:`~hub.plugins.models.InvalidModel`
    naming the agency's field);
  - a business refusal (4xx with a reason: term too long, measure lapsed, approval missing or
    invalid, asset not found, name mismatch …) → an answer, not an exception: an
    :class:`~hub.plugins.models.InquiryResult` or :class:`~hub.plugins.models.ControlResult`
    with status ``rejected`` and the agency's (Chinese) message as the reason;
  - a protocol refusal (malformed request, missing document, request-id conflict, unsupported
    action, wrong endpoint) → :class:`~hub.plugins.models.AgencyRejected` (not retryable).

* **Approvals** (远程电子签章审批): gated actions (:attr:`ControlAction.needs_approval`: 边控, 定位)
  carry a sealed approval (compact JWS) that is passed to the agency, which verifies it.
  :meth:`AgencyConnector.check_approval` is the hub-side hook point: with an ``approval_verifier``
  (injected, e.g. the federation's certificate-chain check) or configured ``approvers``, the
  approval is verified *before* anything is sent, and a bad one is a ``rejected`` result.

:class:`LedgerConnector` adds what bank, land and public-security vehicles share: control orders
with codes 01–08 against the agency's measure ledger (``POST /v1/control``), the mapping of its
answers (partial control with the reason, waiting measures with their queue position, expiry) and
the ``measure_expiring`` check. A subclass then adds only its kind, its client, its actions and
the mapping of its inquiry (and of its special actions) — see ``plugins/<kind>/plugin.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.clock import Clock, SystemClock
from hub.codes import CaseNumber, CourtCode
from hub.errors import InvalidCode
from hub.plugins.hookspec import PLUGIN_API_VERSION, hookimpl
from hub.plugins.models import (
    NATIONAL_SCOPE,
    AgencyKind,
    AgencyRejected,
    AgencyUnavailable,
    Asset,
    CaseFiled,
    ControlAction,
    ControlRequest,
    ControlResult,
    ControlStatus,
    CourtInfo,
    HealthResult,
    HealthStatus,
    InquiryRequest,
    InquiryResult,
    InquiryStatus,
    InvalidModel,
    MeasureExpiring,
    PluginConfigError,
    PluginError,
    PluginInfo,
    Subject,
)
from plugins.agency import errors as wire_errors
from plugins.agency import model as wire
from plugins.agency.approval import (
    ApprovalError,
    ApprovalVerifier,
    JwsApprovalVerifier,
    load_trusted_approvers,
    parse_public_key,
)
from plugins.agency.client import AgencyClient, MeasureClient

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "SEAL_CODES",
    "AgencyConnector",
    "AgencyReplyInvalid",
    "ConnectorSettings",
    "LedgerConnector",
    "parse_settings",
]

log = logging.getLogger("courthub.plugins.agency")

#: The HTTP budget of one agency call: below the host's default call timeout (30 s), so that a
#: slow agency surfaces as a typed, retryable AgencyUnavailable rather than a host timeout.
DEFAULT_TIMEOUT_S = 20.0
MAX_TIMEOUT_S = 600.0
HEALTH_TIMEOUT_S = 5.0
#: Transaction lines attached to one account (keeps an asset's attributes well under 64 KiB).
MAX_LINES_PER_ASSET = 150

#: Refusal reasons that mean "this request can never succeed as sent" (a protocol problem, not
#: the agency's decision on the matter): raised as AgencyRejected instead of answered.
PROTOCOL_REASONS = frozenset(
    {
        "invalid_json",
        "invalid_field",
        "missing_field",
        "unexpected_field",
        "unsupported_control_code",
        "request_id_conflict",
        "no_such_endpoint",
        "method_not_allowed",
        "body_too_large",
        "http_error",
        "invalid_fault",
    }
)
PROTOCOL_STATUSES = frozenset({400, 401, 405, 409, 413})

try:
    CONNECTOR_VERSION = importlib.metadata.version("court-hub")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    CONNECTOR_VERSION = "0.0.0+unknown"


class AgencyReplyInvalid(PluginError, InvalidModel):
    """The agency answered something that is not a valid reply (not JSON, a missing or wrong field,
    an echo of another request id). ``field`` names the agency's field (``agency.accounts[0]…``).

    Retryable: a garbled answer is usually transient (a proxy's error page, a half-deployed
    adapter), and the same request id makes the retry safe. Being an
    :class:`~hub.plugins.models.InvalidModel` too, it tells the host the answer did not validate.
    """

    reason = "agency_reply_invalid"
    retryable = True


# -- configuration -------------------------------------------------------------------------


Trusted = Mapping[str, Sequence[Ed25519PublicKey]]


@dataclass(frozen=True)
class ConnectorSettings:
    """A connector's validated ``[plugins.<name>]`` section."""

    url: str  # the agency endpoint, no trailing slash
    timeout_s: float = DEFAULT_TIMEOUT_S
    scope: str = NATIONAL_SCOPE  # "national" (总对总) or the court code served (点对点)
    approvers: Trusted | None = None  # trusted approving courts' keys, for hub-side checks


def parse_settings(name: str, config: Mapping[str, Any], *, approvals: bool) -> ConnectorSettings:
    """Validate a connector's configuration section; raise PluginConfigError naming the key.

    ``approvals``: whether the connector has approval-gated actions (then ``approvers`` is allowed).
    """

    def fail(key: str, problem: str) -> PluginConfigError:
        return PluginConfigError(f"plugins.{name}.{key}: {problem}")

    known = ["url", "timeout_s", "scope"] + (["approvers"] if approvals else [])
    for key in config:
        if key not in known:
            why = f"unknown setting (known: {', '.join(known)})"
            if key == "approvers":
                why = "this connector has no approval-gated actions (边控/定位): remove it"
            raise fail(str(key), why)
    url = config.get("url")
    if url is None:
        raise fail("url", f"is required: the agency endpoint, e.g. 'https://{name}-gw.example:8443'")
    if not isinstance(url, str):
        raise fail("url", f"expected an http(s):// URL string, got {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        raise fail("url", f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise fail("url", f"expected http://HOST[:PORT][/PATH] or https://…, got {url!r}")
    if parts.query or parts.fragment:
        raise fail("url", f"must not carry a query or fragment, got {url!r}")
    timeout = config.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT_S:
        raise fail("timeout_s", f"expected a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {timeout!r}")
    scope = config.get("scope", NATIONAL_SCOPE)
    if not isinstance(scope, str):
        raise fail("scope", f"expected 'national' (总对总) or a court code (点对点), got {type(scope).__name__}")
    if scope.strip() != NATIONAL_SCOPE:
        try:
            scope = str(CourtCode.parse(scope))
        except InvalidCode as exc:
            raise fail("scope", f"expected 'national' (总对总) or a court code (点对点): {exc}") from None
    approvers = _parse_approvers(fail, config["approvers"]) if "approvers" in config else None
    return ConnectorSettings(url.strip().rstrip("/"), float(timeout), scope.strip(), approvers)


def _parse_approvers(fail: Callable[[str, str], PluginConfigError], value: object) -> Trusted:
    """``approvers``: a trusted-approvers JSON file (the simulators' format) or an inline table
    ``{"豫14" = "<base64url raw key | PEM>"}`` (a list of keys per court for key rollover)."""
    if isinstance(value, str):
        try:
            return load_trusted_approvers(Path(value).expanduser())
        except ValueError as exc:
            raise fail("approvers", str(exc)) from None
    if not isinstance(value, Mapping) or not value:
        raise fail(
            "approvers",
            "expected the path of a trusted-approvers JSON file or a table of court code → public key(s)",
        )
    out: dict[str, list[Ed25519PublicKey]] = {}
    for court, keys in value.items():
        where = f"approvers.{court}"
        try:
            code = str(CourtCode.parse(str(court)))
        except InvalidCode as exc:
            raise fail(where, str(exc)) from None
        items = [keys] if isinstance(keys, str) else keys
        if not isinstance(items, list | tuple) or not items:
            raise fail(where, "expected a public key (base64url of 32 raw bytes, or PEM) or a list of them")
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise fail(f"{where}[{i}]", f"expected a public key string, got {type(text).__name__}")
            try:
                out.setdefault(code, []).append(parse_public_key(text))
            except ValueError as exc:
                raise fail(f"{where}[{i}]", str(exc)) from None
    return out


# -- the connector -------------------------------------------------------------------------


ClientT = TypeVar("ClientT", bound=AgencyClient)
MeasureClientT = TypeVar("MeasureClientT", bound=MeasureClient)
ControlHandler = Callable[[ClientT, ControlRequest, wire.CourtInfo, wire.Subject], Awaitable[ControlResult]]


@dataclass
class _Transport:
    session: aiohttp.ClientSession | None = None
    loop: asyncio.AbstractEventLoop | None = None
    guard: asyncio.Task[None] | None = None  # closes the session when its loop shuts down
    retiring: set[asyncio.Future[Any]] = field(default_factory=set)


async def _close_at_shutdown(session: aiohttp.ClientSession) -> None:
    """Wait until cancelled — by :meth:`AgencyConnector.aclose`, or by the event loop shutting
    down (``asyncio.run`` and ``asyncio.Runner`` cancel every task before closing the loop) — then
    close the session inside its own loop, so no connection outlives it."""
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await session.close()


class AgencyConnector(Generic[ClientT]):
    """Base of the agency connectors; subclasses set the class attributes and implement
    :meth:`inquire_assets` (and :meth:`control_handler` for their actions).

    :param name: the plugin name (default :attr:`default_name`), for several links of one kind on
        a node (``bank-icbc``, ``bank-ccb``) — each needs its own entry point or registration.
    :param scope: the scope declared before configuration (the section's ``scope`` wins).
    :param approval_verifier: verifies sealed approvals before gated actions leave the hub (e.g.
        the federation's certificate-chain check); overrides a configured ``approvers``.
    :param clock: for answer times and hub-side approval expiry (tests pin it).
    """

    default_name: ClassVar[str]
    agency_kind: ClassVar[AgencyKind]
    description: ClassVar[str] = ""
    client_class: type[ClientT]
    #: Actions handled by :meth:`control_handler` other than ledger orders (for messages and info).
    special_actions: ClassVar[tuple[ControlAction, ...]] = ()
    #: Keys an inquiry's ``params`` may carry.
    inquiry_params: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        name: str | None = None,
        scope: str = NATIONAL_SCOPE,
        approval_verifier: ApprovalVerifier | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = name or self.default_name
        self._declared_scope = scope
        self.approval_verifier = approval_verifier
        self.clock: Clock = clock or SystemClock()
        self.settings: ConnectorSettings | None = None
        self._configured_verifier: ApprovalVerifier | None = None
        self._transport = _Transport()

    # -- what the subclass provides ------------------------------------------------------

    async def inquire_assets(
        self, client: ClientT, request: InquiryRequest, court: wire.CourtInfo, subject: wire.Subject
    ) -> Sequence[Asset] | None:
        """What the agency holds for ``subject``; None when the agency does not know the subject
        at all (查无此人). Agency errors propagate; the base maps them."""
        raise NotImplementedError

    def control_handler(self, request: ControlRequest) -> ControlHandler[ClientT] | None:
        """The coroutine that carries out ``request`` at the agency, or None if unsupported."""
        return None

    def supported_actions(self) -> tuple[ControlAction, ...]:
        return self.special_actions

    # -- derived -------------------------------------------------------------------------

    @property
    def inquiry_capability(self) -> str:
        return f"{self.agency_kind.value}.inquiry"

    @property
    def control_capability(self) -> str:
        return f"{self.agency_kind.value}.control"

    @property
    def capabilities(self) -> tuple[str, ...]:
        caps = [self.inquiry_capability]
        if self.supported_actions():
            caps.append(self.control_capability)
        return tuple(caps)

    @property
    def gated(self) -> bool:
        """Whether any supported action needs a sealed approval (then ``approvers`` is allowed)."""
        return any(a.needs_approval for a in self.supported_actions())

    # -- identity and configuration ------------------------------------------------------

    @hookimpl
    def courthub_plugin_info(self) -> PluginInfo:
        actions = ", ".join(a.value for a in self.supported_actions())
        description = self.description + (f" Control actions: {actions}." if actions else "")
        return PluginInfo(
            name=self.name,
            version=CONNECTOR_VERSION,
            api_version=PLUGIN_API_VERSION,
            agency_kind=self.agency_kind,
            capabilities=self.capabilities,
            scope=self.settings.scope if self.settings is not None else self._declared_scope,
            description=description[:500],
        )

    @hookimpl
    def courthub_configure(self, config: Mapping[str, Any]) -> None:
        settings = parse_settings(self.name, config, approvals=self.gated)
        self.settings = settings
        self._configured_verifier = (
            JwsApprovalVerifier(settings.approvers, self.clock) if settings.approvers is not None else None
        )
        log.info(
            "%s: agency endpoint %s (timeout %gs, scope %s)",
            self.name,
            settings.url,
            settings.timeout_s,
            settings.scope,
        )

    # -- request / answer ----------------------------------------------------------------

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> InquiryResult:
        if request.capability != self.inquiry_capability:
            raise AgencyRejected(
                f"{self.name}: capability {request.capability!r} is not served (offers {', '.join(self.capabilities)})"
            )
        unknown = sorted(set(request.params) - self.inquiry_params)
        if unknown:
            allowed = ", ".join(sorted(self.inquiry_params)) or "none"
            raise AgencyRejected(f"{self.name}: unknown inquiry params {', '.join(unknown)} (allowed: {allowed})")
        court, subject = self.wire_court(request.court, request.case_number), self.wire_subject(request.subject)
        client = self.client()
        try:
            with self.translate_errors():
                assets = await self.inquire_assets(client, request, court, subject)
        except wire_errors.AgencyRefused as exc:
            self.raise_if_protocol(exc)
            return InquiryResult(
                request.request_id,
                InquiryStatus.REJECTED,
                answered_at_ms=self.clock.now_ms(),
                message=self.refusal_text(exc),
            )
        if assets is None:
            return InquiryResult(
                request.request_id,
                InquiryStatus.NOT_FOUND,
                answered_at_ms=self.clock.now_ms(),
                message="查无此人：机构未登记该证件号码",
            )
        return InquiryResult(
            request.request_id, InquiryStatus.ANSWERED, tuple(assets), answered_at_ms=self.clock.now_ms()
        )

    @hookimpl
    async def courthub_control(self, request: ControlRequest) -> ControlResult:
        if request.capability != self.control_capability or not self.supported_actions():
            raise AgencyRejected(
                f"{self.name}: capability {request.capability!r} is not served (offers {', '.join(self.capabilities)})"
            )
        handler = self.control_handler(request)
        if handler is None:
            supported = ", ".join(a.value for a in self.supported_actions())
            raise AgencyRejected(
                f"{self.name}: action {request.action.value!r} is not supported by this agency (supported: {supported})"
            )
        if request.action.needs_approval:
            refused = self.check_approval(request)
            if refused is not None:
                return refused
        court, subject = self.wire_court(request.court, request.case_number), self.wire_subject(request.subject)
        client = self.client()
        try:
            with self.translate_errors():
                return await handler(client, request, court, subject)
        except wire_errors.AgencyRefused as exc:
            self.raise_if_protocol(exc)
            return self.rejected(
                request,
                self.refusal_text(exc),
                agency_reason=exc.reason,
                agency_field=exc.field,
                http_status=exc.http_status,
            )

    @hookimpl
    async def courthub_health(self) -> HealthResult:
        settings = self.settings
        now = self.clock.now_ms()
        if settings is None:
            return HealthResult(HealthStatus.DOWN, f"{self.name}: not configured", checked_at_ms=now)
        started = time.perf_counter()
        try:
            health = await self.client().health(timeout_s=min(settings.timeout_s, HEALTH_TIMEOUT_S))
        except wire_errors.AgencyUnavailable as exc:
            return HealthResult(HealthStatus.DOWN, str(exc)[:2000], checked_at_ms=now)
        except wire_errors.AgencyReplyInvalid as exc:
            return HealthResult(HealthStatus.DOWN, f"invalid health reply: {exc}"[:2000], checked_at_ms=now)
        except wire_errors.AgencyRefused as exc:
            return HealthResult(HealthStatus.DOWN, f"health refused: {exc.reason}: {exc}"[:2000], checked_at_ms=now)
        latency = int((time.perf_counter() - started) * 1000)
        if health.kind != self.agency_kind.value:
            message = f"{settings.url} is a {health.kind} agency endpoint, not {self.agency_kind.value}: check url"
            return HealthResult(HealthStatus.DOWN, message, latency, now)
        return HealthResult(
            HealthStatus.UP,
            f"{self.agency_kind.value} agency at {settings.url}: ok (api v{health.api_version})",
            latency,
            now,
        )

    # -- events (nothing to tell these agencies) -----------------------------------------

    @hookimpl
    async def courthub_case_filed(self, case: CaseFiled) -> None:
        """Nothing to do: 立案即查 inquiries arrive through ``courthub_inquire``."""

    @hookimpl
    async def courthub_measure_expiring(self, measure: MeasureExpiring) -> None:
        """Nothing to check by default (see :class:`LedgerConnector`)."""

    # -- approvals ------------------------------------------------------------------------

    @property
    def verifier(self) -> ApprovalVerifier | None:
        """The hub-side approval verifier: the injected one, else the configured ``approvers``."""
        return self.approval_verifier or self._configured_verifier

    def check_approval(self, request: ControlRequest) -> ControlResult | None:
        """Hub-side check of a gated action's sealed approval before it is sent (hook point).

        Returns a ``rejected`` result to stop the request, None to send it on (the agency verifies
        the approval again with its own trusted keys). Without a verifier the agency alone checks.
        """
        verifier = self.verifier
        if verifier is None:
            return None
        try:
            claims = verifier.verify_approval(request.approval or "", request.action.value, request.subject.id_no)
        except ApprovalError as exc:
            return self.rejected(request, exc.message, agency_reason=exc.reason, checked_by="hub")
        if not _same_case(claims.sub, request.case_number):
            return self.rejected(
                request,
                f"审批所涉案号{claims.sub}与请求案号{request.case_number}不符",
                agency_reason="approval_wrong_case",
                checked_by="hub",
            )
        return None

    # -- helpers for subclasses ------------------------------------------------------------

    def client(self) -> ClientT:
        """A client of the configured endpoint over this event loop's session."""
        settings = self.settings
        if settings is None:
            raise AgencyUnavailable(f"{self.name}: not configured (no [plugins.{self.name}] url)")
        return self.client_class(settings.url, timeout_s=settings.timeout_s, session=self._session())

    @contextlib.contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Map the client's transport errors onto the models' typed errors (refusals pass)."""
        try:
            yield
        except wire_errors.AgencyUnavailable as exc:
            raise AgencyUnavailable(f"{self.name}: {exc}") from None
        except wire_errors.AgencyReplyInvalid as exc:
            raise AgencyReplyInvalid(f"agency.{exc.field}" if exc.field else "agency", str(exc)) from None

    def raise_if_protocol(self, exc: wire_errors.AgencyRefused) -> None:
        """Raise AgencyRejected for a refusal that is about the request's form, not its matter."""
        if exc.reason in PROTOCOL_REASONS or exc.http_status in PROTOCOL_STATUSES:
            raise AgencyRejected(f"{self.name}: agency refused the request ({exc.reason}): {self.refusal_text(exc)}")

    @staticmethod
    def refusal_text(exc: wire_errors.AgencyRefused) -> str:
        text = str(exc) or exc.reason
        if exc.field and exc.field not in text:
            text += f"（{exc.field}）"
        return text[:2000]

    def rejected(self, request: ControlRequest, reason: str, **attributes: Any) -> ControlResult:
        """A ``rejected`` answer to ``request`` (the agency's or the hub's decision, with why)."""
        return ControlResult(
            request_id=request.request_id,
            action=request.action,
            status=ControlStatus.REJECTED,
            reason=reason[:2000] or "refused",
            answered_at_ms=self.clock.now_ms(),
            attributes={k: v for k, v in attributes.items() if v is not None},
        )

    @staticmethod
    def wire_subject(subject: Subject) -> wire.Subject:
        # Agencies normalise the ID number to upper case (…X) and echo it: send it that way.
        return wire.Subject(subject.name, subject.id_no.upper(), wire.IdType(subject.id_type.value))

    def wire_court(self, court: CourtInfo, case_number: str) -> wire.CourtInfo:
        """The agency's requesting-court block: it wants the judge's phone and two officers."""
        if court.judge_phone is None:
            raise AgencyRejected(f"{self.name}: the agency requires the judge's phone (承办法官联系电话)")
        if len(court.officer_ids) < 2:
            raise AgencyRejected(
                f"{self.name}: the agency requires two officers' credential numbers (执行公务证号), "
                f"got {len(court.officer_ids)}"
            )
        return wire.CourtInfo(
            court_code=court.court_code,
            court_name=court.court_name,
            case_no=case_number,
            judge_name=court.judge_name,
            judge_phone=court.judge_phone,
            officer_ids=(court.officer_ids[0], court.officer_ids[1]),
            document_name=court.document_name,
            document_no=court.document_no,
        )

    def date_range(self, params: Mapping[str, Any]) -> tuple[date, date] | None:
        """``params`` ``from``/``to`` (ISO dates, both or neither) as a date range."""
        if "from" not in params and "to" not in params:
            return None
        days: list[date] = []
        for key in ("from", "to"):
            value = params.get(key)
            try:
                if not isinstance(value, str):
                    raise ValueError(value)
                days.append(date.fromisoformat(value))
            except ValueError:
                raise AgencyRejected(
                    f"{self.name}: inquiry param {key!r} must be an ISO date (YYYY-MM-DD), got {value!r}"
                ) from None
        if days[1] < days[0]:
            raise AgencyRejected(f"{self.name}: inquiry param 'to' ({days[1]}) is before 'from' ({days[0]})")
        return days[0], days[1]

    # -- transport -------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        """This event loop's session: created on first use, closed when the loop shuts down."""
        loop = asyncio.get_running_loop()
        t = self._transport
        if t.session is not None and not t.session.closed and t.loop is loop:
            return t.session
        if t.session is not None and not t.session.closed:
            self._abandon(t.session, t.loop, t.guard)  # a session of another event loop
        session = aiohttp.ClientSession(headers={"User-Agent": f"court-hub/{CONNECTOR_VERSION} {self.name}"})
        t.session, t.loop = session, loop
        t.guard = loop.create_task(_close_at_shutdown(session), name=f"courthub-{self.name}-http")
        return session

    def _abandon(
        self,
        session: aiohttp.ClientSession,
        loop: asyncio.AbstractEventLoop | None,
        guard: asyncio.Task[None] | None,
    ) -> None:
        """Close a session bound to ``loop`` from another (the running) loop."""
        if loop is not None and loop.is_running() and guard is not None:
            loop.call_soon_threadsafe(guard.cancel)  # another thread's loop: close it over there
        elif loop is None or loop.is_closed():
            # Its loop ended without cancelling the guard: closing only marks it closed now.
            closing = asyncio.ensure_future(session.close())
            self._transport.retiring.add(closing)
            closing.add_done_callback(self._transport.retiring.discard)
        else:
            session.detach()  # a stopped loop: nothing can run on it now

    async def aclose(self) -> None:
        """Close the HTTP session now (node shutdown, tests). Safe to call twice, from any loop."""
        t = self._transport
        session, loop, guard = t.session, t.loop, t.guard
        t.session, t.loop, t.guard = None, None, None
        if session is not None and not session.closed:
            if guard is not None and loop is asyncio.get_running_loop():
                guard.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await guard
            else:
                self._abandon(session, loop, guard)
        if t.retiring:
            await asyncio.gather(*t.retiring, return_exceptions=True)


def _same_case(a: str, b: str) -> bool:
    try:
        return str(CaseNumber.parse(a)) == str(CaseNumber.parse(b))
    except InvalidCode:
        return a == b


# -- connectors over a measure ledger (bank, land, vehicles) ---------------------------------


_LEDGER_STATUS = {
    wire.Outcome.CONTROLLED: ControlStatus.DONE,
    wire.Outcome.PARTIALLY_CONTROLLED: ControlStatus.PARTIAL,
    wire.Outcome.NOT_CONTROLLED: ControlStatus.NOT_CONTROLLED,
    wire.Outcome.QUEUED: ControlStatus.QUEUED,
    wire.Outcome.RENEWED: ControlStatus.DONE,
    wire.Outcome.RELEASED: ControlStatus.DONE,
    wire.Outcome.CANCELLED: ControlStatus.DONE,
    wire.Outcome.TRANSFERRED: ControlStatus.DONE,
    wire.Outcome.PARTIALLY_TRANSFERRED: ControlStatus.PARTIAL,
    wire.Outcome.NOT_TRANSFERRED: ControlStatus.NOT_CONTROLLED,
}
_FALLBACK_REASON = {
    ControlStatus.PARTIAL: "仅部分控制（机构未说明原因）",
    ControlStatus.NOT_CONTROLLED: "未能控制（机构未说明原因）",
}


#: Seals (查封) of whole assets — real estate, vehicles: codes 01–05, no amounts. ``freeze`` is
#: accepted as 01 too, as the agencies do.
SEAL_CODES: Mapping[ControlAction, wire.ControlCode] = {
    ControlAction.SEAL: wire.ControlCode.FREEZE,
    ControlAction.FREEZE: wire.ControlCode.FREEZE,
    ControlAction.RENEW: wire.ControlCode.RENEW,
    ControlAction.WAITING: wire.ControlCode.WAITING,
    ControlAction.RELEASE: wire.ControlCode.RELEASE,
    ControlAction.RELEASE_WAITING: wire.ControlCode.RELEASE_WAITING,
}


class LedgerConnector(AgencyConnector[MeasureClientT]):
    """A connector whose agency keeps a measure ledger (``POST /v1/control``, codes 01–08)."""

    #: The actions sent as ledger orders, with their control code (控制类型代码).
    ledger_codes: ClassVar[Mapping[ControlAction, wire.ControlCode]] = {}

    def supported_actions(self) -> tuple[ControlAction, ...]:
        return (*self.ledger_codes, *super().supported_actions())

    def control_handler(self, request: ControlRequest) -> ControlHandler[MeasureClientT] | None:
        if request.action in self.ledger_codes:
            return self.ledger_control
        return super().control_handler(request)

    async def ledger_control(
        self, client: MeasureClientT, request: ControlRequest, court: wire.CourtInfo, subject: wire.Subject
    ) -> ControlResult:
        order = wire.ControlOrder(
            request_id=request.request_id,
            control_code=self.ledger_codes[request.action],
            court=court,
            subject=subject,
            asset_id=request.asset_id,
            measure_id=request.measure_id,
            amount_fen=request.amount_fen,
            term_days=request.term_days,
            payee_account=request.payee_account,
        )
        return self.ledger_result(request, await client.control(order))

    def ledger_result(self, request: ControlRequest, answer: wire.ControlResult) -> ControlResult:
        """Map the ledger's answer: outcome → status, the measure's id, amounts, expiry, queue."""
        status = _LEDGER_STATUS[answer.outcome]
        m = answer.measure
        deduct = answer.transferred_amount_fen is not None
        controlled = answer.transferred_amount_fen if deduct else answer.controlled_amount_fen
        position = m.queue_position if m is not None and m.status is wire.MeasureStatus.WAITING else None
        if status is ControlStatus.QUEUED and position is None:
            raise AgencyReplyInvalid("agency.measure.queue_position", "a queued measure must have a queue position")
        active = m is not None and m.status is wire.MeasureStatus.ACTIVE
        reason = answer.reason or _FALLBACK_REASON.get(status)
        attributes: dict[str, Any] = {
            "control_code": answer.control_code.value,
            "outcome": answer.outcome.value,
            "agency_answered_at_ms": answer.answered_at_ms,
            "events": list(answer.events),
        }
        if deduct:
            attributes["remaining_controlled_fen"] = answer.controlled_amount_fen
        if m is not None:
            attributes.update(
                asset_id=m.asset_id,
                measure_status=m.status.value,
                term_days=m.term_days,
                renewals=m.renewals,
                note=m.note,
            )
        return ControlResult(
            request_id=request.request_id,
            action=request.action,
            status=status,
            measure_id=m.measure_id if m is not None else None,
            requested_amount_fen=answer.requested_amount_fen,
            controlled_amount_fen=controlled,
            effective_at_ms=m.effective_at_ms if active and m is not None else None,
            expires_at_ms=m.expires_at_ms if active and m is not None else None,
            queue_position=position,
            reason=reason,
            answered_at_ms=self.clock.now_ms(),
            attributes={k: v for k, v in attributes.items() if v is not None},
        )

    @staticmethod
    def measures_json(measures: Sequence[wire.MeasureView]) -> list[dict[str, Any]]:
        """Current measures on an asset, for an asset's ``attributes["measures"]``."""
        return [{k: v for k, v in m.to_json().items() if v is not None} for m in measures]

    @hookimpl
    async def courthub_measure_expiring(self, measure: MeasureExpiring) -> None:
        """Check the measure at the agency: warn when it already ended or its expiry differs from
        the hub's record (a renewal the hub missed, a lapse). The hub raises the reminder itself."""
        if measure.action not in self.ledger_codes:
            return
        try:
            with self.translate_errors():
                view = await self.client().measure(measure.measure_id)
        except wire_errors.AgencyRefused as exc:
            log.warning(
                "%s: measure %s (%s) unknown to the agency: %s", self.name, measure.measure_id, measure.case_number, exc
            )
            return
        if view.status is not wire.MeasureStatus.ACTIVE:
            log.warning(
                "%s: measure %s (%s) is %s at the agency, %d days before the hub's expiry",
                self.name,
                view.measure_id,
                measure.case_number,
                view.status.value,
                measure.days_left,
            )
        elif view.expires_at_ms != measure.expires_at_ms:
            log.warning(
                "%s: measure %s expires at %s at the agency, the hub has %s",
                self.name,
                view.measure_id,
                view.expires_at_ms,
                measure.expires_at_ms,
            )
