"""Telecom-operator simulator (通信运营商) as a real process: numbers by ID, location gated by a
sealed approval."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from plugins.agency.errors import AgencyRefused
from plugins.agency.model import Subject
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import SeededSubject, subject_by_role
from plugins.agency.testing import DAY_MS, T0_ISO, T0_MS, Approver, court, write_trust_file
from plugins.telecom.client import TelecomClient

SEED = 14
HERE = court()
UPPER = Approver("豫14")
ROGUE = Approver("豫14")


@pytest.fixture(scope="module")
def tel_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    trust = write_trust_file(tmp_path_factory.mktemp("trust") / "approvers.json", UPPER)
    proc = SimulatorProcess.start("telecom", seed=SEED, now=T0_ISO, approvers=trust)
    yield proc
    assert proc.stop() == 0


@pytest.fixture
async def tel(tel_proc: SimulatorProcess) -> AsyncIterator[TelecomClient]:
    client = TelecomClient(tel_proc.url, timeout_s=5)
    await client.reset(T0_MS)
    yield client
    await client.close()


def subj(s: SeededSubject) -> Subject:
    return Subject(name=s.name, id_no=s.id_no)


RICH = subject_by_role(SEED, "rich")
BUSY = subject_by_role(SEED, "encumbered")
NUMBER = RICH.active_phone_numbers[0]


def _approval(act: str = "location", who: Approver = UPPER) -> str:
    return who.approve(case_no=HERE.case_no, act=act, subject_id=RICH.id_no)


async def test_subscribers_by_id(tel: TelecomClient) -> None:
    numbers = await tel.subscribers(HERE, subj(RICH))
    assert [n.msisdn for n in numbers] == sorted(RICH.phone_numbers)
    assert {n.operator for n in numbers} <= {"中国移动", "中国联通", "中国电信"}
    assert await tel.subscribers(HERE, subj(subject_by_role(SEED, "no_assets"))) == ()


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "approval_required"),
        (_approval(who=ROGUE), "approval_bad_signature"),
        (_approval("border_control"), "approval_wrong_action"),
    ],
)
async def test_location_refused_without_a_valid_approval(tel: TelecomClient, token: str | None, reason: str) -> None:
    with pytest.raises(AgencyRefused) as err:
        await tel.locate(HERE, subj(RICH), NUMBER, approval=token, request_id="loc-1")
    assert (err.value.http_status, err.value.reason) == (403, reason)


async def test_location_with_a_valid_approval_is_idempotent(tel: TelecomClient) -> None:
    token = _approval()
    fix = await tel.locate(HERE, subj(RICH), NUMBER, approval=token, request_id="loc-ok")
    assert fix.outcome == "located" and fix.lat is not None and fix.lon is not None and fix.approval_iss == "豫14"
    assert fix.located_at_ms == T0_MS
    await tel.advance_clock(days=1)
    assert await tel.locate(HERE, subj(RICH), NUMBER, approval=token, request_id="loc-ok") == fix
    with pytest.raises(AgencyRefused) as err:
        await tel.locate(HERE, subj(RICH), NUMBER, approval=token, request_id="loc-again")
    assert err.value.reason == "approval_replayed"


async def test_location_of_someone_elses_number_or_after_expiry(tel: TelecomClient) -> None:
    other_number = BUSY.phone_numbers[0]
    with pytest.raises(AgencyRefused) as err:
        await tel.locate(HERE, subj(RICH), other_number, approval=_approval(), request_id="loc-x")
    assert (err.value.reason, err.value.field) == ("asset_not_owned", "msisdn")
    token = _approval()
    await tel.advance_clock(ms=8 * DAY_MS)  # approvals are valid for 7 days
    with pytest.raises(AgencyRefused) as err:
        await tel.locate(HERE, subj(RICH), NUMBER, approval=token, request_id="loc-late")
    assert err.value.reason == "approval_expired"
    with pytest.raises(AgencyRefused) as err:
        await tel.locate(HERE, subj(RICH), "12345", approval=token, request_id="loc-bad")
    assert (err.value.http_status, err.value.field) == (400, "msisdn")
