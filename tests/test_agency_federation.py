"""立案即查 and control measures across real node processes and real agency simulator processes.

The tree: 豫 (province) with national (总对总) connectors for all four agencies, 豫14 (city) with a
点对点 bank connector of scope 豫14, and the basic court 豫1402 with no plugins at all. Everything
豫1402 asks for is relayed through the federation to the nearest ancestor offering it: the bank to
豫14, the rest to 豫. The nodes run with ``COURTHUB_CLOCK_CONTROL=1`` so the reminder test moves a
node's clock forward (admin ``clock.advance``) instead of sleeping.

A second, single-node federation runs its agency queue only in a separate ``court-hub worker``
process (``node_worker = false``) to show the scale-out path.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.config import Home
from hub.localtree import LocalTree, NodeSpec
from plugins.agency import client_for
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import SeededSubject, subject_by_role

SEED = 7
KINDS = ("bank", "land", "public_security", "telecom")
DAY_MS = 86_400_000
AGENCY = {
    "judge_name": "李明",
    "judge_phone": "0370-3211234",
    "officer_ids": ["豫14-0001", "豫14-0002"],
    "check_interval_s": 3600,  # the tests raise reminders explicitly, deterministically
}


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, SimulatorProcess]]:
    started: dict[str, SimulatorProcess] = {}
    try:
        for kind in KINDS:
            started[kind] = SimulatorProcess.start(kind, seed=SEED)
        yield started
    finally:
        for sim in started.values():
            sim.stop()


@pytest.fixture(scope="module")
def tree(sims: dict[str, SimulatorProcess], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTree]:
    national = {k: {"url": s.url} for k, s in sims.items()}
    city_bank = {"bank": {"url": sims["bank"].url, "scope": "豫14"}}
    specs = [
        NodeSpec("豫", "河南省高级人民法院", plugins=national, agency=AGENCY),
        NodeSpec("豫14", "商丘市中级人民法院", "豫", plugins=city_bank, agency=AGENCY),
        NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14", agency=AGENCY),
    ]
    with LocalTree(tmp_path_factory.mktemp("agency-tree"), specs, env={"COURTHUB_CLOCK_CONTROL": "1"}) as t:
        t.start_all()
        t.wait_until(lambda: len(_inquiry_caps(t, "豫1402")) == 4, 30, "豫1402 to learn the four capabilities")
        yield t


def _inquiry_caps(tree: LocalTree, court: str) -> dict[str, str]:
    caps: dict[str, str] = tree.status(court)["capabilities"]
    return {c: where for c, where in caps.items() if c.endswith(".inquiry")}


@pytest.fixture(scope="module")
def rich() -> SeededSubject:
    return subject_by_role(SEED, "rich")


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
    if check:
        assert done.returncode == 0, f"court-hub {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _file(tree: LocalTree, court: str, number: str, who: SeededSubject, wait_s: float = 30) -> dict[str, Any]:
    args = {"number": number, "party": who.name, "id_number": who.id_no, "wait_s": wait_s}
    result = tree.call(court, "case.file", args, timeout=wait_s + 30)
    assert isinstance(result, dict)
    return result


def _control(tree: LocalTree, court: str, **args: Any) -> dict[str, Any]:
    result = tree.call(court, "control.request", {"wait_s": 30, **args}, timeout=60)["measure"]
    assert isinstance(result, dict)
    return result


def test_capabilities_are_announced_down_the_tree(tree: LocalTree) -> None:
    caps = tree.status("豫1402")["capabilities"]
    assert caps["bank.inquiry"] == "豫14" and caps["bank.control"] == "豫14"  # 点对点 at the city
    for kind in ("land", "public_security", "telecom"):
        assert caps[f"{kind}.inquiry"] == "豫"  # 总对总 at the province
    assert tree.status("豫1402")["agency"]["offered"] == []
    assert tree.status("豫14")["agency"]["offered"] == ["bank.control", "bank.inquiry"]


def test_filing_at_a_basic_court_gets_answers_from_all_four_agencies_via_relay(
    tree: LocalTree, rich: SeededSubject
) -> None:
    number = "（2026）豫1402执101号"
    shown = _file(tree, "豫1402", number, rich)
    assert shown["created"] is True
    by_agency = {i["agency"]: i for i in shown["inquiries"]}
    assert set(by_agency) == set(KINDS)
    for kind, item in by_agency.items():
        assert item["status"] == "answered", item
        assert item["route"] == "relay"
        assert item["served_by"] == ("豫14" if kind == "bank" else "豫")
        assert item["plugin"] == kind
        assert item["answered_at_ms"] >= item["requested_at_ms"]
        assert item["result"]["status"] == "answered"
    assert by_agency["bank"]["assets"]["count"] == len(rich.bank_accounts)
    assert by_agency["bank"]["assets"]["total_amount_fen"] == rich.bank_balance_fen
    assert by_agency["land"]["assets"]["count"] == len(rich.properties)
    # Filing the same case again is a no-op; a case of another court is refused.
    assert _file(tree, "豫1402", number, rich, wait_s=0)["created"] is False
    refused = _cli("case", "file", "--home", str(tree.homes["豫1402"]), "--number", "（2026）豫1403执1号",
                   "--party", rich.name, "--id-number", rich.id_no, check=False)  # fmt: skip
    assert refused.returncode != 0 and "belongs to court 豫1403" in refused.stderr
    # The serving courts answered from their own queues; the asking court queued nothing.
    assert tree.status("豫14")["agency"]["queue"]["by_plugin"]["bank"]["answered"] >= 1
    assert tree.status("豫")["agency"]["queue"]["by_plugin"]["land"]["answered"] >= 1
    assert tree.status("豫1402")["agency"]["queue"]["by_plugin"] == {}


def test_case_show_cli_lists_per_agency_states_and_timings(tree: LocalTree, rich: SeededSubject) -> None:
    number = "（2026）豫1402执102号"
    _file(tree, "豫1402", number, rich)
    home = str(tree.homes["豫1402"])
    data = json.loads(_cli("case", "show", "--home", home, number, "--json").stdout)
    rows = {i["agency"]: i for i in data["inquiries"]}
    assert {k: rows[k]["status"] for k in KINDS} == dict.fromkeys(KINDS, "answered")
    assert all(rows[k]["elapsed_ms"] is not None and rows[k]["elapsed_ms"] >= 0 for k in KINDS)
    human = _cli("case", "show", "--home", home, number).stdout
    assert "立案即查" in human and "已反馈" in human and "经上级 豫14" in human


def test_a_freeze_via_relay_records_the_controlled_amount_and_expiry(tree: LocalTree, rich: SeededSubject) -> None:
    number = "（2026）豫1402执103号"
    _file(tree, "豫1402", number, rich)
    account = max(rich.bank_accounts, key=lambda a: a.balance_fen or 0)
    before = tree.call("豫1402", "case.show", {"number": number})["case"]["filed_at_ms"]
    m = _control(tree, "豫1402", number=number, action="freeze", agency="bank", asset=account.asset_id,
                 amount_fen=100_000)  # fmt: skip
    assert m["status"] == "answered" and m["outcome"] == "done", m
    assert (m["route"], m["served_by"]) == ("relay", "豫14")
    assert m["state"] == "active" and m["measure_id"]
    assert m["requested_amount_fen"] == m["controlled_amount_fen"] == 100_000
    assert m["term_days"] == 365
    # Deposits: one year at most (民诉法解释 art. 485); the agency's clock is the system clock here.
    assert abs(m["expires_at_ms"] - (before + 365 * DAY_MS)) < DAY_MS
    # More than what is left on the account: a partial freeze with the reason.
    big = _control(tree, "豫1402", number=number, action="freeze", agency="bank", asset=account.asset_id,
                   amount_fen=(account.balance_fen or 0) + 10_000_000)  # fmt: skip
    assert big["outcome"] == "partial" and big["reason"], big
    assert big["controlled_amount_fen"] < big["requested_amount_fen"]
    # The relaying court has the envelope in its audit; the whole chain verifies offline.
    assert _cli("audit", "verify", "--home", str(tree.homes["豫14"])).returncode == 0


def test_a_waiting_freeze_takes_effect_after_the_release(tree: LocalTree, rich: SeededSubject) -> None:
    first, second = "（2026）豫1402执104号", "（2026）豫1402执105号"
    _file(tree, "豫1402", first, rich)
    _file(tree, "豫1402", second, rich)
    account = min(rich.bank_accounts, key=lambda a: a.balance_fen or 0)
    held = _control(tree, "豫1402", number=first, action="freeze", agency="bank", asset=account.asset_id,
                    amount_fen=account.balance_fen)  # fmt: skip
    assert held["state"] == "active", held
    waiting = _control(tree, "豫1402", number=second, action="wait", agency="bank", asset=account.asset_id,
                       amount_fen=50_000)  # fmt: skip
    assert waiting["outcome"] == "queued" and waiting["state"] == "waiting" and waiting["queue_position"] >= 1
    released = _control(tree, "豫1402", number=first, action="release", agency="bank", asset=account.asset_id)
    assert released["outcome"] == "done" and released["target_measure_id"] == held["measure_id"]

    def states() -> dict[str, Any]:
        a = tree.call("豫1402", "case.show", {"number": first})["measures"]
        b = tree.call("豫1402", "case.show", {"number": second})["measures"]
        return {"first": a[0]["state"], "second": b[0]}

    # The release makes the court ask the bank again for the cases waiting on that account.
    tree.wait_until(lambda: states()["second"]["state"] == "active", 30, "the waiting freeze to take effect")
    now = states()
    assert now["first"] == "released"
    assert now["second"]["expires_at_ms"] is not None and now["second"]["queue_position"] is None


def test_a_case_filed_while_the_city_node_is_down_is_answered_after_its_restart(
    tree: LocalTree, rich: SeededSubject
) -> None:
    """豫14 relays everything 豫1402 asks (and serves its bank): kill -9 it, file, restart it."""
    tree.kill("豫14")
    number = "（2026）豫1402执107号"
    shown = _file(tree, "豫1402", number, rich, wait_s=1)
    assert {i["status"] for i in shown["inquiries"]} == {"pending"} and len(shown["inquiries"]) == 4
    tree.start("豫14")
    tree.wait_links(60)

    def states() -> dict[str, str]:
        rows = tree.call("豫1402", "case.show", {"number": number})["inquiries"]
        return {i["agency"]: i["status"] for i in rows}

    tree.wait_until(lambda: set(states().values()) == {"answered"}, 60, "answers after the restart")
    served = {i["agency"]: i["served_by"] for i in tree.call("豫1402", "case.show", {"number": number})["inquiries"]}
    assert served == {"bank": "豫14", "land": "豫", "public_security": "豫", "telecom": "豫"}


def test_control_needs_a_reachable_capability_and_a_case(tree: LocalTree) -> None:
    home = str(tree.homes["豫1402"])
    no_case = _cli("control", "--home", home, "（2026）豫1402执999号", "freeze", "--agency", "bank",
                   "--asset", "X", "--amount", "1", check=False)  # fmt: skip
    assert no_case.returncode != 0 and "no case" in no_case.stderr
    no_cap = _cli("control", "--home", home, "（2026）豫1402执101号", "freeze", "--agency", "customs",
                  "--asset", "X", "--amount", "1", check=False)  # fmt: skip
    assert no_cap.returncode != 0 and "customs.control" in no_cap.stderr


def test_plugins_list_and_status_show_plugins_queue_and_health(tree: LocalTree) -> None:
    listed = json.loads(_cli("plugins", "list", "--home", str(tree.homes["豫"]), "--json").stdout)
    plugins = {p["name"]: p for p in listed["plugins"]}
    assert set(plugins) == set(KINDS)
    for kind in KINDS:
        p = plugins[kind]
        assert p["state"] == "active" and p["scope"] == "national" and p["api_version"] and p["version"]
        assert p["capabilities"] == [f"{kind}.inquiry", f"{kind}.control"]
        assert p["health"]["status"] == "up"
    city = json.loads(_cli("plugins", "list", "--home", str(tree.homes["豫14"]), "--json").stdout)
    states = {p["name"]: (p["state"], p["scope"]) for p in city["plugins"]}
    assert states["bank"] == ("active", "豫14")
    assert states["land"][0] == "disabled"  # installed, not configured on this node
    status = _cli("status", "--home", str(tree.homes["豫14"])).stdout
    assert "agency queue" in status and "bank(active/up)" in status


def test_renewal_reminders_are_raised_before_expiry_then_the_measure_lapses(
    tree: LocalTree, rich: SeededSubject
) -> None:
    """Runs last in this module: it moves 豫1402's clock forward by more than a year."""
    number = "（2026）豫1402执106号"
    _file(tree, "豫1402", number, rich)
    prop = rich.properties[0]
    seal = _control(tree, "豫1402", number=number, action="seal", agency="land", asset=prop.asset_id)
    assert seal["state"] == "active" and seal["served_by"] == "豫", seal
    assert seal["term_days"] == 3 * 365  # real estate: three years
    deposits = [
        m for m in tree.call("豫1402", "case.show", {"number": "（2026）豫1402执103号"})["measures"]
        if m["state"] == "active"
    ]  # fmt: skip
    assert deposits, "the freeze of the earlier test is still in force"
    expiry = deposits[0]["expires_at_ms"]
    assert tree.call("豫1402", "control.remind")["raised"] == []  # nothing is near its expiry yet

    now = tree.call("豫1402", "clock.advance", {"ms": 0})["now_ms"]
    tree.call("豫1402", "clock.advance", {"ms": expiry - now - 29 * DAY_MS})  # 29 days before
    raised = tree.call("豫1402", "control.remind")["raised"]
    mine = [r for r in raised if r["measure_id"] == deposits[0]["measure_id"]]
    assert mine and mine[0]["kind"] == "renewal_due" and mine[0]["stage"] == 1 and mine[0]["days_left"] == 29
    assert all(r["agency"] == "bank" for r in raised)  # the seal has three years left
    assert tree.call("豫1402", "control.remind")["raised"] == []  # once per stage

    tree.call("豫1402", "clock.advance", {"days": 23})  # 6 days before: the final reminder
    final = [r for r in tree.call("豫1402", "control.remind")["raised"] if r["measure_id"] == mine[0]["measure_id"]]
    assert final and final[0]["stage"] == 2

    shown = tree.call("豫1402", "case.show", {"number": "（2026）豫1402执103号"})
    assert [r["stage"] for r in shown["reminders"] if r["measure_id"] == mine[0]["measure_id"]] == [2, 1]
    assert "续冻提醒" in _cli("case", "show", "--home", str(tree.homes["豫1402"]), "（2026）豫1402执103号").stdout

    tree.call("豫1402", "clock.advance", {"days": 7})  # past the expiry, never renewed
    lapsed = [r for r in tree.call("豫1402", "control.remind")["raised"] if r["measure_id"] == mine[0]["measure_id"]]
    assert lapsed and lapsed[0]["kind"] == "lapsed"
    shown = tree.call("豫1402", "case.show", {"number": "（2026）豫1402执103号"})
    states = {m["measure_id"]: m["state"] for m in shown["measures"]}
    assert states[mine[0]["measure_id"]] == "lapsed"


