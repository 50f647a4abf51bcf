"""What every simulator shares: deterministic seeded data, process lifecycle and persistence,
fault modes, and the client's validation of replies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from plugins.agency import client_for
from plugins.agency.errors import AgencyRefused, AgencyReplyInvalid, AgencyUnavailable
from plugins.agency.model import MeasureStatus, Subject
from plugins.agency.sim import SimulatorProcess, start_simulator
from plugins.agency.subjects import seeded_subjects, subject_by_role
from plugins.agency.synth import id_check_digit, population, resident_id_problem
from plugins.agency.testing import DAY_MS, T0_ISO, T0_MS, court, order
from plugins.bank.client import BankClient
from plugins.land.client import LandClient

HERE = court()


# --------------------------------------------------------------------------- seeded data


def test_resident_id_check_digit() -> None:
    assert id_check_digit("11010519491231002") == "X"  # the GB 11643 example
    assert resident_id_problem("11010519491231002X") is None
    assert "check digit" in (resident_id_problem("110105194912310021") or "")
    assert "birth date" in (resident_id_problem("110105194902300021") or "")


def test_seeded_people_are_deterministic_and_valid() -> None:
    a = seeded_subjects(5)
    population.__globals__["_CACHE"].clear()
    seeded_subjects.cache_clear()
    b = seeded_subjects(5)
    assert a == b
    assert {s.id_no for s in a} != {s.id_no for s in seeded_subjects(6)}
    assert len({s.id_no for s in a}) == len(a)
    assert all(resident_id_problem(s.id_no) is None for s in a)
    assert all((int(s.id_no[16]) % 2 == 1) == (s.gender == "男") for s in a)
    assert all(2 <= len(s.name) <= 3 for s in a)
    rich, busy, poor = (subject_by_role(5, r) for r in ("rich", "encumbered", "no_assets"))
    assert rich.bank_accounts and rich.properties and rich.vehicles and rich.active_phone_numbers
    assert all(not a.held_by_other_court for a in (*rich.bank_accounts, *rich.properties, *rich.vehicles))
    assert busy.bank_accounts[0].held_by_other_court and busy.properties[0].held_by_other_court
    assert not (poor.bank_accounts or poor.properties or poor.vehicles or poor.phone_numbers)
    assert sum(1 for s in a if s.bank_accounts) > len(a) // 2


async def test_two_processes_with_one_seed_serve_the_same_data() -> None:
    rich = subject_by_role(3, "rich")
    subject = Subject(name=rich.name, id_no=rich.id_no)
    answers = []
    for _ in range(2):
        with SimulatorProcess.start("bank", seed=3, now=T0_ISO) as proc:
            async with BankClient(proc.url) as bank:
                inq = await bank.inquire(HERE, subject, request_id="same")
                txns = await bank.transactions(
                    HERE, subject, inq.accounts[0].account_no, date(2025, 1, 1), date(2026, 1, 1)
                )
                answers.append((inq, txns))
    assert answers[0] == answers[1]


# --------------------------------------------------------------------------- process lifecycle


async def test_store_and_clock_survive_a_restart_and_the_seed_is_checked(tmp_path: Path) -> None:
    rich = subject_by_role(4, "rich")
    subject = Subject(name=rich.name, id_no=rich.id_no)
    proc = SimulatorProcess.start("land", seed=4, data_dir=tmp_path, now=T0_ISO)
    assert proc.url.startswith("http://127.0.0.1:") and not proc.url.endswith(":0")
    async with LandClient(proc.url) as land:
        res = await land.control(order("01", HERE, subject, asset_id=rich.properties[0].asset_id, term_days=30))
        await land.advance_clock(days=10)
    assert res.measure is not None
    assert proc.stop() == 0  # SIGTERM: graceful exit
    assert (tmp_path / "land.sqlite3").exists()
    with SimulatorProcess.start("land", seed=4, data_dir=tmp_path) as again:
        async with LandClient(again.url) as land:
            assert (await land.clock()).now_ms == T0_MS + 10 * DAY_MS
            view = await land.measure(res.measure.measure_id)
            assert view.status is MeasureStatus.ACTIVE
            await land.advance_clock(days=25)
            assert (await land.measure(res.measure.measure_id)).status is MeasureStatus.LAPSED
    with pytest.raises(RuntimeError, match="seeded with 4, not 5"):
        SimulatorProcess.start("land", seed=5, data_dir=tmp_path)


async def test_answer_delay_option() -> None:
    with SimulatorProcess.start("telecom", seed=1, delay_ms=300) as proc:
        async with client_for("telecom", proc.url) as tel:
            started = time.monotonic()
            await tel.health()
            assert time.monotonic() - started >= 0.3


# --------------------------------------------------------------------------- fault modes (in-process)


@pytest.fixture
async def bank_url() -> AsyncIterator[str]:
    handle = await start_simulator("bank", "127.0.0.1:0", seed=2, now=T0_ISO)
    yield handle.url
    await handle.stop()


async def test_fault_modes(bank_url: str) -> None:
    async with BankClient(bank_url, timeout_s=0.5) as bank:
        await bank.set_fault("error", count=1)
        with pytest.raises(AgencyUnavailable, match="HTTP 503"):
            await bank.health()
        await bank.health()  # count=1: back to normal
        await bank.set_fault("garbage", count=1)
        with pytest.raises(AgencyReplyInvalid, match="not JSON"):
            await bank.info()
        await bank.set_fault("hang")
        with pytest.raises(AgencyUnavailable) as err:
            await bank.health()
        assert err.value.timeout
        await bank.set_fault("slow", delay_ms=200, count=1)
        started = time.monotonic()
        await bank.health()
        assert time.monotonic() - started >= 0.2
        await bank.set_fault("normal")
        assert (await bank.info()).max_term_days == 365


async def test_unreachable_agency() -> None:
    handle = await start_simulator("bank", "127.0.0.1:0", seed=2)
    url = handle.url
    await handle.stop()
    async with BankClient(url, timeout_s=1) as bank:
        with pytest.raises(AgencyUnavailable, match="unreachable"):
            await bank.health()


# --------------------------------------------------------------------------- reply validation


async def _fake_agency(reply: Callable[[dict[str, Any]], web.Response]) -> tuple[web.AppRunner, str]:
    async def handler(request: web.Request) -> web.Response:
        body = await request.json() if request.method == "POST" else {}
        return reply(body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


RICH = subject_by_role(2, "rich")
SUBJECT = Subject(name=RICH.name, id_no=RICH.id_no)


def _account(**overrides: Any) -> dict[str, Any]:
    acc: dict[str, Any] = {
        "account_no": "6222020000000000000",
        "bank_name": "中国工商银行",
        "branch": "中国工商银行商丘分行",
        "account_type": "借记卡",
        "currency": "CNY",
        "status": "正常",
        "opened_on": "2020-01-01",
        "balance_fen": 100,
        "frozen_fen": 0,
        "available_fen": 100,
        "measures": [],
    }
    acc.update(overrides)
    return acc


@pytest.mark.parametrize(
    ("accounts", "field"),
    [
        ([_account(balance_fen="100")], "accounts[0].balance_fen"),
        ([_account(), _account(available_fen=500)], "accounts[1].available_fen"),
        ([_account(measures=[{"measure_id": "x"}])], "accounts[0].measures[0].asset_id"),
        ("none", "accounts"),
    ],
)
async def test_malformed_reply_names_the_field(accounts: object, field: str) -> None:
    def reply(body: dict[str, Any]) -> web.Response:
        return web.json_response(
            {"request_id": body["request_id"], "subject": body["subject"], "answered_at_ms": 1, "accounts": accounts}
        )

    runner, url = await _fake_agency(reply)
    try:
        async with BankClient(url) as bank:
            with pytest.raises(AgencyReplyInvalid) as err:
                await bank.inquire(HERE, SUBJECT)
        assert err.value.field == field and f"'{field}'" in str(err.value)
    finally:
        await runner.cleanup()


async def test_reply_for_another_request_or_subject_is_rejected() -> None:
    def reply(body: dict[str, Any]) -> web.Response:
        other = dict(body["subject"], id_no="11010519491231002X")
        return web.json_response(
            {"request_id": body["request_id"], "subject": other, "answered_at_ms": 1, "accounts": []}
        )

    runner, url = await _fake_agency(reply)
    try:
        async with BankClient(url) as bank:
            with pytest.raises(AgencyReplyInvalid, match=r"subject\.id_no"):
                await bank.inquire(HERE, SUBJECT)
    finally:
        await runner.cleanup()

    runner, url = await _fake_agency(lambda body: web.json_response({"request_id": "someone-else"}))
    try:
        async with BankClient(url) as bank:
            with pytest.raises(AgencyReplyInvalid, match="request_id"):
                await bank.inquire(HERE, SUBJECT)
    finally:
        await runner.cleanup()


async def test_refusal_without_an_error_body_is_a_malformed_reply() -> None:
    runner, url = await _fake_agency(lambda body: web.json_response({"oops": 1}, status=422))
    try:
        async with BankClient(url) as bank:
            with pytest.raises(AgencyReplyInvalid, match="error"):
                await bank.inquire(HERE, SUBJECT)
    finally:
        await runner.cleanup()


async def test_unknown_endpoint_is_a_refusal(bank_url: str) -> None:
    async with client_for("telecom", bank_url) as wrong:  # a telecom client pointed at a bank
        with pytest.raises(AgencyRefused) as err:
            await wrong.post("/v1/location", {"request_id": "r"}, lambda f: f)
    assert (err.value.http_status, err.value.reason) == (404, "no_such_endpoint")
