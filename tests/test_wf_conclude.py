"""终结本次执行程序 (终本): the art. 1 checklist and the art. 9 follow-up, end to end.

A real bank simulator process answers the inquiries through the bank connector plugin of 商丘中院
(豫14); the cases are filed at 梁园区 (豫1402), whose 立案即查 is relayed up to it. Time is moved
by the tests (a node certificate lives a year, so each tree moves less than that). Rules named:
art. 1 (every item, more than 3 months since filing; refused with the missing items named), art. 9
(a re-inquiry every 6 months on its own, the applicant told, new assets → a 恢复执行 task; within
5 years), and upper courts seeing and supervising follow-ups across their subtree.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from inproc import InProcTree, inproc_tree
from sqlalchemy import select

from hub.clock import iso
from hub.errors import InvalidInput
from hub.localtree import NodeSpec
from hub.store.schema import audit
from hub.workflows import deadlines
from hub.workflows.deadlines import DAY_MS, add_months
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import subject_by_role
from plugins.agency.testing import T0_ISO

pytestmark = pytest.mark.asyncio(loop_scope="module")

SEED = 7
POOR = subject_by_role(SEED, "no_assets")
SPECS = [NodeSpec("豫14", "商丘市中级人民法院"), NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14")]
FAST = {"check_interval_s": 0.1, "stats": {"propagate_delay_s": 0.05, "interval_s": 3600}}
APPLICANT = {"name": "李四", "phone": "13800000000"}
COMPLETE = {
    "notice_served": True,
    "report_order_served": True,
    "report_checked": True,
    "consumption_restricted": True,
    "dishonest": "listed",
    "investigation_exhausted": True,
    "debtor_whereabouts": "known",
    "obstruction": "none",
    "applicant_heard": True,
}
_serial = itertools.count(500)


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimulatorProcess, Path]]:
    data = tmp_path_factory.mktemp("bank-sim")
    sim = SimulatorProcess.start("bank", seed=SEED, now=T0_ISO, data_dir=data)
    yield sim, data / "bank.sqlite3"
    sim.stop()


async def attach_bank(tree: InProcTree, url: str, at: str = "豫14", court: str = "豫1402") -> None:
    await tree[at].agency.load_plugins(config={"bank": {"url": url}})
    await tree.settle(lambda: "bank.inquiry" in tree[court].agency.inquiry_capabilities())


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def tree(
    tmp_path_factory: pytest.TempPathFactory, bank: tuple[SimulatorProcess, Path]
) -> AsyncIterator[InProcTree]:
    async with inproc_tree(tmp_path_factory.mktemp("conclude"), SPECS) as t:
        await attach_bank(t, bank[0].url)
        yield t


def op(tree: InProcTree, court: str, name: str) -> Any:
    return tree[court].admin.operations[name]


async def file_case(tree: InProcTree, court: str = "豫1402") -> str:
    number = f"（2026）{court}执{next(_serial)}号"
    shown = await tree[court].agency.file_case(
        {
            "number": number,
            "party": POOR.name,
            "id_number": POOR.id_no,
            "amount_fen": 5_000_000,
            "judge": "王明",
            "judge_phone": "0370-3211234",
            "officer_ids": [f"{court}-0001", f"{court}-0002"],
            "wait_s": 30,
        }
    )
    states = [(i["agency"], i["status"], i["message"]) for i in shown["inquiries"]]
    assert [s[:2] for s in states] == [("bank", "answered")], states
    return number


async def test_art1_refused_with_the_missing_items_named(tree: InProcTree) -> None:
    number = await file_case(tree)
    tree.clock.advance(days=60)
    partial = {k: COMPLETE[k] for k in ("notice_served", "report_order_served", "report_checked", "dishonest")}
    with pytest.raises(InvalidInput) as refused:
        await op(tree, "豫1402", "conclude.submit")({"number": number, "checklist": partial})
    assert refused.value.reason == "checklist_incomplete"
    message = refused.value.message
    missing = {
        "consumption_restricted",  # art. 1(2) 限制消费令
        "investigation_exhausted",  # art. 1(3)
        "three_months",  # art. 1(4): filed 60 days ago
        "debtor_whereabouts",  # art. 1(5)
        "obstruction",  # art. 1(5)
        "applicant_heard",  # art. 5
        "applicant",  # art. 9: whom to tell
    }
    for key in missing:
        assert key in message
    for key in partial:
        assert key not in message
    assert "限制消费令" in message and "三个月" in message
    checked = await op(tree, "豫1402", "conclude.check")({"number": number, "checklist": partial})
    assert {i["item"] for i in checked["items"] if not i["ok"]} == missing
    assert next(i for i in checked["items"] if i["item"] == "online_inquiry")["ok"] is True  # bank answered
    refusals = await tree["豫1402"].store.read(
        lambda c: c.execute(select(audit.c.detail).where(audit.c.action == "conclude_refused")).scalars().all()
    )
    assert any(number in r and "checklist_incomplete" in r for r in refusals)
    with pytest.raises(InvalidInput) as early:  # everything attested, but filed only 60 days ago
        await op(tree, "豫1402", "conclude.submit")({"number": number, "checklist": COMPLETE, "applicant": APPLICANT})
    assert "1. three_months" in early.value.message and "2." not in early.value.message


async def test_art1_allowed_when_complete_and_more_than_three_months(tree: InProcTree) -> None:
    number = await file_case(tree)
    filed = tree.clock.now_ms()
    tree.clock.advance(ms=add_months(filed, 3) - filed)
    with pytest.raises(InvalidInput, match="three_months"):  # exactly three months: not yet "more than"
        await op(tree, "豫1402", "conclude.submit")({"number": number, "checklist": COMPLETE, "applicant": APPLICANT})
    tree.clock.advance(days=1)
    done = await op(tree, "豫1402", "conclude.submit")(
        {"number": number, "checklist": COMPLETE, "applicant": APPLICANT}
    )
    assert done["concluded"] is True
    assert done["next_inquiry"] == iso(add_months(tree.clock.now_ms(), 6))  # art. 9: every 6 months
    with pytest.raises(InvalidInput) as again:
        await op(tree, "豫1402", "conclude.submit")({"number": number, "checklist": COMPLETE, "applicant": APPLICANT})
    assert again.value.reason == "already_concluded"
    await op(tree, "豫1402", "deadlines.tick")({})
    shown = await op(tree, "豫1402", "deadlines.show")({"number": number})
    assert [n["state"] for n in shown["nodes"] if n["node"] == "conclude"] == ["done"]  # 终本 concludes the case
    follow = await op(tree, "豫1402", "conclude.show")({"number": number})
    assert follow["state"] == "following" and follow["rounds"] == []


def open_account(db: Path, id_no: str, name: str, account_no: str, balance_fen: int) -> None:
    """The debtor opens an account at the bank (written into the simulator's own store)."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO accounts (account_no, owner_id_no, owner_name, bank_name, branch, account_type, balance,"
            " opened_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (account_no, id_no, name, "中国工商银行", "工商银行商丘分行", "活期储蓄", balance_fen, "2026-09-01"),
        )


