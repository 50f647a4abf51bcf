"""The node's agency side: plugins, work queue, 立案即查, control measures and reminders.

Wiring (all on the node's own store, bus and federation)::

    config [plugins.<name>] ─▶ PluginHost ─▶ capabilities ─▶ node.router.capabilities (announced)
                                    │
    case.file ─▶ cases row ─commit─▶ bus event case.filed ─▶ start_inquiries (this service)
                                                                │
          capability served here? ── yes ─▶ JobQueue (JetStream) ─▶ Worker ─▶ plugin ─▶ agency
                                  └─ no ──▶ agency.request envelope ─▶ nearest ancestor offering it
                                                                        (its queue, its plugin)
    job_done (bus) ─▶ settle: a local request's row  │  a served request: agency.result envelope
                                                     │  written with "reported" in one transaction
    agency.result envelope ─▶ the asking court's inquiry / measure row

The store is the truth at every step; the bus only wakes things up. A periodic check (every
``[agency] check_interval_s``, clock = ``node.clock``) finishes whatever a crash interrupted —
cases whose inquiries never started, local requests never submitted, served requests whose answer
was never sent, jobs whose ``job_done`` was missed — times out requests past their deadline, sweeps
the job queue and raises renewal reminders before measures expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy import Connection, func, select, update

from hub.agency import cases as case_rows
from hub.agency import measures as measure_rows
from hub.agency.routing import (
    CONTROL,
    INQUIRY,
    OPERATIONS,
    REQUEST_KIND,
    RESULT_KIND,
    LocalPlugins,
    Outcome,
    agency_of,
    dumps,
    operation_of,
)
from hub.agency.schema import LOCAL, PENDING, RELAY, case_inquiries, cases, measures, served_requests
from hub.codes import CaseNumber, CourtCode
from hub.config import AgencySection
from hub.errors import AuthorityError, InvalidInput, NotFound
from hub.federation.envelope import Target
from hub.federation.exchange import Delivery, Tx
from hub.jobs import Job, JobQueue, JobSpec, RetryPolicy, Worker, jobs_by_id, queue_status, subscribe_job_done
from hub.plugins.hookspec import ENTRY_POINT_GROUP
from hub.plugins.host import PluginHost
from hub.plugins.models import (
    CaseFiled,
    ControlAction,
    ControlRequest,
    IdType,
    InquiryRequest,
    InvalidModel,
    MeasureExpiring,
    Subject,
)
from hub.proto.courthub.v1 import agency_pb2 as apb
from hub.store.agency_schema import agency_jobs
from hub.trust import below

if TYPE_CHECKING:
    from hub.admin import AdminService
    from hub.node import Node

log = logging.getLogger(__name__)
T = TypeVar("T")

DOCUMENTS = {
    INQUIRY: "协助查询财产通知书",
    ControlAction.FREEZE: "协助冻结通知书",
    ControlAction.RENEW: "协助续行冻结通知书",
    ControlAction.WAITING: "协助轮候冻结通知书",
    ControlAction.RELEASE: "协助解除冻结通知书",
    ControlAction.RELEASE_WAITING: "协助解除轮候冻结通知书",
    ControlAction.DEDUCT: "协助扣划通知书",
    ControlAction.FREEZE_AND_DEDUCT: "协助冻结并扣划通知书",
    ControlAction.SEAL: "协助查封通知书",
    ControlAction.BORDER_CONTROL: "边控请求函",
    ControlAction.LOCATION: "协助定位函",
}


def new_request_id() -> str:
    return uuid.uuid4().hex


def _chinese_number(n: int) -> str:
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return ("" if tens == 1 else digits[tens]) + "十" + (digits[ones] if ones else "")
    return str(n)


async def close_plugins(host: PluginHost) -> None:
    """Let plugins release their connections (connectors offer ``aclose``; the hook API has no
    shutdown hook yet)."""
    for name in host.names():
        close = getattr(host.plugin(name), "aclose", None)
        if close is None:
            continue
        try:
            await asyncio.wait_for(close(), 5)
        except Exception as exc:
            log.warning("closing plugin %s: %s", name, exc)


def _get_job(conn: Connection, job_id: str) -> Job | None:
    row = conn.execute(select(agency_jobs).where(agency_jobs.c.job_id == job_id)).mappings().first()
    return Job.from_row(row) if row is not None else None


class AgencyService:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.me: CourtCode = node.me
        self.settings = node.config.agency
        self.clock = node.clock
        self.plugin_config: dict[str, dict[str, Any]] = {}
        self.host = PluginHost({}, clock=node.clock)
        self.local = LocalPlugins({})
        self.policy = retry_policy(node.config.agency)
        self.queue: JobQueue | None = None
        self.worker: Worker | None = None
        self._worker_stop = asyncio.Event()
        self._worker_task: asyncio.Task[None] | None = None
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self.reminders_raised = 0
        self._to_settle: set[str] = set()
        self._to_start: set[str] = set()
        self._start_task: asyncio.Task[None] | None = None
        self._settle_task: asyncio.Task[None] | None = None
        node.exchange.handle(REQUEST_KIND, self._on_request)
        node.exchange.handle(RESULT_KIND, self._on_result)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        nc = self.node.bus.nc
        assert nc is not None, "the bus must be started first"
        self.queue = JobQueue(
            self.node.store, nc, str(self.me), policy=self.policy, clock=self.clock, host_timeout_s=30.0
        )
        await self.load_plugins(announce=False)
        self._subs.append(await subscribe_job_done(nc, str(self.me), self._on_job_done))
        self._subs.append(await nc.subscribe(self.node.bus.subject("case.filed"), cb=self._on_case_filed_msg))
        self._spawn(self._periodic())

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self._stop_worker()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await close_plugins(self.host)

    def register(self, admin: AdminService) -> None:
        ops: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "case.file": self.file_case,
            "case.show": self.show_case,
            "case.list": self.list_cases,
            "case.inquire": self.reinquire,
            "control.request": self.control,
            "control.remind": self.remind,
            "plugins.list": self.list_plugins,
            "plugins.reload": self.reload_plugins,
            "agency.status": lambda args: self.status(),
            "agency.check": lambda args: self.tick(),
        }
        for name, op in ops.items():
            admin.register(name, op)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("agency task failed: %s", task.exception())

    # -- plugins ---------------------------------------------------------------------------------

    async def load_plugins(self, *, announce: bool = True, config: dict[str, dict[str, Any]] | None = None) -> None:
        """(Re)build the plugin host from ``[plugins.*]``, restart the worker, announce changes."""
        async with self._reload_lock:
            plugin_config = {
                k: dict(v) for k, v in (config if config is not None else self.node.config.plugins).items()
            }
            # Installed plugins without a [plugins.<name>] section stay off on this node.
            sections = {
                **{ep.name: {"enabled": False} for ep in entry_points(group=ENTRY_POINT_GROUP)},
                **plugin_config,
            }
            host = PluginHost(sections, clock=self.clock)
            await asyncio.to_thread(host.load_entry_points)
            await self._stop_worker()
            old, self.host, self.plugin_config = self.host, host, plugin_config
            await close_plugins(old)
            self.local = LocalPlugins.build(host, plugin_config)
            offered = self.local.announced(self.me)
            changed = offered != self.node.router.capabilities
            self.node.router.capabilities.clear()
            self.node.router.capabilities.update(offered)
            assert self.queue is not None
            await self.queue.setup(host.names())
            self._start_worker()
            if changed and announce:
                self.node.announce_soon(up=True, down=True)
            self._spawn(host.check_health())
            log.info("agency plugins: %s; offering %s", ", ".join(host.names()) or "none", sorted(offered) or "nothing")

    def _start_worker(self) -> None:
        names = self.host.names()
        if not names or self.node.bus.nc is None or not self.settings.node_worker:
            return
        self._worker_stop = asyncio.Event()
        self.worker = Worker(
            self.node.store,
            self.node.bus.nc,
            str(self.me),
            self.host,
            plugins=names,
            policy=self.policy,
            concurrency=self.settings.worker_concurrency,
            worker_id=f"node:{self.node.bus.token}:{uuid.uuid4().hex[:6]}",
            clock=self.clock,
        )
        self._worker_task = asyncio.get_running_loop().create_task(self.worker.run(self._worker_stop))

    async def _stop_worker(self) -> None:
        if self._worker_task is not None:
            self._worker_stop.set()
            with contextlib.suppress(Exception):
                await self._worker_task
            self._worker_task = None

    async def reload_plugins(self, args: dict[str, Any]) -> Any:
        """Re-read ``[plugins.*]`` from config.toml and apply it (admin ``plugins.reload``)."""
        config = await asyncio.to_thread(self.node.home.load)
        await self.load_plugins(config=config.plugins)
        return await self.list_plugins({"health": True})

    async def list_plugins(self, args: dict[str, Any]) -> Any:
        if args.get("health", True):
            await self.host.check_health()
        scopes = self.local.scopes()
        out = []
        for status in self.host.list():
            item = status.to_dict()
            if item["scope"] is not None and status.name in scopes:
                item["scope"] = scopes[status.name]
            if status.state == "disabled" and status.name not in self.plugin_config:
                item["message"] = f"not configured on this node (add a [plugins.{status.name}] section)"
            item["offered"] = sorted(c for c in item["capabilities"] if c in self.node.router.capabilities)
            out.append(item)
        return {
            "court": str(self.me),
            "plugins": out,
            "offered": sorted(self.node.router.capabilities),
            "reachable": self.node.topology.reachable_capabilities(),
        }

    # -- transactions ----------------------------------------------------------------------------

    async def _tx(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one store transaction with an exchange ``Tx`` (envelopes, audit, events);
        after the commit wake the links, publish the events and run the callbacks."""
        return await self.node.exchange.run(fn)

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _wait(self, check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            event = self._changed
            if await check():
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 1.0))

    # -- cases -----------------------------------------------------------------------------------

    def _case_number(self, text: Any) -> str:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("a case number (案号) is required, e.g. （2024）豫1402执123号")
        return str(CaseNumber.parse(text.strip()))

    async def file_case(self, args: dict[str, Any]) -> Any:
        """Admin ``case.file``: store the case; 立案即查 starts from the ``case.filed`` event."""
        number = CaseNumber.parse(str(args.get("number", "")).strip())
        if number.court != self.me:
            raise AuthorityError(
                f"case {number} belongs to court {number.court}; this node is {self.me}", reason="wrong_court"
            )
        try:
            party = Subject(
                str(args.get("party", "")),
                str(args.get("id_number", "")).upper(),
                IdType(args.get("id_type") or "resident_id"),
            )
        except ValueError as exc:  # IdType
            raise InvalidInput(f"--id-type: {exc}") from None
        amount = args.get("amount_fen")
        if amount is not None and (not isinstance(amount, int) or amount < 0):
            raise InvalidInput("amount_fen must be a non-negative integer")
        officers = args.get("officer_ids") or list(self.settings.officer_ids)
        record = case_rows.CaseRecord(
            case_number=str(number),
            court=str(self.me),
            party=party,
            amount_fen=amount,
            judge_name=str(args.get("judge") or self.settings.judge_name),
            judge_phone=str(args.get("judge_phone") or self.settings.judge_phone) or None,
            officer_ids=tuple(str(o) for o in officers),
            filed_at_ms=self.clock.now_ms(),
        )
        record.court_info(self.node.config.node.name)  # validate judge, phone, officers now

        def fn(tx: Tx) -> bool:
            created = case_rows.insert_case(tx.conn, record)
            if created:
                detail = {"case_number": record.case_number, "party": party.name}
                tx.audit.append("case_filed", tx.now_ms, origin=str(self.me), detail=detail)
                tx.events.append(("case.filed", {**detail, "court": str(self.me), "filed_at_ms": record.filed_at_ms}))
            return created

        created = await self._tx(fn)
        wait_s = float(args.get("wait_s") or 0)
        if wait_s > 0:
            await self._wait(lambda: self._case_settled(record.case_number), wait_s)
        if wait_s > 0 or args.get("show", True):
            shown = await self.show_case({"number": record.case_number})
        else:
            shown = {"court": str(self.me), "case": record.summary()}
        shown["created"] = created
        return shown

    async def _case_settled(self, case_number: str) -> bool:
        def read(conn: Connection) -> bool:
            started = conn.execute(
                select(cases.c.inquiries_started_at_ms).where(cases.c.case_number == case_number)
            ).scalar()
            if started is None:
                return False
            pending = conn.execute(
                select(func.count())
                .select_from(case_inquiries)
                .where(case_inquiries.c.case_number == case_number, case_inquiries.c.status == PENDING)
            ).scalar_one()
            return int(pending) == 0

        return await self.node.store.read(read)

    async def _on_case_filed_msg(self, msg: Msg) -> None:
        try:
            data = json.loads(msg.data)
            case_number = str(data["case_number"])
        except (ValueError, KeyError, TypeError):
            return
        if data.get("court") == str(self.me):
            self._start_soon(case_number)

    def reachable(self) -> dict[str, str]:
        """Capability → the court that serves it for this court (here, else the nearest ancestor)."""
        reachable = self.node.topology.reachable_capabilities()
        for cap in self.node.router.capabilities:
            reachable[cap] = str(self.me)
        return dict(sorted(reachable.items()))

    def inquiry_capabilities(self) -> dict[str, str]:
        """Reachable ``*.inquiry`` capabilities → the court that serves them."""
        return {c: court for c, court in self.reachable().items() if operation_of(c) == INQUIRY}

    def _start_soon(self, case_number: str) -> None:
        """Start 立案即查 for filed cases in batches (a burst of filings costs a few transactions)."""
        self._to_start.add(case_number)
        if self._start_task is None or self._start_task.done():
            self._start_task = asyncio.get_running_loop().create_task(self._start_pending())

    async def _start_pending(self) -> None:
        while self._to_start:
            await asyncio.sleep(0)
            numbers, self._to_start = sorted(self._to_start), set()
            try:
                await self.start_inquiries(*numbers)
            except Exception:  # the periodic check starts them later
                log.exception("starting inquiries of %d cases failed", len(numbers))

    async def start_inquiries(
        self, *case_numbers: str, again: bool = False, only: set[str] | None = None
    ) -> list[dict[str, Any]]:
        """立案即查: one inquiry per reachable ``*.inquiry`` capability, local plugins first, else
        relayed. Once per case, unless ``again`` (a later re-inquiry, e.g. after a release)."""
        caps = [c for c in self.inquiry_capabilities() if only is None or agency_of(c) in only]
        now = self.clock.now_ms()
        deadline = now + int(self.settings.inquiry_timeout_s * 1000)
        court_name = self.node.config.node.name
        filed: list[CaseFiled] = []

        queue = self.queue
        assert queue is not None

        def fn(tx: Tx) -> tuple[list[tuple[str, InquiryRequest]], list[tuple[Job, bool]]]:
            numbers = list(case_numbers)
            if not again:
                fresh = case_rows.claim_inquiry_start(tx.conn, numbers, tx.now_ms)
                numbers = [n for n in numbers if n in fresh]
            if not numbers:
                return [], []
            local: list[tuple[str, InquiryRequest]] = []
            rows: list[dict[str, Any]] = []
            for case in case_rows.load_cases(tx.conn, numbers):
                if not again:
                    filed.append(
                        CaseFiled(case.case_number, case.court, case.filed_at_ms, (case.party,), (), case.amount_fen)
                    )
                court = case.court_info(court_name, DOCUMENTS[INQUIRY])
                for cap in caps:
                    request = InquiryRequest(new_request_id(), cap, case.case_number, court, case.party, {}, tx.now_ms)
                    plugin = self.local.for_court(cap, self.me)
                    common: dict[str, Any] = {
                        "request": request.to_dict(),
                        "request_id": request.request_id,
                        "case_number": case.case_number,
                        "capability": cap,
                        "now_ms": tx.now_ms,
                        "deadline_at_ms": deadline,
                    }
                    if plugin is not None:
                        rows.append(case_rows.inquiry_row(route=LOCAL, plugin=plugin, served_by=str(self.me), **common))
                        local.append((plugin, request))
                        continue
                    eid = self._relay(tx, INQUIRY, cap, request.to_dict(), case.case_number, deadline)
                    rows.append(case_rows.inquiry_row(route=RELAY, envelope_id=eid, **common))
                tx.audit.append(
                    "inquiries_started",
                    tx.now_ms,
                    origin=str(self.me),
                    detail={"case_number": case.case_number, "capabilities": caps, "again": again},
                )
                tx.events.append(("case.inquiries_started", {"case_number": case.case_number, "capabilities": caps}))
            case_rows.insert_inquiries(tx.conn, rows)
            # The local inquiries' jobs are committed with their rows (store first), then
            # published after the commit: one transaction for every inquiry the filings start.
            jobs = queue.add(tx.conn, [JobSpec.inquiry(p, r, deadline) for p, r in local])
            return local, jobs

        local, jobs = await self._tx(fn)
        if not caps:
            log.info("cases %s: no agency capability reachable from %s", ", ".join(case_numbers), self.me)
        if jobs:  # in the background: the next filings' inquiries need not wait for these acks
            self._spawn(self._publish(queue, jobs))
        if self.host.names():
            for event in filed:
                self._spawn(self.host.case_filed(event))
        self._notify()
        return [{"capability": r.capability, "request_id": r.request_id, "plugin": p} for p, r in local]

    @staticmethod
    async def _publish(queue: JobQueue, jobs: list[tuple[Job, bool]]) -> None:
        try:
            await queue.publish(jobs)
        except Exception as exc:  # the periodic sweep publishes what was not confirmed
            log.warning("publishing %d inquiry jobs failed: %s", len(jobs), exc)

    def _relay(self, tx: Tx, operation: str, capability: str, request: dict[str, Any], case: str, deadline: int) -> str:
        payload = apb.AgencyRequestPayload(
            request_id=str(request["request_id"]),
            capability=capability,
            operation=operation,
            request_json=dumps(request),
            deadline_at_ms=deadline,
        )
        return self.node.exchange.emit(tx, REQUEST_KIND, Target.to_capability(capability), payload, case_number=case)

    async def _submit_local(
        self,
        operation: str,
        plugin: str,
        request: InquiryRequest | ControlRequest | dict[str, Any],
        deadline: int | None,
    ) -> None:
        assert self.queue is not None
        try:
            if isinstance(request, dict):
                parse = InquiryRequest.from_dict if operation == INQUIRY else ControlRequest.from_dict
                request = parse(request)
            if isinstance(request, InquiryRequest):
                await self.queue.submit_inquiry(plugin, request, deadline_at_ms=deadline)
            else:
                await self.queue.submit_control(plugin, request, deadline_at_ms=deadline)
        except Exception as exc:  # the periodic check resubmits (same request id: a no-op if it got in)
            request_id = request.get("request_id") if isinstance(request, dict) else request.request_id
            log.warning("submitting %s job %s to %s failed: %s", operation, request_id, plugin, exc)

    async def reinquire(self, args: dict[str, Any]) -> Any:
        """Admin ``case.inquire``: ask the reachable agencies again (new request ids)."""
        case_number = self._case_number(args.get("number"))
        agencies = args.get("agencies")
        only = {str(a) for a in agencies} if agencies else None
        exists = await self.node.store.read(lambda conn: case_rows.load_case(conn, case_number))
        if exists is None:
            raise NotFound(f"no case {case_number} at {self.me}")
        started = await self.start_inquiries(case_number, again=True, only=only)
        wait_s = float(args.get("wait_s") or 0)
        if wait_s > 0:
            await self._wait(lambda: self._case_settled(case_number), wait_s)
        shown = await self.show_case({"number": case_number})
        shown["started"] = started
        return shown

    async def show_case(self, args: dict[str, Any]) -> dict[str, Any]:
        case_number = self._case_number(args.get("number"))

        def read(conn: Connection) -> dict[str, Any] | None:
            case = case_rows.load_case(conn, case_number)
            if case is None:
                return None
            return {
                "case": {
                    **case.summary(),
                    "inquiries_started_at_ms": case.inquiries_started_at_ms,
                },
                "inquiries": case_rows.inquiry_rows(conn, case_number),
                "measures": measure_rows.measure_rows(conn, case_number),
                "reminders": measure_rows.reminder_rows(conn, case_number),
            }

        data = await self.node.store.read(read)
        if data is None:
            raise NotFound(f"no case {case_number} at {self.me}")
        data["court"] = str(self.me)
        return data

    async def list_cases(self, args: dict[str, Any]) -> Any:
        limit = int(args.get("limit") or 200)
        return await self.node.store.read(lambda conn: case_rows.case_overview(conn, limit))

    # -- control measures ------------------------------------------------------------------------

    async def control(self, args: dict[str, Any]) -> Any:
        """Admin ``control.request``: one control measure, local plugin or relayed."""
        case_number = self._case_number(args.get("number"))
        action = measure_rows.parse_action(str(args.get("action", "")))
        agency = str(args.get("agency") or "").strip()
        if not agency:
            raise InvalidInput("--agency is required (bank, land, public_security, telecom …)")
        capability = f"{agency}.control"
        Target.to_capability(capability)  # validates the agency name
        served_by = self.reachable().get(capability)
        if served_by is None:
            raise NotFound(f"no court reachable from {self.me} offers {capability}", reason="no_capability")
        case = await self.node.store.read(lambda conn: case_rows.load_case(conn, case_number))
        if case is None:
            raise NotFound(f"no case {case_number} at {self.me}")
        asset_id = args.get("asset") or None
        measure_id = args.get("measure") or None
        if action in measure_rows.ON_MEASURE and measure_id is None:
            if asset_id is None:
                raise InvalidInput(f"{action.value} needs --measure (the agency's measure id) or --asset")
            row = await self.node.store.read(
                lambda conn: measure_rows.find_measure(conn, case_number, agency, str(asset_id), action)
            )
            measure_id = row.measure_id
        term_days = args.get("term_days")
        if term_days is None and action in (*measure_rows.CREATING, ControlAction.RENEW):
            term_days = measure_rows.default_term_days(agency)
        payee = args.get("payee") or self.settings.payee_account or None
        document_no = args.get("document_no") or await self._next_document_no(case_number)
        now = self.clock.now_ms()
        deadline = now + int(self.settings.control_timeout_s * 1000)
        try:
            request = ControlRequest(
                request_id=new_request_id(),
                capability=capability,
                action=action,
                case_number=case_number,
                court=case.court_info(self.node.config.node.name, DOCUMENTS.get(action), document_no),
                subject=case.party,
                asset_id=asset_id,
                measure_id=measure_id,
                amount_fen=args.get("amount_fen"),
                term_days=term_days,
                payee_account=payee if action in (ControlAction.DEDUCT, ControlAction.FREEZE_AND_DEDUCT) else None,
                approval=args.get("approval") or None,
                created_at_ms=now,
            )
        except InvalidModel as exc:
            raise InvalidInput(f"control request: {exc}") from None
        plugin = self.local.for_court(capability, self.me)

        def fn(tx: Tx) -> None:
            row: dict[str, Any] = {
                "request": request.to_dict(),
                "request_id": request.request_id,
                "case_number": case_number,
                "capability": capability,
                "action": action,
                "asset_id": asset_id,
                "target_measure_id": measure_id,
                "amount_fen": request.amount_fen,
                "term_days": term_days,
                "now_ms": tx.now_ms,
                "deadline_at_ms": deadline,
            }
            if plugin is not None:
                measure_rows.add_request(tx.conn, route=LOCAL, plugin=plugin, served_by=str(self.me), **row)
            else:
                eid = self._relay(tx, CONTROL, capability, request.to_dict(), case_number, deadline)
                measure_rows.add_request(tx.conn, route=RELAY, envelope_id=eid, **row)
            tx.audit.append(
                "control_requested",
                tx.now_ms,
                origin=str(self.me),
                detail={
                    "case_number": case_number,
                    "request_id": request.request_id,
                    "capability": capability,
                    "action": action.value,
                    "asset_id": asset_id,
                    "measure_id": measure_id,
                    "route": LOCAL if plugin else RELAY,
                },
            )

        await self._tx(fn)
        if plugin is not None:
            await self._submit_local(CONTROL, plugin, request, deadline)
        wait_s = float(args.get("wait_s") or 0)
        if wait_s > 0:
            await self._wait(lambda: self._request_settled(request.request_id), wait_s)
        shown = await self.show_case({"number": case_number})
        for m in shown["measures"]:
            if m["request_id"] == request.request_id:
                return {"court": str(self.me), "case_number": case_number, "measure": m, "expected_server": served_by}
        raise NotFound(f"control request {request.request_id} vanished")  # pragma: no cover

    async def _next_document_no(self, case_number: str) -> str:
        """The ruling's number for the next control request: 案号 + 之一, 之二 … (执行裁定书文号)."""
        n = await self.node.store.read(
            lambda conn: conn.execute(
                select(func.count()).select_from(measures).where(measures.c.case_number == case_number)
            ).scalar_one()
        )
        return f"{case_number}之{_chinese_number(int(n) + 1)}"

    async def _request_settled(self, request_id: str) -> bool:
        status = await self.node.store.read(
            lambda conn: conn.execute(select(measures.c.status).where(measures.c.request_id == request_id)).scalar()
        )
        return status is not None and status != PENDING

    # -- reminders -------------------------------------------------------------------------------

    async def remind(self, args: dict[str, Any]) -> Any:
        """Admin ``control.remind``: raise the renewal reminders due now (the periodic check does
        the same); returns what was raised."""
        raised = await self.check_reminders()
        return {"court": str(self.me), "now_ms": self.clock.now_ms(), "raised": [r.to_dict() for r in raised]}

    async def check_reminders(self) -> list[measure_rows.Reminder]:
        now = self.clock.now_ms()
        lead, final = self.settings.reminder_lead_days, self.settings.reminder_final_days

        def fn(tx: Tx) -> list[measure_rows.Reminder]:
            raised = measure_rows.check_reminders(tx.conn, now, lead, final)
            for r in raised:
                name = "measure.lapsed" if r.kind == "lapsed" else "measure.expiring"
                tx.events.append((name, r.to_dict()))
                tx.audit.append("measure_" + r.kind, tx.now_ms, origin=str(self.me), detail=r.to_dict())
            return raised

        raised = await self._tx(fn)
        self.reminders_raised += len(raised)
        for r in raised:
            if r.kind == "renewal_due" and r.route == LOCAL and r.plugin and r.measure_id:
                with contextlib.suppress(InvalidModel):
                    event = MeasureExpiring(
                        r.measure_id,
                        r.case_number,
                        str(self.me),
                        r.plugin,
                        ControlAction(r.action),
                        r.asset_id or r.measure_id,
                        r.expires_at_ms,
                        r.days_left,
                    )
                    self._spawn(self.host.measure_expiring(event))
        if raised:
            self._notify()
        return raised

    # -- the serving side: agency.request from other courts ----------------------------------------

    def _on_request(self, delivery: Delivery) -> None:
        """An ``agency.request`` reached this court (runs in the receiving transaction)."""
        p = delivery.payload
        assert isinstance(p, apb.AgencyRequestPayload)
        origin = delivery.opened.origin
        header = delivery.opened.header
        if not origin.is_within(self.me):
            raise AuthorityError(
                f"agency.request from {origin}: {self.me} serves only courts of its own subtree", reason="not_below"
            )
        problem: tuple[str, str] | None = None
        plugin: str | None = None
        request: InquiryRequest | ControlRequest | None = None
        if p.operation not in OPERATIONS or operation_of(p.capability) != p.operation:
            problem = ("bad_request", f"operation {p.operation!r} does not match capability {p.capability!r}")
        else:
            try:
                data = json.loads(p.request_json)
                request = InquiryRequest.from_dict(data) if p.operation == INQUIRY else ControlRequest.from_dict(data)
            except ValueError as exc:
                problem = ("bad_request", f"request is not valid JSON: {exc}")
            except InvalidModel as exc:
                problem = ("bad_request", f"invalid request: {exc}")
        if request is not None and problem is None:
            if request.request_id != p.request_id or request.capability != p.capability:
                problem = ("bad_request", "request id or capability differ between the envelope and the request")
            elif request.court.court_code != str(origin):
                problem = ("bad_request", f"request names court {request.court.court_code}, sent by {origin}")
            elif header.case_number and request.case_number != header.case_number:
                problem = ("bad_request", "case number differs between the envelope and the request")
            else:
                plugin = self.local.for_court(p.capability, origin)
                if plugin is None:
                    problem = ("no_plugin", f"{self.me} has no active plugin for {p.capability} covering {origin}")
        now = delivery.now_ms
        values: dict[str, Any] = {
            "envelope_id": header.id,
            "request_id": p.request_id[:64],
            "origin": str(origin),
            "operation": p.operation[:16],
            "capability": p.capability[:64],
            "case_number": header.case_number,
            "plugin": plugin,
            "request": p.request_json,
            "deadline_at_ms": p.deadline_at_ms or None,
            "received_at_ms": now,
        }
        dup = delivery.conn.execute(
            select(served_requests.c.envelope_id).where(served_requests.c.request_id == values["request_id"])
        ).first()
        if dup is not None:
            problem = problem or ("duplicate_request", f"request id {p.request_id} was already received")
            values["request_id"] = f"dup:{header.id}"
        if problem is not None:
            reason, message = problem
            result = apb.AgencyResultPayload(
                request_id=p.request_id,
                capability=p.capability,
                operation=p.operation,
                status="failed",
                plugin=plugin or "",
                reason=reason,
                message=message,
                received_at_ms=now,
                finished_at_ms=now,
            )
            eid = delivery.reply(RESULT_KIND, result)
            values.update(reported_at_ms=now, status="failed", result_envelope_id=eid)
            delivery.conn.execute(served_requests.insert().values(**values))
            log.info("agency.request %s from %s refused: %s", header.id, origin, message)
            return
        delivery.conn.execute(served_requests.insert().values(**values))
        delivery.tx.audit.append(
            "agency_request_accepted",
            now,
            envelope_id=header.id,
            origin=str(origin),
            detail={"request_id": p.request_id, "capability": p.capability, "plugin": plugin},
        )
        delivery.tx.callbacks.append(lambda: self._spawn(self._submit_served(header.id)))

    async def _submit_served(self, envelope_id: str) -> None:
        row = await self.node.store.read(
            lambda conn: conn.execute(
                select(served_requests).where(served_requests.c.envelope_id == envelope_id)
            ).first()
        )
        if row is None or row.reported_at_ms is not None or row.plugin is None:
            return
        await self._submit_local(row.operation, row.plugin, json.loads(row.request), row.deadline_at_ms)
        now = self.clock.now_ms()

        def mark(conn: Connection) -> Job | None:
            conn.execute(
                update(served_requests)
                .where(served_requests.c.envelope_id == envelope_id, served_requests.c.submitted_at_ms.is_(None))
                .values(submitted_at_ms=now)
            )
            return _get_job(conn, row.request_id)

        job = await self.node.store.write(mark)
        if job is not None and job.final:  # e.g. a duplicate of a finished job
            await self._settle(job.job_id)

    # -- settling finished jobs --------------------------------------------------------------------

    async def _on_job_done(self, event: dict[str, Any]) -> None:
        job_id = event.get("job_id")
        if isinstance(job_id, str):
            self._settle_soon(job_id)

    def _settle_soon(self, job_id: str) -> None:
        """Settle finished jobs in batches: a burst of job_done events costs a few transactions."""
        self._to_settle.add(job_id)
        if self._settle_task is None or self._settle_task.done():
            self._settle_task = asyncio.get_running_loop().create_task(self._settle_pending())

    async def _settle_pending(self) -> None:
        while self._to_settle:
            await asyncio.sleep(0)  # let the rest of a burst arrive
            ids, self._to_settle = sorted(self._to_settle), set()
            try:
                await self._settle(*ids)
            except Exception:  # the periodic check settles them later
                log.exception("settling %d finished jobs failed", len(ids))

    async def _settle(self, *job_ids: str) -> None:
        """Jobs of this node's queue ended: answer the asking court (served request) or record
        the outcome (this court's own request). One transaction; each job in its own savepoint."""

        def fn(tx: Tx) -> None:
            rows = tx.conn.execute(select(agency_jobs).where(agency_jobs.c.job_id.in_(job_ids))).mappings().all()
            jobs = [j for j in (Job.from_row(r) for r in rows) if j.final]
            if not jobs:
                return
            served = {
                r.request_id: r
                for r in tx.conn.execute(
                    select(served_requests).where(
                        served_requests.c.request_id.in_([j.job_id for j in jobs]),
                        served_requests.c.reported_at_ms.is_(None),
                    )
                )
            }
            outcomes = [Outcome.from_job(j, str(self.me)) for j in jobs if j.job_id not in served]
            # This court's own inquiries: in bulk. Those already settled (e.g. by the periodic
            # check before their job_done arrived) are done too: nothing is left to apply.
            done: set[str] = set()
            applied = case_rows.apply_inquiry_outcomes(tx.conn, outcomes, tx.now_ms, found=done)
            for own, case_number, agency in applied:
                self._inquiry_applied(tx, own, case_number, agency)
            # Served requests (answers to other courts) and control measures: one by one.
            rest: list[tuple[Job, Outcome | None]] = [(j, None) for j in jobs if j.job_id in served]
            rest += [(j, o) for j, o in zip((j for j in jobs if j.job_id not in served), outcomes, strict=True)]
            for job, outcome in rest:
                if outcome is not None and outcome.request_id in done:
                    continue
                tx.flush()
                mark, n_events, n_callbacks = tx.audit.mark(), len(tx.events), len(tx.callbacks)
                try:
                    with tx.conn.begin_nested():
                        if outcome is None:
                            self._report(tx, served[job.job_id], job)
                        else:
                            self._apply(tx, outcome)
                        tx.flush()
                except Exception:
                    tx.outbox_rows.clear()
                    tx.audit.rollback(mark)
                    del tx.events[n_events:], tx.callbacks[n_callbacks:]
                    log.exception("settling job %s failed", job.job_id)

        await self._tx(fn)

    def _report(self, tx: Tx, served: Any, job: Job) -> None:
        """Send ``agency.result`` for a served request and mark it reported — one transaction."""
        outcome = Outcome.from_job(job, str(self.me))
        payload = outcome.to_payload(served.capability, served.operation, served.received_at_ms, job.elapsed_ms or 0)
        eid = self.node.exchange.emit(
            tx,
            RESULT_KIND,
            Target.to_court(CourtCode.parse(served.origin)),
            payload,
            correlation_id=served.envelope_id,
            case_number=served.case_number,
        )
        tx.conn.execute(
            update(served_requests)
            .where(served_requests.c.envelope_id == served.envelope_id)
            .values(reported_at_ms=tx.now_ms, status=outcome.status, result_envelope_id=eid)
        )

    def _on_result(self, delivery: Delivery) -> None:
        """An ``agency.result`` for one of this court's requests (runs in the receiving transaction)."""
        p = delivery.payload
        assert isinstance(p, apb.AgencyResultPayload)
        origin = delivery.opened.origin
        correlation = delivery.opened.header.correlation_id
        if not below(self.me, origin):
            raise AuthorityError(f"agency.result from {origin}: only an ancestor serves {self.me}", reason="not_above")
        conn = delivery.conn
        envelope = conn.execute(
            select(case_inquiries.c.envelope_id).where(case_inquiries.c.request_id == p.request_id)
        ).scalar()
        if envelope is None:
            envelope = conn.execute(
                select(measures.c.envelope_id).where(measures.c.request_id == p.request_id)
            ).scalar()
        if envelope is None:
            raise NotFound(f"agency.result for unknown request {p.request_id}", reason="unknown_request")
        if envelope != correlation:
            raise AuthorityError(
                f"agency.result for {p.request_id} answers envelope {correlation}, not the request {envelope}",
                reason="bad_correlation",
            )
        self._apply(delivery.tx, Outcome.from_payload(p, str(origin)))

    def _inquiry_applied(self, tx: Tx, outcome: Outcome, case_number: str, agency: str) -> None:
        """After an inquiry's outcome is recorded: measures it reports, audit, events, waiters."""
        changes = measure_rows.sync_reported(tx.conn, agency, outcome.result, tx.now_ms)
        detail = {
            "request_id": outcome.request_id,
            "status": outcome.status,
            "served_by": outcome.served_by,
            "plugin": outcome.plugin,
            "case_number": case_number,
            "agency": agency,
        }
        tx.audit.append("inquiry_answered", tx.now_ms, origin=outcome.served_by, detail=detail)
        tx.events.append(("agency.answered", detail))
        for change in changes:
            tx.events.append(("measure.changed", change))
        tx.callbacks.append(self._notify)

    def _apply(self, tx: Tx, outcome: Outcome) -> None:
        """Record an outcome on this court's inquiry or measure row (inside ``tx``)."""
        conn = tx.conn
        detail: dict[str, Any] = {
            "request_id": outcome.request_id,
            "status": outcome.status,
            "served_by": outcome.served_by,
            "plugin": outcome.plugin,
        }
        inquiry = case_rows.apply_inquiry_outcome(conn, outcome, tx.now_ms)
        if inquiry is not None:
            self._inquiry_applied(tx, outcome, *inquiry)
            return
        applied = measure_rows.apply_control_outcome(conn, outcome, tx.now_ms)
        if applied is None:
            return
        case_number, changes = applied
        detail.update(case_number=case_number)
        self._refresh_waiting(tx, outcome.request_id)
        tx.audit.append("control_answered", tx.now_ms, origin=outcome.served_by, detail=detail)
        tx.events.append(("control.answered", detail))
        for change in changes:
            tx.events.append(("measure.changed", change))
        tx.callbacks.append(self._notify)

    def _refresh_waiting(self, tx: Tx, request_id: str) -> None:
        """After a release answered, ask the agency again for the cases of this court that wait
        (轮候) on the same asset: their measure may have taken effect (the agency promotes it)."""
        row = tx.conn.execute(
            select(measures.c.action, measures.c.agency, measures.c.asset_id, measures.c.status).where(
                measures.c.request_id == request_id
            )
        ).first()
        if row is None or row.status != "answered" or row.action not in ("release", "release_waiting", "deduct"):
            return
        if row.asset_id is None:
            return
        waiting = tx.conn.execute(
            select(measures.c.case_number)
            .where(
                measures.c.agency == row.agency,
                measures.c.asset_id == row.asset_id,
                measures.c.state == measure_rows.WAITING,
            )
            .distinct()
        ).scalars()
        for case_number in waiting:
            tx.callbacks.append(self._reinquire_soon(str(case_number), str(row.agency)))

    def _reinquire_soon(self, case_number: str, agency: str) -> Callable[[], None]:
        def go() -> None:
            self._spawn(self.start_inquiries(case_number, again=True, only={agency}))

        return go

    # -- the periodic check ------------------------------------------------------------------------

    async def _periodic(self) -> None:
        # Soon after start (finish what a crash interrupted), then every check_interval_s.
        delay = min(5.0, self.settings.check_interval_s)
        while True:
            await asyncio.sleep(delay)
            delay = self.settings.check_interval_s
            try:
                await self.tick()
            except Exception:
                log.exception("agency check failed")

    async def tick(self) -> dict[str, int]:
        """One round of recovery, time-outs, queue sweep and reminders (also run on demand)."""
        now = self.clock.now_ms()
        grace = now - 2_000
        store = self.node.store
        counts = {"started": 0, "resubmitted": 0, "settled": 0, "timed_out": 0, "reminders": 0}

        unstarted = await store.read(lambda conn: case_rows.cases_to_start(conn, grace))
        if unstarted:
            await self.start_inquiries(*unstarted)
            counts["started"] = len(unstarted)

        def pending(conn: Connection) -> tuple[list[Any], list[Any]]:
            local = case_rows.pending_local_inquiries(conn) + measure_rows.pending_local_requests(conn)
            served = conn.execute(select(served_requests).where(served_requests.c.reported_at_ms.is_(None))).all()
            jobs = jobs_by_id(conn, [item[0] for item in local] + [s.request_id for s in served])
            return [(item, jobs.get(item[0])) for item in local], [(s, jobs.get(s.request_id)) for s in served]

        local, served = await store.read(pending)
        finished: list[str] = []
        for (rid, plugin, request, deadline), job in local:
            if job is None:
                operation = CONTROL if "action" in request else INQUIRY
                await self._submit_local(operation, plugin, request, deadline)
                counts["resubmitted"] += 1
            elif job.final:
                finished.append(rid)
        for row, job in served:
            if job is None:
                await self._submit_served(row.envelope_id)
                counts["resubmitted"] += 1
            elif job.final:
                finished.append(row.request_id)
        for i in range(0, len(finished), 500):  # jobs whose job_done was missed: settled in bulk
            await self._settle(*finished[i : i + 500])
        counts["settled"] = len(finished)

        def time_out(tx: Tx) -> int:
            done = case_rows.time_out_inquiries(tx.conn, tx.now_ms) + measure_rows.time_out_requests(tx.conn, tx.now_ms)
            for case_number, request_id in done:
                tx.events.append(("agency.timed_out", {"case_number": case_number, "request_id": request_id}))
            return len(done)

        counts["timed_out"] = await self._tx(time_out)
        if counts["timed_out"]:
            self._notify()
        if self.queue is not None:
            await self.queue.sweep()
        counts["reminders"] = len(await self.check_reminders())
        return counts

    # -- status ------------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        def read(conn: Connection) -> dict[str, Any]:
            n_cases = conn.execute(select(func.count()).select_from(cases)).scalar_one()
            by_state: dict[str, int] = dict(
                conn.execute(select(case_inquiries.c.status, func.count()).group_by(case_inquiries.c.status)).all()
            )
            served = conn.execute(
                select(func.count()).select_from(served_requests).where(served_requests.c.reported_at_ms.is_(None))
            ).scalar_one()
            active = conn.execute(
                select(func.count()).select_from(measures).where(measures.c.state.in_(("active", "waiting")))
            ).scalar_one()
            return {
                "cases": int(n_cases),
                "inquiries": {k: int(v) for k, v in by_state.items()},
                "served_unreported": int(served),
                "measures_in_force": int(active),
            }

        data = await self.node.store.read(read)
        queue = await queue_status(self.node.store, clock=self.clock)
        stats = self.worker.stats if self.worker is not None else None
        plugins = []
        for s in self.host.list():
            plugins.append(
                {
                    "name": s.name,
                    "state": s.state,
                    "capabilities": list(s.info.capabilities) if s.info else [],
                    "scope": self.local.scopes().get(s.name, s.info.scope if s.info else None),
                    "health": s.health.status.value if s.health else None,
                    "calls": s.stats.calls,
                    "failures": sum(s.stats.failures.values()),
                }
            )
        return {
            **data,
            "plugins": plugins,
            "offered": sorted(self.node.router.capabilities),
            "queue": {
                "depth": sum(c.get(PENDING, 0) for c in queue["plugins"].values()),
                "by_plugin": queue["plugins"],
                "oldest_pending_age_ms": queue["oldest_pending_age_ms"],
                "dead_letters": [
                    {
                        "job_id": d["job_id"],
                        "plugin": d["plugin"],
                        "capability": d["capability"],
                        "case_number": d["case_number"],
                        "status": d["status"],
                        "attempts": d["attempts"],
                        "reason": (d["error"] or {}).get("kind"),
                        "message": (d["error"] or {}).get("message"),
                    }
                    for d in queue["dead_letters"]
                ],
            },
            "worker": None
            if stats is None
            else {
                "id": self.worker.worker_id if self.worker else None,
                "handled": stats.handled,
                "answered": stats.answered,
                "retried": stats.retried,
                "ended": stats.ended,
                "duplicates": stats.duplicates,
            },
            "reminders_raised": self.reminders_raised,
            "settings": {
                "reminder_lead_days": self.settings.reminder_lead_days,
                "reminder_final_days": self.settings.reminder_final_days,
                "inquiry_timeout_s": self.settings.inquiry_timeout_s,
            },
        }


def retry_policy(settings: AgencySection) -> RetryPolicy:
    """The job queue's retry policy from ``[agency]``: the node and every ``court-hub worker``
    build it from the same config.toml, so they agree on attempts, backoff and ack window."""
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        backoff_s=tuple(settings.retry_backoff_s),
        ack_wait_s=settings.ack_wait_s,
    )
