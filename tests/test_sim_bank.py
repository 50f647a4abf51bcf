"""Bank simulator (银行) as a real process, driven through the shared client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta

import pytest

from plugins.agency.errors import AgencyRefused, AgencyUnavailable
from plugins.agency.model import ControlCode, MeasureStatus, Outcome, Subject
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import SeededSubject, subject_by_role
from plugins.agency.testing import DAY_MS, OTHER_COURT, T0_ISO, T0_MS, court, order
from plugins.bank.client import BankClient

SEED = 11
HERE = court()
OTHER = court(*OTHER_COURT)


@pytest.fixture(scope="module")
def bank_proc() -> Iterator[SimulatorProcess]:
    proc = SimulatorProcess.start("bank", seed=SEED, now=T0_ISO)
    yield proc
    assert proc.stop() == 0


@pytest.fixture
async def bank(bank_proc: SimulatorProcess) -> AsyncIterator[BankClient]:
    client = BankClient(bank_proc.url, timeout_s=5)
    await client.reset(T0_MS)
    yield client
    await client.close()


def subj(s: SeededSubject) -> Subject:
    return Subject(name=s.name, id_no=s.id_no)


RICH = subject_by_role(SEED, "rich")
BUSY = subject_by_role(SEED, "encumbered")
POOR = subject_by_role(SEED, "no_assets")
BIG = RICH.bank_accounts[0]  # 500,000.00 元, clean
SMALL = RICH.bank_accounts[1]  # 12,345.67 元, clean
HELD = BUSY.bank_accounts[0]  # 80,000.00 元, 50,000.00 元 frozen by another court
BIG_BALANCE = 50_000_000
assert BIG.balance_fen == BIG_BALANCE


async def test_inquiry_matches_seeded_subjects(bank: BankClient) -> None:
    rich = await bank.inquire(HERE, subj(RICH))
    assert {a.account_no: a.balance_fen for a in rich.accounts} == {
        a.asset_id: a.balance_fen for a in RICH.bank_accounts
    }
    assert all(a.frozen_fen == 0 and a.available_fen == a.balance_fen for a in rich.accounts)
    busy = await bank.inquire(HERE, subj(BUSY))
    (acc,) = busy.accounts
    assert (acc.balance_fen, acc.frozen_fen, acc.available_fen) == (8_000_000, 5_000_000, 3_000_000)
    (held,) = acc.measures
    assert held.status is MeasureStatus.ACTIVE and held.court_code != HERE.court_code
    assert (await bank.inquire(HERE, subj(POOR))).accounts == ()


async def test_transactions_for_a_date_range(bank: BankClient) -> None:
    today = date(2026, 1, 1)
    txns = await bank.transactions(HERE, subj(RICH), BIG.asset_id, today - timedelta(days=400), today)
    assert txns, "seeded accounts have a history"
    assert txns[-1].balance_after_fen == BIG_BALANCE
    assert all(t.at_ms < T0_MS for t in txns)
    recent = await bank.transactions(HERE, subj(RICH), BIG.asset_id, today - timedelta(days=30), today)
    assert set(recent) <= set(txns) and all(t.date >= "2025-12-02" for t in recent)
    with pytest.raises(AgencyRefused) as err:
        await bank.transactions(HERE, subj(RICH), BIG.asset_id, today, today - timedelta(days=1))
    assert err.value.http_status == 400 and err.value.field == "to"


async def test_full_freeze(bank: BankClient) -> None:
    res = await bank.control(order("01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=1_000_000, term_days=365))
    assert res.outcome is Outcome.CONTROLLED and res.complete
    assert (res.requested_amount_fen, res.controlled_amount_fen, res.reason) == (1_000_000, 1_000_000, None)
    assert res.measure is not None and res.measure.status is MeasureStatus.ACTIVE
    assert res.measure.expires_at_ms == T0_MS + 365 * DAY_MS
    acc = next(a for a in (await bank.inquire(HERE, subj(RICH))).accounts if a.account_no == BIG.asset_id)
    assert (acc.frozen_fen, acc.available_fen) == (1_000_000, BIG_BALANCE - 1_000_000)


async def test_partial_freeze_names_the_reason(bank: BankClient) -> None:
    res = await bank.control(
        order("01", HERE, subj(RICH), asset_id=SMALL.asset_id, amount_fen=2_000_000, term_days=180)
    )
    assert res.outcome is Outcome.PARTIALLY_CONTROLLED and not res.complete
    assert res.controlled_amount_fen == SMALL.balance_fen == 1_234_567
    assert res.reason is not None and "余额不足" in res.reason


async def test_existing_freeze_of_another_court_has_priority(bank: BankClient) -> None:
    res = await bank.control(order("01", HERE, subj(BUSY), asset_id=HELD.asset_id, amount_fen=6_000_000, term_days=365))
    assert res.outcome is Outcome.PARTIALLY_CONTROLLED
    assert res.controlled_amount_fen == 3_000_000  # only the free balance
    assert res.reason is not None and "已被他案冻结" in res.reason
    again = await bank.control(order("01", OTHER, subj(BUSY), asset_id=HELD.asset_id, amount_fen=100, term_days=30))
    assert again.outcome is Outcome.NOT_CONTROLLED and again.controlled_amount_fen == 0 and again.measure is None
    assert again.reason is not None and "已被他案冻结" in again.reason


async def test_waiting_freeze_takes_effect_on_release(bank: BankClient) -> None:
    first = await bank.control(
        order("01", OTHER, subj(RICH), asset_id=BIG.asset_id, amount_fen=BIG_BALANCE, term_days=365)
    )
    assert first.measure is not None
    queued = await bank.control(
        order("03", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=2_000_000, term_days=200)
    )
    assert queued.outcome is Outcome.QUEUED and queued.measure is not None
    assert queued.measure.status is MeasureStatus.WAITING and queued.measure.queue_position == 1
    await bank.advance_clock(days=10)
    rel = await bank.control(order("04", OTHER, subj(RICH), measure_id=first.measure.measure_id))
    assert rel.outcome is Outcome.RELEASED and any("promoted" in e for e in rel.events)
    promoted = await bank.measure(queued.measure.measure_id)
    assert promoted.status is MeasureStatus.ACTIVE and promoted.controlled_amount_fen == 2_000_000
    assert promoted.effective_at_ms == T0_MS + 10 * DAY_MS
    assert promoted.expires_at_ms == T0_MS + 210 * DAY_MS  # the term runs from taking effect


async def test_waiting_freeze_takes_effect_on_lapse_on_what_is_then_available(bank: BankClient) -> None:
    # Another court holds 50,000 of 80,000 until its term ends (seeded: 60 days ago, 365 days).
    queued = await bank.control(
        order("03", HERE, subj(BUSY), asset_id=HELD.asset_id, amount_fen=9_000_000, term_days=90)
    )
    assert queued.outcome is Outcome.QUEUED and queued.measure is not None
    seeded = (await bank.inquire(HERE, subj(BUSY))).accounts[0].measures[0]
    assert seeded.expires_at_ms is not None
    await bank.set_clock(seeded.expires_at_ms + 5 * DAY_MS)  # jump past the lapse, no sleeping
    view = await bank.measure(queued.measure.measure_id)
    assert view.status is MeasureStatus.ACTIVE
    assert view.effective_at_ms == seeded.expires_at_ms  # effective at the lapse instant
    assert view.controlled_amount_fen == 8_000_000  # the whole balance was then free, < 9,000,000 asked
    assert view.note is not None and "余额不足" in view.note
    assert (await bank.measure(seeded.measure_id)).status is MeasureStatus.LAPSED


async def test_term_longer_than_one_year_is_refused(bank: BankClient) -> None:
    with pytest.raises(AgencyRefused) as err:
        await bank.control(order("01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=100, term_days=366))
    assert err.value.reason == "term_exceeds_limit" and err.value.field == "term_days"
    assert "365" in err.value.message and "485" in err.value.message
    acc = next(a for a in (await bank.inquire(HERE, subj(RICH))).accounts if a.account_no == BIG.asset_id)
    assert acc.frozen_fen == 0


async def test_renewal_before_expiry(bank: BankClient) -> None:
    res = await bank.control(order("01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=500_000, term_days=100))
    assert res.measure is not None
    await bank.advance_clock(days=99)
    ren = await bank.control(order("02", HERE, subj(RICH), measure_id=res.measure.measure_id, term_days=365))
    assert ren.outcome is Outcome.RENEWED and ren.measure is not None
    assert ren.measure.expires_at_ms == T0_MS + (100 + 365) * DAY_MS and ren.measure.renewals == 1
    with pytest.raises(AgencyRefused) as err:  # renewal term is capped too
        await bank.control(order("02", HERE, subj(RICH), measure_id=res.measure.measure_id, term_days=400))
    assert err.value.reason == "term_exceeds_limit"


async def test_renewal_after_expiry_is_refused_as_lapsed(bank: BankClient) -> None:
    res = await bank.control(order("01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=500_000, term_days=100))
    assert res.measure is not None
    await bank.advance_clock(days=100)  # exactly at expiry: too late
    with pytest.raises(AgencyRefused) as err:
        await bank.control(order("02", HERE, subj(RICH), measure_id=res.measure.measure_id, term_days=365))
    assert err.value.reason == "measure_lapsed" and "失效" in err.value.message
    assert (await bank.measure(res.measure.measure_id)).status is MeasureStatus.LAPSED
    acc = next(a for a in (await bank.inquire(HERE, subj(RICH))).accounts if a.account_no == BIG.asset_id)
    assert acc.frozen_fen == 0  # the lapse freed the amount


async def test_deduct_from_own_freeze_and_freeze_and_transfer(bank: BankClient) -> None:
    fr = await bank.control(order("01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=1_000_000, term_days=365))
    assert fr.measure is not None
    ded = await bank.control(order("06", HERE, subj(RICH), measure_id=fr.measure.measure_id, amount_fen=400_000))
    assert ded.outcome is Outcome.TRANSFERRED and ded.transferred_amount_fen == 400_000
    assert ded.measure is not None and ded.measure.controlled_amount_fen == 600_000
    more = await bank.control(order("06", HERE, subj(RICH), measure_id=fr.measure.measure_id, amount_fen=900_000))
    assert more.outcome is Outcome.PARTIALLY_TRANSFERRED and more.transferred_amount_fen == 600_000
    assert more.measure is not None and more.measure.status is MeasureStatus.DEDUCTED
    acc = next(a for a in (await bank.inquire(HERE, subj(RICH))).accounts if a.account_no == BIG.asset_id)
    assert acc.balance_fen == BIG_BALANCE - 1_000_000 and acc.frozen_fen == 0
    both = await bank.control(order("08", HERE, subj(BUSY), asset_id=HELD.asset_id, amount_fen=5_000_000))
    assert both.outcome is Outcome.PARTIALLY_TRANSFERRED and both.transferred_amount_fen == 3_000_000
    assert both.reason is not None and "已被他案冻结" in both.reason


async def test_same_request_id_applies_once(bank: BankClient) -> None:
    o = order("01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=700_000, term_days=365)
    first = await bank.control(o)
    second = await bank.control(o)
    assert first == second
    acc = next(a for a in (await bank.inquire(HERE, subj(RICH))).accounts if a.account_no == BIG.asset_id)
    assert acc.frozen_fen == 700_000 and len(acc.measures) == 1
    assert first.measure is not None
    d = order("06", HERE, subj(RICH), measure_id=first.measure.measure_id, amount_fen=100_000)
    assert await bank.control(d) == await bank.control(d)
    acc = next(a for a in (await bank.inquire(HERE, subj(RICH))).accounts if a.account_no == BIG.asset_id)
    assert acc.balance_fen == BIG_BALANCE - 100_000


async def test_lost_reply_retried_with_the_same_request_id_applies_once(bank: BankClient) -> None:
    o = order("01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=300_000, term_days=365)
    await bank.set_fault("drop_reply", count=1)
    with pytest.raises(AgencyUnavailable, match="reply_lost"):
        await bank.control(o)  # processed, but the answer never arrived
    res = await bank.control(o)  # the retry gets the stored first answer
    assert res.outcome is Outcome.CONTROLLED and res.controlled_amount_fen == 300_000
    acc = next(a for a in (await bank.inquire(HERE, subj(RICH))).accounts if a.account_no == BIG.asset_id)
    assert acc.frozen_fen == 300_000 and len(acc.measures) == 1


async def test_per_request_fault_header(bank_proc: SimulatorProcess) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(bank_proc.url + "/health", headers={"X-Sim-Fault": "error"}) as resp:
            assert resp.status == 503 and (await resp.json())["error"]["reason"] == "injected_fault"
        async with http.get(bank_proc.url + "/health", headers={"X-Sim-Fault": "bogus"}) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["reason"] == "invalid_fault"
        async with http.get(bank_proc.url + "/health") as resp:
            assert resp.status == 200


async def test_same_request_id_different_body_is_a_conflict(bank: BankClient) -> None:
    o = order("01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=700_000, term_days=365, request_id="dup-1")
    await bank.control(o)
    changed = order(
        "01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=800_000, term_days=365, request_id="dup-1"
    )
    with pytest.raises(AgencyRefused) as err:
        await bank.control(changed)
    assert err.value.conflict and err.value.reason == "request_id_conflict" and err.value.field == "request_id"


async def test_only_the_freezing_court_may_release(bank: BankClient) -> None:
    fr = await bank.control(order("01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=100_000, term_days=30))
    assert fr.measure is not None
    with pytest.raises(AgencyRefused) as err:
        await bank.control(order("04", OTHER, subj(RICH), measure_id=fr.measure.measure_id))
    assert err.value.http_status == 403 and err.value.reason == "not_measure_owner"


async def test_malformed_requests_get_clear_4xx(bank: BankClient) -> None:
    good = order("01", HERE, subj(RICH), asset_id=BIG.asset_id, amount_fen=100, term_days=30).to_json()

    async def refused(body: object) -> AgencyRefused:
        with pytest.raises(AgencyRefused) as err:
            await bank.post("/v1/control", body, lambda f: f)  # type: ignore[arg-type]
        return err.value

    bad_check = dict(
        good, subject=dict(good["subject"], id_no=RICH.id_no[:17] + ("0" if RICH.id_no[17] != "0" else "1"))
    )
    e = await refused(bad_check)
    assert (e.http_status, e.reason, e.field) == (400, "invalid_field", "subject.id_no") and "check digit" in e.message
    e = await refused({k: v for k, v in good.items() if k != "subject"})
    assert e.field == "subject" and "required" in e.message
    e = await refused(dict(good, amount_fen="100"))
    assert e.field == "amount_fen" and "integer" in e.message
    e = await refused(dict(good, control_code="07"))
    assert e.field == "control_code"
    e = await refused(dict(good, amout_fen=1))
    assert e.field == "amout_fen" and "not a known field" in e.message
    e = await refused(dict(good, court=dict(good["court"], case_no="2026豫1402执100")))
    assert e.field == "court.case_no"
    e = await refused(dict(good, court={k: v for k, v in good["court"].items() if k != "document_no"}))
    assert e.field == "court.document_no"
    e = await refused(dict(good, request_id="has space"))
    assert e.field == "request_id"
    e = await refused(dict(good, subject=dict(good["subject"], name="某某某")))
    assert (e.http_status, e.reason, e.field) == (422, "name_mismatch", "subject.name")
    e = await refused(dict(good, subject=subj(BUSY).to_json()))
    assert (e.reason, e.field) == ("asset_not_owned", "asset_id")
    e = await refused(dict(good, asset_id="6222000000000000000"))
    assert (e.http_status, e.reason, e.field) == (404, "asset_not_found", "asset_id")
    with pytest.raises(AgencyRefused) as err:
        await bank.control(order("01", HERE, subj(RICH), asset_id=BIG.asset_id, term_days=30))
    assert err.value.field == "amount_fen"
    with pytest.raises(AgencyRefused) as err:
        await bank.control(order("02", HERE, subj(RICH), measure_id="BK-999999", term_days=30))
    assert err.value.http_status == 404 and err.value.reason == "measure_not_found"


async def test_invalid_json_and_unknown_endpoint(bank_proc: SimulatorProcess) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(bank_proc.url + "/v1/control", data=b"{nope") as resp:
            assert resp.status == 400 and (await resp.json())["error"]["reason"] == "invalid_json"
        async with http.post(bank_proc.url + "/v1/control", json=[1, 2]) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["reason"] == "invalid_json"
        async with http.get(bank_proc.url + "/v1/nothing") as resp:
            assert resp.status == 404 and (await resp.json())["error"]["reason"] == "no_such_endpoint"
        async with http.get(bank_proc.url + "/v1/control") as resp:
            assert resp.status == 405 and (await resp.json())["error"]["reason"] == "method_not_allowed"


def test_control_codes_are_the_bank_codes() -> None:
    assert [c.value for c in ControlCode] == ["01", "02", "03", "04", "05", "06", "08"]
