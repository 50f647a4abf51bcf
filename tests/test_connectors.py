"""The four built-in agency connectors against their reference simulators, each running as a real
separate process, always through the :class:`~hub.plugins.host.PluginHost` (register, configure
with the simulator's URL, call one plugin with a timeout).

One simulator process per agency for the module; every test resets the ones it uses
(``/admin/reset``, clock pinned at 2026-01-01) and moves their clocks instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from hub.clock import FixedClock
from hub.netutil import free_port
from hub.plugins.host import CallOutcome, PluginFailure, PluginHost
from hub.plugins.models import (
    AgencyKind,
    ControlAction,
    ControlRequest,
    ControlResult,
    ControlStatus,
    CourtInfo,
    HealthStatus,
    InquiryRequest,
    InquiryResult,
    InquiryStatus,
    MeasureExpiring,
    Subject,
)
from plugins.agency.client import AgencyClient
from plugins.agency.connector import AgencyConnector, AgencyReplyInvalid, parse_settings
from plugins.agency.model import MeasureStatus
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import SeededSubject, subject_by_role
from plugins.agency.synth import make_resident_id
from plugins.agency.testing import DAY_MS, T0_ISO, T0_MS, Approver, write_trust_file
from plugins.bank.client import BankClient
from plugins.bank.plugin import BankConnector
from plugins.land.client import LandClient
from plugins.land.plugin import LandConnector
from plugins.public_security.client import PublicSecurityClient
from plugins.public_security.plugin import PublicSecurityConnector
from plugins.telecom.client import TelecomClient
from plugins.telecom.plugin import TelecomConnector

SEED = 7
KINDS = ("bank", "land", "public_security", "telecom")
CONNECTORS: dict[str, type[AgencyConnector[Any]]] = {
    "bank": BankConnector,
    "land": LandConnector,
    "public_security": PublicSecurityConnector,
    "telecom": TelecomConnector,
}
CLIENTS: dict[str, type[AgencyClient]] = {
    "bank": BankClient,
    "land": LandClient,
    "public_security": PublicSecurityClient,
    "telecom": TelecomClient,
}

CASE = "（2026）豫1402执100号"
HERE = CourtInfo(
    court_code="豫1402",
    court_name="商丘市梁园区人民法院",
    judge_name="李明",
    judge_phone="0370-3211234",
    officer_ids=("豫1402-0001", "豫1402-0002"),
    document_name="协助执行通知书",
    document_no="（2026）豫1402执100号之一",
)
OTHER_CASE = "（2026）桂0305执7号"
OTHER = CourtInfo(
    court_code="桂0305",
    court_name="桂林市七星区人民法院",
    judge_name="韦华",
    judge_phone="0773-5811234",
    officer_ids=("桂0305-0001", "桂0305-0002"),
    document_name="协助执行通知书",
    document_no="（2026）桂0305执7号之一",
)
UPPER = Approver("豫14")  # the intermediate court that approves 边控 / 定位; trusted by the simulators
ROGUE = Approver("豫14")  # the same court code with a key nobody trusts

RICH = subject_by_role(SEED, "rich")
BUSY = subject_by_role(SEED, "encumbered")
UNKNOWN = Subject("查无此人", make_resident_id("411402", date(1990, 5, 5), 7, True))


def subj(s: SeededSubject) -> Subject:
    return Subject(s.name, s.id_no)


# --------------------------------------------------------------------------- harness


@pytest.fixture(scope="module")
def trust_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trust_file(tmp_path_factory.mktemp("trust") / "approvers.json", UPPER)


@pytest.fixture(scope="module")
def sims(trust_file: Path) -> Iterator[dict[str, SimulatorProcess]]:
    """The four simulators as separate processes (started side by side, about a second)."""

    def start(kind: str) -> SimulatorProcess:
        return SimulatorProcess.start(kind, seed=SEED, now=T0_ISO, approvers=trust_file)

    with ThreadPoolExecutor(len(KINDS)) as pool:
        procs = dict(zip(KINDS, pool.map(start, KINDS), strict=True))
    yield procs
    for proc in procs.values():
        assert proc.stop() == 0


@dataclass
class Link:
    """One connector registered with a host and configured for its simulator."""

    kind: str
    host: PluginHost
    plugin: AgencyConnector[Any]
    admin: Any  # the agency's typed client: admin endpoints (clock, faults) and direct views
    seq: int = 0
    requests: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.plugin.name

    def rid(self) -> str:
        self.seq += 1
        return f"{self.kind[:4]}-{self.seq:04d}"

    async def inquire(
        self, subject: Subject, *, params: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> CallOutcome[InquiryResult]:
        request = InquiryRequest(self.rid(), f"{self.kind}.inquiry", CASE, HERE, subject, params or {})
        return await self.host.call_inquire(self.name, request, timeout_s=timeout_s)

    def control(
        self,
        action: ControlAction | str,
        subject: Subject,
        *,
        court: CourtInfo = HERE,
        case: str = CASE,
        request_id: str | None = None,
        **fields: Any,
    ) -> ControlRequest:
        return ControlRequest(
            request_id=request_id or self.rid(),
            capability=f"{self.kind}.control",
            action=ControlAction(action),
            case_number=case,
            court=court,
            subject=subject,
            **fields,
        )

    async def send(self, request: ControlRequest, timeout_s: float | None = None) -> CallOutcome[ControlResult]:
        return await self.host.call_control(self.name, request, timeout_s=timeout_s)

    async def do(self, action: ControlAction | str, subject: Subject, **fields: Any) -> ControlResult:
        """Send a control request and return its (successful) answer."""
        return (await self.send(self.control(action, subject, **fields))).unwrap()


Connect = Callable[..., Awaitable[Link]]


@pytest.fixture
async def connect(sims: dict[str, SimulatorProcess]) -> AsyncIterator[Connect]:
    """``await connect(kind, **settings)``: reset that simulator, register its connector with a new
    host configured for it (``url`` of the simulator unless given) and return the :class:`Link`."""
    links: list[Link] = []

    async def make(kind: str, *, plugin: AgencyConnector[Any] | None = None, **settings: Any) -> Link:
        admin = CLIENTS[kind](sims[kind].url, timeout_s=5)
        await admin.reset(T0_MS)
        plugin = plugin or CONNECTORS[kind]()
        host = PluginHost({plugin.name: {"url": sims[kind].url, "timeout_s": 5, **settings}})
        assert host.register(plugin) == plugin.name
        link = Link(kind, host, plugin, admin)
        links.append(link)
        return link

    yield make
    for link in links:
        await link.plugin.aclose()
        await link.admin.close()


def failure(outcome: CallOutcome[Any]) -> PluginFailure:
    assert outcome.failure is not None, f"expected a failure, got {outcome.value}"
    return outcome.failure


# --------------------------------------------------------------------------- info and configuration


def test_info_capabilities_and_scope() -> None:
    config = {kind: {"url": f"http://{kind}.example"} for kind in KINDS}
    host = PluginHost({**config, "land": {"url": "http://land.example", "scope": "豫14"}})
    for cls in CONNECTORS.values():
        host.register(cls())
    assert host.names() == ["bank", "land", "public_security", "telecom"]
    assert host.capabilities() == {
        "bank.control": ["bank"],
        "bank.inquiry": ["bank"],
        "land.control": ["land"],
        "land.inquiry": ["land"],
        "public_security.control": ["public_security"],
        "public_security.inquiry": ["public_security"],
        "telecom.control": ["telecom"],
        "telecom.inquiry": ["telecom"],
    }
    info = host.info("public_security")
    assert info.agency_kind is AgencyKind.PUBLIC_SECURITY and "border_control" in info.description
    land = host.plugin("land")
    assert isinstance(land, LandConnector)
    assert land.courthub_plugin_info().scope == "豫14"  # configured 点对点 scope
    assert BankConnector(name="bank-icbc", scope="豫14").courthub_plugin_info().name == "bank-icbc"


@pytest.mark.parametrize(
    ("kind", "settings", "key"),
    [
        ("bank", {}, "url"),
        ("bank", {"url": 42}, "url"),
        ("bank", {"url": "ftp://bank.example"}, "url"),
        ("bank", {"url": "http://"}, "url"),
        ("bank", {"url": "http://bank.example:99999"}, "url"),
        ("bank", {"url": "http://bank.example/?x=1"}, "url"),
        ("land", {"url": "http://land.example", "timeout_s": 0}, "timeout_s"),
        ("land", {"url": "http://land.example", "timeout_s": True}, "timeout_s"),
        ("land", {"url": "http://land.example", "scope": "豫99999"}, "scope"),
        ("land", {"url": "http://land.example", "timout_s": 3}, "timout_s"),
        ("bank", {"url": "http://bank.example", "approvers": {"豫14": "x"}}, "approvers"),
        ("telecom", {"url": "http://t.example", "approvers": "/nonexistent/approvers.json"}, "approvers"),
        ("telecom", {"url": "http://t.example", "approvers": {"豫14": "not-a-key"}}, "approvers.豫14[0]"),
        ("telecom", {"url": "http://t.example", "approvers": {"nowhere": "x"}}, "approvers.nowhere"),
    ],
)
def test_invalid_configuration_names_the_key(kind: str, settings: dict[str, Any], key: str) -> None:
    plugin = CONNECTORS[kind]()
    host = PluginHost({kind: settings})
    host.register(plugin)
    (status,) = host.list()
    assert status.state == "unconfigured"
    assert "PluginConfigError" in status.message and f"plugins.{kind}.{key}:" in status.message, status.message


def test_valid_configuration(trust_file: Path) -> None:
    s = parse_settings("ps", {"url": " https://gw.example:8443/ps/ ", "timeout_s": 3, "scope": "豫14"}, approvals=False)
    assert (s.url, s.timeout_s, s.scope, s.approvers) == ("https://gw.example:8443/ps", 3.0, "豫14", None)
    from plugins.agency.approval import public_key_text

    key = public_key_text(UPPER.key.public_key())
    inline = parse_settings("t", {"url": "http://t", "approvers": {"豫14": [key]}}, approvals=True)
    from_file = parse_settings("t", {"url": "http://t", "approvers": str(trust_file)}, approvals=True)
    assert inline.approvers is not None and from_file.approvers is not None
    assert list(inline.approvers) == list(from_file.approvers) == ["豫14"]


# --------------------------------------------------------------------------- inquiry


async def test_bank_inquiry_of_a_rich_debtor_and_an_unknown_subject(connect: Connect) -> None:
    bank = await connect("bank")
    result = (await bank.inquire(subj(RICH))).unwrap()
    assert result.status is InquiryStatus.ANSWERED
    assert {(a.asset_id, a.amount_fen) for a in result.assets} == {
        (a.asset_id, a.balance_fen) for a in RICH.bank_accounts
    }
    first = result.assets[0]
    assert first.kind == "deposit" and first.holder_name == RICH.name and "支行" in first.institution
    assert first.attributes["available_fen"] == first.amount_fen and first.attributes["measures"] == []
    nobody = (await bank.inquire(UNKNOWN)).unwrap()
    assert nobody.status is InquiryStatus.ANSWERED and nobody.assets == ()
    busy = (await bank.inquire(subj(BUSY))).unwrap()
    (account,) = busy.assets
    assert account.attributes["frozen_fen"] == BUSY.bank_accounts[0].frozen_by_others_fen
    assert account.attributes["measures"][0]["status"] == "active"


async def test_bank_transaction_detail_and_bad_params(connect: Connect) -> None:
    bank = await connect("bank")
    account = RICH.bank_accounts[0].asset_id
    params = {"from": "2025-01-01", "to": "2025-12-31", "account_no": account}
    result = (await bank.inquire(subj(RICH), params=params)).unwrap()
    detail = {a.asset_id: a.attributes.get("transactions") for a in result.assets}
    lines = detail[account]
    assert lines and all(set(t) >= {"at_ms", "amount_fen", "summary"} for t in lines)
    assert [v for k, v in detail.items() if k != account] == [None]
    bad = failure(await bank.inquire(subj(RICH), params={"from": "2025-13-01", "to": "2025-12-31"}))
    assert (bad.error_type, bad.retryable) == ("AgencyRejected", False) and "'from'" in bad.detail
    unknown = failure(await bank.inquire(subj(RICH), params={"since": "2025-01-01"}))
    assert unknown.error_type == "AgencyRejected" and "since" in unknown.detail


async def test_other_agencies_answer_inquiries(connect: Connect) -> None:
    land, ps, telecom = await asyncio.gather(connect("land"), connect("public_security"), connect("telecom"))
    estates = (await land.inquire(subj(RICH))).unwrap()
    assert [a.asset_id for a in estates.assets] == [p.asset_id for p in RICH.properties]
    assert all(a.kind == "real_estate" and a.attributes["area_m2"] > 0 for a in estates.assets)
    assert (await land.inquire(UNKNOWN)).unwrap().assets == ()

    person = (await ps.inquire(subj(RICH), params={"from": "2025-01-01", "to": "2026-01-01"})).unwrap()
    kinds = [a.kind for a in person.assets]
    assert kinds == ["household", "vehicle", "vehicle", "hotel_stay", "hotel_stay", "hotel_stay"]
    household = person.assets[0]
    assert household.asset_id == RICH.id_no and "派出所" in household.institution
    assert {a.asset_id for a in person.assets if a.kind == "vehicle"} == {v.asset_id for v in RICH.vehicles}
    nobody = (await ps.inquire(UNKNOWN)).unwrap()
    assert nobody.status is InquiryStatus.NOT_FOUND and nobody.message

    numbers = (await telecom.inquire(subj(RICH))).unwrap()
    assert [a.asset_id for a in numbers.assets] == list(RICH.phone_numbers)
    assert all(a.kind == "phone_number" and a.institution for a in numbers.assets)


async def test_name_mismatch_is_a_rejected_answer(connect: Connect) -> None:
    bank = await connect("bank")
    result = (await bank.inquire(Subject("张冒名", RICH.id_no))).unwrap()
    assert result.status is InquiryStatus.REJECTED and result.message is not None and "不符" in result.message


# --------------------------------------------------------------------------- control: bank


async def test_bank_freeze_in_full_and_partially(connect: Connect) -> None:
    bank = await connect("bank")
    account = RICH.bank_accounts[0].asset_id
    full = await bank.do("freeze", subj(RICH), asset_id=account, amount_fen=30_000_000, term_days=365)
    assert full.status is ControlStatus.DONE and full.measure_id is not None and full.reason is None
    assert (full.requested_amount_fen, full.controlled_amount_fen) == (30_000_000, 30_000_000)
    assert (full.effective_at_ms, full.expires_at_ms) == (T0_MS, T0_MS + 365 * DAY_MS)
    assert full.attributes["control_code"] == "01"

    busy_account = BUSY.bank_accounts[0].asset_id  # 80,000.00 元, 50,000.00 元 frozen by another court
    part = await bank.do("freeze", subj(BUSY), asset_id=busy_account, amount_fen=6_000_000, term_days=180)
    assert part.status is ControlStatus.PARTIAL and not part.complete
    assert (part.requested_amount_fen, part.controlled_amount_fen) == (6_000_000, 3_000_000)
    assert part.reason is not None and "已被他案冻结" in part.reason
    nothing = await bank.do("freeze", subj(BUSY), asset_id=busy_account, amount_fen=100, term_days=30)
    assert nothing.status is ControlStatus.NOT_CONTROLLED and nothing.measure_id is None and nothing.reason


async def test_bank_waiting_freeze_is_queued_then_promoted_after_release(connect: Connect) -> None:
    bank = await connect("bank")
    account = RICH.bank_accounts[1]  # 12,345.67 元
    assert account.balance_fen is not None
    first = await bank.do(
        "freeze",
        subj(RICH),
        court=OTHER,
        case=OTHER_CASE,
        asset_id=account.asset_id,
        amount_fen=account.balance_fen,
        term_days=365,
    )
    assert first.status is ControlStatus.DONE
    waiting = await bank.do("waiting", subj(RICH), asset_id=account.asset_id, amount_fen=1_000_000, term_days=365)
    assert waiting.status is ControlStatus.QUEUED and waiting.queue_position == 1 and waiting.complete
    assert waiting.expires_at_ms is None and waiting.measure_id is not None
    second = await bank.do("waiting", subj(RICH), asset_id=account.asset_id, amount_fen=500_000, term_days=365)
    assert second.queue_position == 2

    await bank.admin.advance_clock(days=10)
    released = await bank.do("release", subj(RICH), court=OTHER, case=OTHER_CASE, measure_id=first.measure_id)
    assert released.status is ControlStatus.DONE and released.expires_at_ms is None
    assert any(waiting.measure_id in e and "promoted" in e for e in released.attributes["events"])
    view = await bank.admin.measure(waiting.measure_id)
    assert (view.status, view.controlled_amount_fen) == (MeasureStatus.ACTIVE, 1_000_000)
    assert view.expires_at_ms == T0_MS + 10 * DAY_MS + 365 * DAY_MS  # the term starts when it takes effect
    # The hub learns the promotion from the agency too: the inquiry shows the measure in force.
    (asset,) = [a for a in (await bank.inquire(subj(RICH))).unwrap().assets if a.asset_id == account.asset_id]
    assert {m["measure_id"]: m["status"] for m in asset.attributes["measures"]}[waiting.measure_id] == "active"


async def test_bank_renewal_before_expiry_and_refusal_after_lapse(connect: Connect) -> None:
    bank = await connect("bank")
    account = RICH.bank_accounts[0].asset_id
    freeze = await bank.do("freeze", subj(RICH), asset_id=account, amount_fen=1_000_000, term_days=30)
    await bank.admin.advance_clock(days=25)
    renewed = await bank.do("renew", subj(RICH), measure_id=freeze.measure_id, term_days=365)
    assert renewed.status is ControlStatus.DONE and renewed.measure_id == freeze.measure_id
    assert renewed.expires_at_ms == T0_MS + (30 + 365) * DAY_MS and renewed.attributes["renewals"] == 1

    short = await bank.do("freeze", subj(RICH), asset_id=account, amount_fen=1_000, term_days=10)
    await bank.admin.advance_clock(days=30)  # past the short freeze's expiry: it lapsed (到期失效)
    lapsed = await bank.do("renew", subj(RICH), measure_id=short.measure_id, term_days=30)
    assert lapsed.status is ControlStatus.REJECTED and lapsed.reason is not None and "失效" in lapsed.reason
    assert lapsed.attributes["agency_reason"] == "measure_lapsed"


async def test_bank_deduct_from_a_freeze(connect: Connect) -> None:
    bank = await connect("bank")
    account = RICH.bank_accounts[0].asset_id
    freeze = await bank.do("freeze", subj(RICH), asset_id=account, amount_fen=2_000_000, term_days=365)
    deduct = await bank.do(
        "deduct",
        subj(RICH),
        asset_id=account,
        measure_id=freeze.measure_id,
        amount_fen=2_500_000,
        payee_account="豫1402执行款专户",
    )
    assert deduct.status is ControlStatus.PARTIAL and deduct.reason is not None
    assert (deduct.requested_amount_fen, deduct.controlled_amount_fen) == (2_500_000, 2_000_000)
    assert deduct.attributes["remaining_controlled_fen"] == 0


@pytest.mark.parametrize(
    ("kind", "limit", "asset"),
    [
        ("bank", 365, RICH.bank_accounts[0].asset_id),  # deposits: one year
        ("land", 1095, RICH.properties[0].asset_id),  # real estate: three years
        ("public_security", 730, RICH.vehicles[0].asset_id),  # vehicles (movables): two years
    ],
)
async def test_term_limits(connect: Connect, kind: str, limit: int, asset: str) -> None:
    link = await connect(kind)
    action = "freeze" if kind == "bank" else "seal"
    amount = {"amount_fen": 100_000} if kind == "bank" else {}
    too_long = await link.do(action, subj(RICH), asset_id=asset, term_days=limit + 1, **amount)
    assert too_long.status is ControlStatus.REJECTED and too_long.attributes["agency_reason"] == "term_exceeds_limit"
    assert too_long.reason is not None and str(limit) in too_long.reason and "民诉法解释" in too_long.reason
    ok = await link.do(action, subj(RICH), asset_id=asset, term_days=limit, **amount)
    assert ok.status is ControlStatus.DONE and ok.expires_at_ms == T0_MS + limit * DAY_MS


async def test_the_same_request_id_takes_effect_once(connect: Connect) -> None:
    bank = await connect("bank")
    account = RICH.bank_accounts[0].asset_id
    request = bank.control("freeze", subj(RICH), asset_id=account, amount_fen=10_000_000, term_days=365)
    first = (await bank.send(request)).unwrap()
    again = (await bank.send(request)).unwrap()
    together = [o.unwrap() for o in await asyncio.gather(*(bank.send(request) for _ in range(3)))]
    assert {(r.status, r.measure_id, r.controlled_amount_fen) for r in (again, *together)} == {
        (first.status, first.measure_id, first.controlled_amount_fen)
    }
    (asset,) = [a for a in (await bank.inquire(subj(RICH))).unwrap().assets if a.asset_id == account]
    assert len(asset.attributes["measures"]) == 1 and asset.attributes["frozen_fen"] == 10_000_000


async def test_a_lost_reply_is_retryable_and_the_retry_does_not_act_twice(connect: Connect) -> None:
    land = await connect("land")
    estate = RICH.properties[0].asset_id
    request = land.control("seal", subj(RICH), asset_id=estate, term_days=1095)
    await land.admin.set_fault("drop_reply", count=1)  # the registry seals, then the answer is lost
    lost = failure(await land.send(request))
    assert (lost.error_type, lost.retryable) == ("AgencyUnavailable", True)
    retry = (await land.send(request)).unwrap()
    assert retry.status is ControlStatus.DONE and retry.measure_id is not None
    (asset, *_) = (await land.inquire(subj(RICH))).unwrap().assets
    assert [m["measure_id"] for m in asset.attributes["measures"]] == [retry.measure_id]


# --------------------------------------------------------------------------- control: land, vehicles


async def test_land_seal_waiting_seal_and_release(connect: Connect) -> None:
    land = await connect("land")
    estate = BUSY.properties[0].asset_id  # already sealed by another court
    refused = await land.do("seal", subj(BUSY), asset_id=estate, term_days=1095)
    assert refused.status is ControlStatus.NOT_CONTROLLED and refused.reason and "轮候查封" in refused.reason
    queued = await land.do("waiting", subj(BUSY), asset_id=estate, term_days=1095)
    assert queued.status is ControlStatus.QUEUED and queued.queue_position == 1
    cancelled = await land.do("release_waiting", subj(BUSY), measure_id=queued.measure_id)
    assert cancelled.status is ControlStatus.DONE and cancelled.attributes["measure_status"] == "cancelled"
    mine = await land.do("seal", subj(RICH), asset_id=RICH.properties[1].asset_id, term_days=1000)
    released = await land.do("release", subj(RICH), measure_id=mine.measure_id)
    assert released.status is ControlStatus.DONE and released.attributes["measure_status"] == "released"


async def test_protocol_refusals_raise_agency_rejected(connect: Connect) -> None:
    land = await connect("land")
    with_amount = land.control("seal", subj(RICH), asset_id=RICH.properties[0].asset_id, term_days=30, amount_fen=1)
    bad = failure(await land.send(with_amount))  # real estate is sealed whole: no amount
    assert (bad.kind, bad.error_type, bad.retryable) == ("raised", "AgencyRejected", False)
    assert "unexpected_field" in bad.detail and "金额" in bad.detail
    deduct = land.control("deduct", subj(RICH), asset_id=RICH.properties[0].asset_id, amount_fen=1, payee_account="x")
    unsupported = failure(await land.send(deduct))
    assert unsupported.error_type == "AgencyRejected" and "not supported" in unsupported.detail
    request_id = land.rid()
    first = land.control("seal", subj(RICH), asset_id=RICH.properties[0].asset_id, term_days=30, request_id=request_id)
    assert (await land.send(first)).unwrap().status is ControlStatus.DONE
    reused = land.control("seal", subj(RICH), asset_id=RICH.properties[1].asset_id, term_days=30, request_id=request_id)
    conflict = failure(await land.send(reused))
    assert conflict.error_type == "AgencyRejected" and "request_id_conflict" in conflict.detail


async def test_vehicle_seal_at_public_security(connect: Connect) -> None:
    ps = await connect("public_security")
    car = RICH.vehicles[0].asset_id
    sealed = await ps.do("seal", subj(RICH), asset_id=car, term_days=730)
    assert sealed.status is ControlStatus.DONE and sealed.measure_id is not None
    assert sealed.measure_id.startswith("CL-") and sealed.attributes["asset_id"] == car


# --------------------------------------------------------------------------- approvals


def approval(act: str, *, who: Approver = UPPER, subject: SeededSubject = RICH, case: str = CASE) -> str:
    return who.approve(case_no=case, act=act, subject_id=subject.id_no, now_ms=T0_MS)


async def test_border_control_needs_a_valid_sealed_approval(connect: Connect) -> None:
    ps = await connect("public_security")
    for token, reason in [
        ("not-a-jws", "approval_malformed"),
        (approval("border_control", who=ROGUE), "approval_bad_signature"),
        (approval("location"), "approval_wrong_action"),
        (approval("border_control", case="（2026）豫1402执999号"), "approval_wrong_case"),
    ]:
        refused = await ps.do("border_control", subj(RICH), approval=token, term_days=180)
        assert refused.status is ControlStatus.REJECTED and refused.reason, token
        assert refused.attributes["agency_reason"] == reason and refused.attributes["http_status"] == 403
    assert (await ps.inquire(subj(RICH))).unwrap().assets[0].attributes["border_controls"] == []

    token = approval("border_control")
    applied = await ps.do("border_control", subj(RICH), approval=token, term_days=180)
    assert applied.status is ControlStatus.DONE and applied.measure_id is not None
    assert applied.measure_id.startswith("BKZ-") and applied.expires_at_ms == T0_MS + 180 * DAY_MS
    assert applied.attributes["approval_iss"] == "豫14"
    (control,) = (await ps.inquire(subj(RICH))).unwrap().assets[0].attributes["border_controls"]
    assert control["control_id"] == applied.measure_id and control["status"] == "active"
    replayed = await ps.do("border_control", subj(RICH), approval=token, term_days=180)
    assert replayed.status is ControlStatus.REJECTED and replayed.attributes["agency_reason"] == "approval_replayed"
    too_long = await ps.do("border_control", subj(RICH), approval=approval("border_control"), term_days=400)
    assert too_long.status is ControlStatus.REJECTED and too_long.attributes["agency_reason"] == "term_exceeds_limit"

    lifted = await ps.do("release", subj(RICH), measure_id=applied.measure_id)  # 撤控
    assert lifted.status is ControlStatus.DONE and lifted.attributes["status"] == "lifted"
    assert lifted.expires_at_ms is None


async def test_location_needs_a_valid_sealed_approval(connect: Connect) -> None:
    telecom = await connect("telecom")
    number = RICH.active_phone_numbers[0]
    refused = await telecom.do("location", subj(RICH), asset_id=number, approval=approval("location", who=ROGUE))
    assert refused.status is ControlStatus.REJECTED and refused.attributes["agency_reason"] == "approval_bad_signature"
    wrong = await telecom.do("location", subj(RICH), asset_id=number, approval=approval("border_control"))
    assert wrong.status is ControlStatus.REJECTED and wrong.attributes["agency_reason"] == "approval_wrong_action"
    located = await telecom.do("location", subj(RICH), asset_id=number, approval=approval("location"))
    assert located.status is ControlStatus.DONE and located.effective_at_ms == T0_MS
    assert -90 <= located.attributes["lat"] <= 90 and located.attributes["area"]
    no_number = failure(await telecom.send(telecom.control("location", subj(RICH), approval=approval("location"))))
    assert no_number.error_type == "AgencyRejected" and "asset_id" in no_number.detail


async def test_the_hub_can_verify_approvals_before_sending(connect: Connect, trust_file: Path) -> None:
    plugin = PublicSecurityConnector(clock=FixedClock(T0_MS))
    ps = await connect("public_security", plugin=plugin, approvers=str(trust_file))
    await ps.admin.set_fault("error")  # the agency is not even reached for a bad approval
    rogue = await ps.do("border_control", subj(RICH), approval=approval("border_control", who=ROGUE), term_days=30)
    assert rogue.status is ControlStatus.REJECTED and rogue.attributes == {
        "agency_reason": "approval_bad_signature",
        "checked_by": "hub",
    }
    other = await ps.do("border_control", subj(BUSY), approval=approval("border_control"), term_days=30)
    assert other.attributes["agency_reason"] == "approval_wrong_subject"
    await ps.admin.set_fault("normal")
    ok = await ps.do("border_control", subj(RICH), approval=approval("border_control"), term_days=30)
    assert ok.status is ControlStatus.DONE

    calls: list[tuple[str, str]] = []

    class Federation:  # the federation's certificate-chain check plugged in instead
        def verify_approval(self, token: str, action: str, subject_id: str) -> Any:
            calls.append((action, subject_id))
            from plugins.agency.approval import ApprovalError

            raise ApprovalError("approval_revoked", "审批法院证书已被吊销")

    plugin.approval_verifier = Federation()
    revoked = await ps.do("border_control", subj(RICH), approval=approval("border_control"), term_days=30)
    assert revoked.attributes["agency_reason"] == "approval_revoked" and calls == [("border_control", RICH.id_no)]


# --------------------------------------------------------------------------- failures


async def test_agency_down_is_a_typed_retryable_failure(connect: Connect) -> None:
    bank = await connect("bank", url=f"http://127.0.0.1:{free_port()}")
    down = failure(await bank.inquire(subj(RICH)))
    assert (down.kind, down.error_type, down.retryable) == ("raised", "AgencyUnavailable", True)
    control = failure(await bank.send(bank.control("release", subj(RICH), measure_id="BK-000001")))
    assert control.error_type == "AgencyUnavailable" and control.retryable
    health = (await bank.host.call_health("bank")).unwrap()
    assert health.status is HealthStatus.DOWN and "unreachable" in health.message


async def test_garbage_from_the_agency_is_an_invalid_answer(connect: Connect) -> None:
    telecom = await connect("telecom")
    await telecom.admin.set_fault("garbage", count=1)
    garbage = failure(await telecom.inquire(subj(RICH)))
    # The plugin raises AgencyReplyInvalid, an InvalidModel naming the agency's reply: the host
    # records it as raised (this host maps only its own validation to kind "invalid"); either way
    # it is typed and retryable.
    assert garbage.kind in ("raised", "invalid") and garbage.error_type == AgencyReplyInvalid.__name__
    assert garbage.retryable and "not JSON" in garbage.detail
    assert (await telecom.inquire(subj(RICH))).ok  # the next answer is fine again


async def test_a_hanging_agency_times_out_and_the_plugin_recovers(connect: Connect) -> None:
    land = await connect("land")
    await land.admin.set_fault("hang")
    hung = failure(await land.inquire(subj(RICH), timeout_s=0.3))
    assert (hung.kind, hung.retryable) == ("timeout", True) and hung.elapsed_ms < 2000
    await land.admin.set_fault("normal")  # releases the hung request
    assert (await land.inquire(subj(RICH))).unwrap().assets


async def test_health(connect: Connect, sims: dict[str, SimulatorProcess]) -> None:
    telecom = await connect("telecom")
    health = (await telecom.host.call_health("telecom")).unwrap()
    assert health.status is HealthStatus.UP and health.latency_ms is not None and "api v1" in health.message
    wrong = await connect("bank", url=sims["land"].url)  # a land registry configured as the bank
    mixed = (await wrong.host.call_health("bank")).unwrap()
    assert mixed.status is HealthStatus.DOWN and "land agency" in mixed.message
    unconfigured = PluginHost({})
    unconfigured.register(TelecomConnector())
    assert (await unconfigured.call_health("telecom")).unwrap().status is HealthStatus.DOWN


async def test_measure_expiring_checks_the_agency(connect: Connect, caplog: pytest.LogCaptureFixture) -> None:
    bank = await connect("bank")
    account = RICH.bank_accounts[0].asset_id
    freeze = await bank.do("freeze", subj(RICH), asset_id=account, amount_fen=1_000, term_days=40)
    assert freeze.measure_id is not None and freeze.expires_at_ms is not None

    def reminder(measure_id: str, expires_at_ms: int) -> MeasureExpiring:
        return MeasureExpiring(measure_id, CASE, "豫1402", "bank", ControlAction.FREEZE, account, expires_at_ms, 10)

    with caplog.at_level(logging.INFO, logger="courthub.plugins.agency"):
        assert (await bank.host.measure_expiring(reminder(freeze.measure_id, freeze.expires_at_ms))).ok
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        await bank.admin.advance_clock(days=41)
        assert (await bank.host.measure_expiring(reminder(freeze.measure_id, freeze.expires_at_ms))).ok
        assert (await bank.host.measure_expiring(reminder("BK-999999", freeze.expires_at_ms))).ok
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("is lapsed at the agency" in w for w in warnings) and any("BK-999999" in w for w in warnings)


async def test_sessions_follow_the_event_loop_and_close(sims: dict[str, SimulatorProcess]) -> None:
    plugin = TelecomConnector()
    plugin.courthub_configure({"url": sims["telecom"].url})
    await plugin.courthub_health()
    session = plugin._transport.session
    assert session is not None and not session.closed
    others: list[Any] = []

    def other_loop() -> None:  # a second event loop in another thread, never closing explicitly
        async def probe() -> None:
            assert (await plugin.courthub_health()).status is HealthStatus.UP
            others.append(plugin._transport.session)

        asyncio.run(probe())

    await asyncio.to_thread(other_loop)
    await asyncio.sleep(0.05)
    assert session.closed  # closed on its own (still running) loop when the other loop took over
    assert others[0] is not session and others[0].closed  # closed when asyncio.run shut its loop down
    assert (await plugin.courthub_health()).status is HealthStatus.UP  # a fresh session here again
    await plugin.aclose()
    await plugin.aclose()
    assert plugin._transport.session is None
