"""Real-estate registry simulator (不动产登记) as a real process, driven through the shared client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from plugins.agency.errors import AgencyRefused
from plugins.agency.model import MeasureStatus, Outcome, Subject
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import SeededSubject, subject_by_role
from plugins.agency.testing import DAY_MS, OTHER_COURT, T0_ISO, T0_MS, court, order
from plugins.land.client import LandClient

SEED = 12
HERE = court(document_name="协助执行通知书（查封不动产）")
OTHER = court(*OTHER_COURT)


@pytest.fixture(scope="module")
def land_proc() -> Iterator[SimulatorProcess]:
    proc = SimulatorProcess.start("land", seed=SEED, now=T0_ISO)
    yield proc
    assert proc.stop() == 0


@pytest.fixture
async def land(land_proc: SimulatorProcess) -> AsyncIterator[LandClient]:
    client = LandClient(land_proc.url, timeout_s=5)
    await client.reset(T0_MS)
    yield client
    await client.close()


def subj(s: SeededSubject) -> Subject:
    return Subject(name=s.name, id_no=s.id_no)


RICH = subject_by_role(SEED, "rich")
BUSY = subject_by_role(SEED, "encumbered")
HOUSE = RICH.properties[0].asset_id
SEALED = BUSY.properties[0].asset_id


async def test_inquiry_by_owner(land: LandClient) -> None:
    res = await land.inquire(HERE, subj(RICH))
    assert [p.cert_no for p in res.properties] == sorted(p.asset_id for p in RICH.properties)
    p = res.properties[0]
    assert "不动产权第" in p.cert_no and p.area_m2 > 0 and 0 < p.share_percent <= 100 and p.measures == ()
    busy = await land.inquire(HERE, subj(BUSY))
    (held,) = busy.properties[0].measures
    assert held.status is MeasureStatus.ACTIVE and held.court_code != HERE.court_code
    assert held.controlled_amount_fen is None  # the whole registration, not an amount


async def test_seal_and_priority(land: LandClient) -> None:
    res = await land.control(order("01", HERE, subj(RICH), asset_id=HOUSE, term_days=1095))
    assert res.outcome is Outcome.CONTROLLED and res.measure is not None
    assert res.measure.expires_at_ms == T0_MS + 1095 * DAY_MS
    second = await land.control(order("01", OTHER, subj(RICH), asset_id=HOUSE, term_days=1095))
    assert second.outcome is Outcome.NOT_CONTROLLED and second.measure is None
    assert second.reason is not None and "已被他案查封" in second.reason and HERE.case_no in second.reason
    assert "轮候查封" in second.reason


async def test_waiting_seal_takes_effect_on_release(land: LandClient) -> None:
    queued = await land.control(order("03", HERE, subj(BUSY), asset_id=SEALED, term_days=1000))
    assert queued.outcome is Outcome.QUEUED and queued.measure is not None
    assert queued.measure.status is MeasureStatus.WAITING
    seeded = (await land.inquire(HERE, subj(BUSY))).properties[0].measures[0]
    # The seeded court releases its seal (we act as it: same court code).
    other = court(seeded.court_code, seeded.court_name, case_no=seeded.case_no)
    await land.advance_clock(days=3)
    rel = await land.control(order("04", other, subj(BUSY), measure_id=seeded.measure_id))
    assert rel.outcome is Outcome.RELEASED
    view = await land.measure(queued.measure.measure_id)
    assert view.status is MeasureStatus.ACTIVE and view.effective_at_ms == T0_MS + 3 * DAY_MS
    assert view.expires_at_ms == T0_MS + 1003 * DAY_MS


async def test_waiting_seal_takes_effect_on_lapse(land: LandClient) -> None:
    first = await land.control(order("01", OTHER, subj(RICH), asset_id=HOUSE, term_days=400))
    queued = await land.control(order("03", HERE, subj(RICH), asset_id=HOUSE, term_days=1095))
    assert first.measure is not None and queued.measure is not None
    await land.advance_clock(days=500)
    assert (await land.measure(first.measure.measure_id)).status is MeasureStatus.LAPSED
    view = await land.measure(queued.measure.measure_id)
    assert view.status is MeasureStatus.ACTIVE
    assert view.effective_at_ms == T0_MS + 400 * DAY_MS and view.expires_at_ms == T0_MS + (400 + 1095) * DAY_MS


async def test_term_limit_is_three_years(land: LandClient) -> None:
    with pytest.raises(AgencyRefused) as err:
        await land.control(order("01", HERE, subj(RICH), asset_id=HOUSE, term_days=1096))
    assert err.value.reason == "term_exceeds_limit" and "1095" in err.value.message and "三年" in err.value.message
    ok = await land.control(order("01", HERE, subj(RICH), asset_id=HOUSE, term_days=1095))
    assert ok.outcome is Outcome.CONTROLLED


async def test_renewal_before_and_after_expiry(land: LandClient) -> None:
    a = await land.control(order("01", HERE, subj(RICH), asset_id=RICH.properties[0].asset_id, term_days=300))
    b = await land.control(order("01", HERE, subj(RICH), asset_id=RICH.properties[1].asset_id, term_days=200))
    assert a.measure is not None and b.measure is not None
    await land.advance_clock(days=250)
    ren = await land.control(order("02", HERE, subj(RICH), measure_id=a.measure.measure_id, term_days=1095))
    assert ren.outcome is Outcome.RENEWED and ren.measure is not None
    assert ren.measure.expires_at_ms == T0_MS + (300 + 1095) * DAY_MS
    with pytest.raises(AgencyRefused) as err:
        await land.control(order("02", HERE, subj(RICH), measure_id=b.measure.measure_id, term_days=1095))
    assert err.value.reason == "measure_lapsed" and "续封" in err.value.message


async def test_idempotency_and_conflict(land: LandClient) -> None:
    o = order("01", HERE, subj(RICH), asset_id=HOUSE, term_days=1095, request_id="land-1")
    assert await land.control(o) == await land.control(o)
    props = (await land.inquire(HERE, subj(RICH))).properties
    assert len(next(p for p in props if p.cert_no == HOUSE).measures) == 1
    with pytest.raises(AgencyRefused) as err:
        await land.control(order("01", HERE, subj(RICH), asset_id=HOUSE, term_days=1000, request_id="land-1"))
    assert err.value.conflict


async def test_land_specific_validation(land: LandClient) -> None:
    with pytest.raises(AgencyRefused) as err:
        await land.control(order("01", HERE, subj(RICH), asset_id=HOUSE, term_days=100, amount_fen=100))
    assert (err.value.http_status, err.value.field) == (400, "amount_fen")
    with pytest.raises(AgencyRefused) as err:
        await land.control(order("06", HERE, subj(RICH), asset_id=HOUSE, amount_fen=100))
    assert (err.value.reason, err.value.field) == ("unsupported_control_code", "control_code")
    with pytest.raises(AgencyRefused) as err:
        await land.control(order("01", HERE, subj(RICH), asset_id=SEALED, term_days=100))
    assert err.value.reason == "asset_not_owned"