async def test_art9_reinquiry_every_6_months_on_its_own_and_new_assets_raise_resume_task(
    tmp_path: Path, bank: tuple[SimulatorProcess, Path]
) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        await attach_bank(tree, bank[0].url)
        number = await file_case(tree)
        tree.clock.advance(days=100)
        await op(tree, "豫1402", "conclude.submit")({"number": number, "checklist": COMPLETE, "applicant": APPLICANT})
        concluded = tree.clock.now_ms()
        for node in tree.nodes.values():
            deadlines.of(node).configure(FAST)  # the follow-up check runs every 0.1 s (real time)
        account = f"62220{next(_serial):014d}"
        open_account(bank[1], POOR.id_no, POOR.name, account, 1_234_500)

        async def rounds() -> list[dict[str, Any]]:
            return list((await op(tree, "豫1402", "conclude.show")({"number": number}))["rounds"])

        tree.clock.advance(ms=add_months(concluded, 6) - concluded - 1)
        await _idle(tree)
        assert await rounds() == []  # not before six months
        tree.clock.advance(ms=1)

        async def round_done() -> bool:
            found = await rounds()
            return bool(found and found[0]["completed_at"])

        await tree.settle(round_done)  # nobody ticks: the node's own follow-up check runs it
        first = (await rounds())[0]
        assert first["round"] == 1 and first["inquiries"] == 1 and first["answered"] == 1
        assert first["result"] == "new_assets"
        assert [(a["agency"], a["kind"], a["asset_id"]) for a in first["new_assets"]] == [("bank", "deposit", account)]
        assert account in first["notice"] and APPLICANT["name"] in first["notice"]  # the applicant is told
        shown = await op(tree, "豫1402", "conclude.show")({"number": number})
        assert shown["next_inquiry"] == iso(add_months(concluded, 12))
        [task] = shown["resume_tasks"]
        assert task["state"] == "open" and task["case_type"] == "执恢"
        assert task["assets"][0]["asset_id"] == account

        # The upper court sees it across its subtree (signed summary) and supervises it.
        await op(tree, "豫1402", "stats.send")({})

        async def seen_above() -> bool:
            listed = await op(tree, "豫14", "conclude.list")({"subtree": True})
            return any(f["case_number"] == number and f["resume_task_open_since"] for f in listed["subtree_followups"])

        await tree.settle(seen_above)
        supervised = await op(tree, "豫14", "conclude.supervise")({"number": number})

        async def at_court() -> bool:
            items = await tree["豫1402"].workflows.items("supervision")
            return any(i["item_id"] == supervised["item_id"] and i["case_number"] == number for i in items)

        await tree.settle(at_court)

        # 恢复执行: the 执恢 case is filed (same respondent); the follow-up ends.
        resumed_number = number.replace("执", "执恢")
        with pytest.raises(InvalidInput, match="执恢"):
            await op(tree, "豫1402", "conclude.resume")({"task_id": task["task_id"], "resume_number": number})
        resumed = await op(tree, "豫1402", "conclude.resume")(
            {"task_id": task["task_id"], "resume_number": resumed_number, "file": True}
        )
        assert resumed["filed"] == resumed_number
        shown = await op(tree, "豫1402", "conclude.show")({"number": number})
        assert shown["state"] == "resumed" and shown["resume_case_number"] == resumed_number
        tree.clock.advance(days=200)
        await _idle(tree)
        assert len(await rounds()) == 1  # no more rounds once resumed
        new_case = await tree["豫1402"].agency.show_case({"number": resumed_number})
        assert new_case["case"]["party"]["name"] == POOR.name


