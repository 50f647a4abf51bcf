"""执行要情 important-case reports: level by level up, instructions back down (in-process tree).

Rule (hub.workflows.reports, defaults): a report of urgency ``urgent`` or higher is forwarded by
each receiving court in the transaction that received it, until the high court (省高院) has it;
a routine one waits for a forward by hand. Instructions and comments from above are relayed down
to the reporter; the reporter's follow-ups (续报) and closing are relayed up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from inproc import InProcTree, inproc_tree
from sqlalchemy import select
from test_wf_directives import routes_known

from hub.errors import AuthorityError, InvalidInput
from hub.localtree import NodeSpec
from hub.store.schema import audit
from hub.workflows import reports

SPECS = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),
]
CASE = "（2024）豫1402执123号"


async def _report(tree: InProcTree, court: str, rid: str) -> dict[str, Any] | None:
    found = [r for r in await reports.list_reports(tree[court]) if r["report_id"] == rid]
    return found[0] if found else None


async def _until(tree: InProcTree, court: str, rid: str, check: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def ok() -> bool:
        r = await _report(tree, court, rid)
        if r is not None and check(r):
            out.update(r)
            return True
        return False

    await tree.settle(ok)
    return out


async def test_rule_urgent_report_forwarded_to_the_province_and_instructions_flow_back(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS[:3]) as tree:
        await routes_known(tree)
        sent = await reports.send(
            tree["豫1402"],
            "被执行人聚众阻挠执行",
            "今日上午在执行现场，被执行人纠集二十余人阻挠执行，已报警。",
            "violence",
            "urgent",
            case_number=CASE,
        )
        rid = sent["id"]
        assert sent["to"] == "豫14"
        # rule: urgency ≥ urgent → the city forwards it by itself, the province keeps it.
        top = await _until(tree, "豫", rid, lambda r: r["hops"] and r["hops"][-1]["role"] == "party")
        assert [(h["from"], h["to"]) for h in top["hops"]] == [("豫14", "豫")]
        assert top["reporter"] == "豫1402" and top["category_name"] == "暴力抗拒执行" and top["case_number"] == CASE
        city = await _until(tree, "豫14", rid, lambda r: len(r["hops"]) == 2)
        assert [h["state"] for h in city["hops"]] == ["forwarded", "reported"]
        await _until(tree, "豫1402", rid, lambda r: r["hops"][0]["state"] == "forwarded")

        await reports.act(tree["豫14"], rid, "comment", "已派员赶赴现场")
        await reports.act(tree["豫"], rid[:8], "instruct", "依法处置，注意安全，及时续报")
        # The instruction reaches the reporter through the city, once, naming the province.
        county = await _until(tree, "豫1402", rid, lambda r: len(r["instructions"]) == 1)
        assert county["instructions"][0]["by"] == "豫" and county["instructions"][0]["text"].startswith("依法处置")
        shown = await reports.show(tree["豫1402"], rid)
        assert [e["action"] for e in shown["history"]].count("instruct") == 1
        comments = [e for e in shown["history"] if e["action"] == "comment"]
        assert [e["data"]["text"] for e in comments] == ["已派员赶赴现场"]

        await reports.act(tree["豫1402"], rid, "update", "现场已控制，无人员受伤")
        province = await _until(tree, "豫", rid, lambda r: r["state"] == "updated")
        assert province["hops"][0]["state"] == "updated"
        full = await reports.show(tree["豫"], rid)
        update = next(e for e in full["history"] if e["action"] == "update")
        assert update["data"] == {"text": "现场已控制，无人员受伤", "by": "豫1402", "relayed": True}
        await reports.act(tree["豫1402"], rid, "close", "处置完毕")
        await _until(tree, "豫", rid, lambda r: r["state"] == "closed")
        await _until(tree, "豫14", rid, lambda r: {h["state"] for h in r["hops"]} == {"closed"})
        # Each level has exactly its own hops; nothing twice.
        for court, n in (("豫1402", 1), ("豫14", 2), ("豫", 1)):
            r = await _report(tree, court, rid)
            assert r is not None and len(r["hops"]) == n, court


async def test_routine_report_waits_for_a_forward_by_hand(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS[:3]) as tree:
        await routes_known(tree)
        rid = (await reports.send(tree["豫1402"], "网络负面舆情", "某自媒体发布不实信息", "public_opinion"))["id"]
        await _until(tree, "豫14", rid, lambda r: r["state"] == "reported")
        await reports.act(tree["豫14"], rid, "comment", "请县院核实舆情来源")
        await _until(tree, "豫1402", rid, lambda r: r["state"] == "commented")
        assert await _report(tree, "豫", rid) is None  # rule: routine reports are not forwarded by themselves
        await reports.act(tree["豫14"], rid, "forward", note="建议省院关注")
        top = await _until(tree, "豫", rid, lambda r: True)
        shown = await reports.show(tree["豫"], rid)
        assert shown["comments_below"] == [{"by": "豫14", "text": "请县院核实舆情来源"}]
        assert shown["text"] == "某自媒体发布不实信息"  # the report itself, not the comment made on it
        assert top["urgency"] == "routine"
        with pytest.raises(InvalidInput) as err:
            await reports.act(tree["豫14"], rid, "forward")
        assert err.value.reason == "wrong_state"  # forwarded once, never twice
        with pytest.raises(InvalidInput, match="no court above"):
            await reports.act(tree["豫"], rid, "forward")


async def test_authority_reports_go_up_only_and_outsiders_cannot_act(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        await routes_known(tree)
        with pytest.raises(AuthorityError) as err:
            await reports.send(tree["豫14"], "向下报告", "不允许", "other", to="豫1402")
        assert err.value.reason == "wrong_direction"
        rid = (await reports.send(tree["豫1402"], "突发事件", "现场情况", "emergency"))["id"]
        await _until(tree, "豫14", rid, lambda r: True)
        with pytest.raises(AuthorityError) as err:
            await reports.act(tree["豫1403"], rid, "comment", "我不是收件方")
        assert err.value.reason == "not_a_party"
        with pytest.raises(AuthorityError) as err:
            await reports.act(tree["豫1402"], rid, "instruct", "自己批示自己")
        assert err.value.reason == "not_a_party"
        with pytest.raises(InvalidInput, match="category"):
            await reports.send(tree["豫1402"], "类别错误", "x", "gossip")
        for court, reasons in (("豫14", {"wrong_direction"}), ("豫1403", {"not_a_party"}), ("豫1402", {"not_a_party"})):
            rows = await tree[court].store.read(
                lambda c: c.execute(select(audit.c.detail).where(audit.c.action == "refused")).scalars().all()
            )
            assert {json.loads(r)["reason"] for r in rows} == reasons, court
