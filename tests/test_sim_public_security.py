"""Public-security simulator (公安) as a real process: household, vehicles and vehicle seals, hotel
stays, and border exit control (边控) gated by a sealed approval."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import pytest

from plugins.agency.errors import AgencyRefused
from plugins.agency.model import MeasureStatus, Outcome, Subject
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import SeededSubject, seeded_subjects, subject_by_role
from plugins.agency.synth import make_resident_id
from plugins.agency.testing import DAY_MS, OTHER_COURT, T0_ISO, T0_MS, Approver, court, order, write_trust_file
from plugins.public_security.client import PublicSecurityClient

SEED = 13
HERE = court()
OTHER = court(*OTHER_COURT)
UPPER = Approver("豫14")  # the intermediate court that approves 边控
ROGUE = Approver("豫14")  # same court code, a key nobody trusts
STRANGER = Approver("京01")  # a court not in the trust file


@pytest.fixture(scope="module")
def ps_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    trust = write_trust_file(tmp_path_factory.mktemp("trust") / "approvers.json", UPPER)
    proc = SimulatorProcess.start("public_security", seed=SEED, now=T0_ISO, approvers=trust)
    yield proc
    assert proc.stop() == 0


@pytest.fixture
async def ps(ps_proc: SimulatorProcess) -> AsyncIterator[PublicSecurityClient]:
    client = PublicSecurityClient(ps_proc.url, timeout_s=5)
    await client.reset(T0_MS)
    yield client
    await client.close()


def subj(s: SeededSubject) -> Subject:
    return Subject(name=s.name, id_no=s.id_no)


RICH = subject_by_role(SEED, "rich")
BUSY = subject_by_role(SEED, "encumbered")
CAR = RICH.vehicles[0].asset_id


async def test_household_registration(ps: PublicSecurityClient) -> None:
    res = await ps.household(HERE, subj(RICH))
    assert res.household is not None
    assert (res.household.name, res.household.id_no) == (RICH.name, RICH.id_no)
    assert res.household.gender == RICH.gender and res.household.birth_date == RICH.birth_date
    assert "派出所" in res.household.police_station and res.border_controls == ()
    unknown_id = make_resident_id("411402", date(1990, 5, 5), 1, True)
    assert unknown_id not in {s.id_no for s in seeded_subjects(SEED)}
    nobody = await ps.household(HERE, Subject(name="无此人", id_no=unknown_id))
    assert nobody.household is None


async def test_vehicles_and_hotel_stays(ps: PublicSecurityClient) -> None:
    cars = await ps.vehicles(HERE, subj(RICH))
    assert sorted(v.plate_no for v in cars) == sorted(v.asset_id for v in RICH.vehicles)
    assert all(len(v.vin) == 17 and v.measures == () for v in cars)
    (held,) = (await ps.vehicles(HERE, subj(BUSY)))[0].measures
    assert held.status is MeasureStatus.ACTIVE
    stays = await ps.hotel_stays(HERE, subj(RICH), date(2025, 1, 1), date(2026, 1, 1))
    assert len(stays) == RICH.hotel_stays == 3
    assert all(s.check_in_ms < T0_MS for s in stays)


async def test_vehicle_seal_term_is_two_years(ps: PublicSecurityClient) -> None:
    with pytest.raises(AgencyRefused) as err:
        await ps.control(order("01", HERE, subj(RICH), asset_id=CAR, term_days=731))
    assert err.value.reason == "term_exceeds_limit" and "730" in err.value.message and "动产" in err.value.message
    ok = await ps.control(order("01", HERE, subj(RICH), asset_id=CAR, term_days=730))
    assert ok.outcome is Outcome.CONTROLLED and ok.measure is not None
    assert ok.measure.expires_at_ms == T0_MS + 730 * DAY_MS


async def test_vehicle_waiting_seal_promoted_on_lapse(ps: PublicSecurityClient) -> None:
    first = await ps.control(order("01", OTHER, subj(RICH), asset_id=CAR, term_days=60))
    queued = await ps.control(order("03", HERE, subj(RICH), asset_id=CAR, term_days=730))
    assert first.measure is not None and queued.measure is not None and queued.outcome is Outcome.QUEUED
    await ps.advance_clock(days=61)
    view = await ps.measure(queued.measure.measure_id)
    assert view.status is MeasureStatus.ACTIVE and view.effective_at_ms == T0_MS + 60 * DAY_MS


def _approval(act: str = "border_control", *, who: Approver = UPPER, **kw: object) -> str:
    args: dict[str, object] = {"case_no": HERE.case_no, "act": act, "subject_id": RICH.id_no}
    args.update(kw)
    return who.approve(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "approval_required"),
        ("not-a-jws", "approval_malformed"),
        (_approval(who=ROGUE), "approval_bad_signature"),
        (_approval(who=STRANGER), "approval_untrusted"),
        (_approval("location"), "approval_wrong_action"),
        (_approval(subject_id=make_resident_id("411402", date(1990, 5, 5), 1, True)), "approval_wrong_subject"),
        (_approval(case_no="（2026）豫1402执999号"), "approval_wrong_case"),
        (_approval(now_ms=T0_MS - 10 * DAY_MS, ttl_s=86_400), "approval_expired"),
    ],
)
async def test_border_control_refused_without_a_valid_approval(
    ps: PublicSecurityClient, token: str | None, reason: str
) -> None:
    with pytest.raises(AgencyRefused) as err:
        await ps.apply_border_control(HERE, subj(RICH), approval=token, term_days=180, request_id="bc-1")
    assert (err.value.http_status, err.value.reason, err.value.field) == (403, reason, "approval")
    assert (await ps.household(HERE, subj(RICH))).border_controls == ()


async def test_border_control_with_a_valid_approval(ps: PublicSecurityClient) -> None:
    token = _approval()
    res = await ps.apply_border_control(HERE, subj(RICH), approval=token, term_days=180, request_id="bc-ok")
    assert res.outcome == "applied" and res.control.status == "active" and res.control.approval_iss == "豫14"
    assert res.control.expires_at_ms == T0_MS + 180 * DAY_MS
    again = await ps.apply_border_control(HERE, subj(RICH), approval=token, term_days=180, request_id="bc-ok")
    assert again == res  # idempotent: one control
    assert len((await ps.household(HERE, subj(RICH))).border_controls) == 1
    with pytest.raises(AgencyRefused) as err:  # one approval, one request
        await ps.apply_border_control(HERE, subj(RICH), approval=token, term_days=180, request_id="bc-other")
    assert err.value.reason == "approval_replayed"
    with pytest.raises(AgencyRefused) as err:
        await ps.apply_border_control(HERE, subj(RICH), approval=_approval(), term_days=400, request_id="bc-long")
    assert err.value.reason == "term_exceeds_limit"
    with pytest.raises(AgencyRefused) as err:
        await ps.lift_border_control(OTHER, subj(RICH), res.control.control_id, request_id="lift-0")
    assert err.value.reason == "not_measure_owner"
    lifted = await ps.lift_border_control(HERE, subj(RICH), res.control.control_id, request_id="lift-1")
    assert lifted.outcome == "lifted" and lifted.control.status == "lifted"


async def test_border_control_expires_with_the_clock(ps: PublicSecurityClient) -> None:
    await ps.apply_border_control(HERE, subj(RICH), approval=_approval(), term_days=30, request_id="bc-30")
    await ps.advance_clock(days=31)
    (ctl,) = (await ps.household(HERE, subj(RICH))).border_controls
    assert ctl.status == "expired"


async def test_simulator_without_trusted_approvers_refuses(tmp_path: Path) -> None:
    with SimulatorProcess.start("public_security", seed=SEED, now=T0_ISO) as proc:
        async with PublicSecurityClient(proc.url) as client:
            with pytest.raises(AgencyRefused) as err:
                await client.apply_border_control(HERE, subj(RICH), approval=_approval(), term_days=30, request_id="x")
    assert err.value.reason == "approval_unverifiable"