# -- scale-out: the queue worked by a separate `court-hub worker` process ----------------------


def test_a_separate_worker_process_serves_the_queue(
    sims: dict[str, SimulatorProcess], rich: SeededSubject, tmp_path: Path
) -> None:
    plugins = {k: {"url": s.url} for k, s in sims.items()}
    spec = NodeSpec("豫", "河南省高级人民法院", plugins=plugins, agency={**AGENCY, "node_worker": False})
    with LocalTree(tmp_path / "solo", [spec]) as solo:
        solo.start_all()
        home = solo.homes["豫"]
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "hub", "worker", "--home", str(home), "--concurrency", "4"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            shown = _file(solo, "豫", "（2026）豫执7号", rich)
            assert {i["agency"]: (i["status"], i["route"]) for i in shown["inquiries"]} == dict.fromkeys(
                KINDS, ("answered", "local")
            )
            status = solo.status("豫")["agency"]
            assert status["worker"] is None  # the node ran no worker of its own
            assert status["queue"]["depth"] == 0
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(30)
            log.close()
        assert code == 0, (tmp_path / "worker.log").read_text()
        assert "answered 4" in (tmp_path / "worker.log").read_text()
        workers = _job_workers(home)
        assert workers and all(w.split(":")[1] == str(worker.pid) for w in workers), workers