async def _idle(tree: InProcTree) -> None:
    """Let the 0.1 s background checks run a few times."""
    await asyncio.sleep(0.5)


async def test_art9_followup_within_five_years_then_ends(tmp_path: Path, bank: tuple[SimulatorProcess, Path]) -> None:
    """One court with its own bank plugin (no links: the clock crosses its certificate's year)."""
    async with inproc_tree(tmp_path, [NodeSpec("豫14", "商丘市中级人民法院")]) as tree:
        await attach_bank(tree, bank[0].url, court="豫14")
        number = await file_case(tree, "豫14")
        filed = tree.clock.now_ms()
        tree.clock.advance(ms=add_months(filed, 3) - filed + DAY_MS)
        # (The debtor may hold the account an earlier test opened: declared not disposable.)
        checklist = {**COMPLETE, "assets_not_disposable": True, "assets_note": "账户余额已被他案冻结"}
        await op(tree, "豫14", "conclude.submit")({"number": number, "checklist": checklist, "applicant": APPLICANT})
        concluded = tree.clock.now_ms()
        shown = await op(tree, "豫14", "conclude.show")({"number": number})
        assert shown["until"] == iso(add_months(concluded, 60))
        tree.clock.advance(ms=add_months(concluded, 6) - concluded)
        first = await _round(tree, number, 1)
        assert first["result"] == "nothing_new" and "未发现新的可供执行财产" in first["notice"]
        # The node was off for years: the missed rounds are not made up one by one; the round at the
        # five-year mark is the last one.
        tree.clock.advance(ms=add_months(concluded, 60) - tree.clock.now_ms())
        last = await _round(tree, number, 2)
        assert last["due"] == iso(add_months(concluded, 12))
        shown = await op(tree, "豫14", "conclude.show")({"number": number})
        assert shown["state"] == "ended" and shown["next_inquiry"] is None
        tree.clock.advance(days=365)
        await op(tree, "豫14", "conclude.tick")({})
        assert len((await op(tree, "豫14", "conclude.show")({"number": number}))["rounds"]) == 2
        stats = await op(tree, "豫14", "stats.show")({})
        assert stats["own"]["concluded"]["ended"] == 1 and stats["own"]["concluded"]["rounds"] == 2


async def _round(tree: InProcTree, number: str, n: int) -> dict[str, Any]:
    async def done() -> bool:
        await op(tree, "豫14", "conclude.tick")({})
        rounds = (await op(tree, "豫14", "conclude.show")({"number": number}))["rounds"]
        return len(rounds) >= n and bool(rounds[n - 1]["completed_at"])

    await tree.settle(done)
    return dict((await op(tree, "豫14", "conclude.show")({"number": number}))["rounds"][n - 1])