def test_an_agency_that_misses_the_deadline_is_timed_out_with_the_reason_in_status(
    sims: dict[str, SimulatorProcess], rich: SeededSubject, tmp_path: Path
) -> None:
    plugins = {k: {"url": s.url} for k, s in sims.items()}
    spec = NodeSpec("豫", "河南省高级人民法院", plugins=plugins, agency={**AGENCY, "inquiry_timeout_s": 1.0})
    with LocalTree(tmp_path / "slow", [spec]) as solo:
        solo.start_all()
        asyncio.run(_slow_once(sims["telecom"].url, 4000))
        number = "（2026）豫执9号"
        _file(solo, "豫", number, rich, wait_s=0)

        def telecom() -> dict[str, Any]:
            solo.call("豫", "agency.check")  # what the periodic check does, now
            rows = solo.call("豫", "case.show", {"number": number})["inquiries"]
            found: dict[str, Any] = next(i for i in rows if i["agency"] == "telecom")
            return found

        solo.wait_until(lambda: telecom()["status"] == "timed_out", 20, "the telecom inquiry to time out")
        others = {i["agency"]: i["status"] for i in solo.call("豫", "case.show", {"number": number})["inquiries"]}
        assert others == {"bank": "answered", "land": "answered", "public_security": "answered", "telecom": "timed_out"}
        agency = solo.status("豫")["agency"]
        assert agency["inquiries"]["timed_out"] == 1
        # The queue gave up on the job too: listed with its reason among the dead letters.
        dead = [d for d in agency["queue"]["dead_letters"] if d["plugin"] == "telecom"]
        assert dead and dead[0]["status"] == "timed_out" and dead[0]["reason"] == "deadline", dead


async def _slow_once(url: str, delay_ms: int) -> None:
    async with client_for("telecom", url) as client:
        await client.set_fault("slow", delay_ms=delay_ms, count=1)


def _job_workers(home: Path) -> set[str]:
    from sqlalchemy import select

    from hub.provision import open_store
    from hub.store.agency_schema import agency_jobs

    h = Home(home)
    store = open_store(h, h.load())
    try:
        return set(store.read_sync(lambda conn: conn.execute(select(agency_jobs.c.worker)).scalars().all()))
    finally:
        store.close()


def test_agency_sim_command_serves_until_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "agency-sim", "telecom", "--listen", "127.0.0.1:0", "--seed", "3",
         "--data-dir", str(tmp_path / "data"), "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "agency-sim did not start"
            time.sleep(0.05)
        assert ready.read_text().startswith("http://127.0.0.1:")
        assert (tmp_path / "data" / "telecom.sqlite3").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
