"""Directives completed (指令): per-recipient table, feedback with attachments, 催报, reconsideration.

In-process federations with a test-controlled clock (no sleeping). Rules (DESIGN.md §3, and the
defaults of hub.workflows.directive_flow), each named by the test that checks it:

* feedback deadline: the directive's own, else by level (routine 10 days, urgent 3 days …);
* overdue → 催报: the issuer reminds automatically when the deadline passes unanswered;
* 复议期限: reconsideration may be requested within 5 days of delivery, and is refused afterwards.

Authority: a lower court cannot issue directives upward; a court a directive was not sent to cannot
answer it — locally (clear error + audit entry) or by a forged envelope (refused by the issuer).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from inproc import InProcTree, inproc_tree
from sqlalchemy import select

from hub.codes import CourtCode
from hub.errors import AuthorityError, InvalidInput
from hub.federation.envelope import Target
from hub.localtree import NodeSpec
from hub.proto.courthub.v1 import workflow_pb2 as wpb
from hub.store.schema import audit
from hub.workflows import directive_flow as df
from hub.workflows import duty
from hub.workflows.schema import attachments
from hub.workflows.txsteps import tick

DAY = 86_400_000
SPECS = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),
]


async def routes_known(tree: InProcTree) -> None:
    """Until every court knows its whole subtree (announcements follow the links coming up)."""
    courts = [CourtCode.parse(c) for c in tree.nodes]

    def known() -> bool:
        return all(
            all(c in node.router.known_courts() for c in courts if c.is_within(node.me)) for node in tree.nodes.values()
        )

    await tree.settle(known)


async def _rows(tree: InProcTree, court: str, item: str) -> list[dict[str, Any]]:
    return [r for r in await tree[court].workflows.items("directive") if r["item_id"] == item]


async def _state(tree: InProcTree, court: str, item: str, party: str) -> str:
    rows = [r for r in await _rows(tree, court, item) if r["party"] == party]
    return str(rows[0]["state"]) if rows else ""


async def _both(tree: InProcTree, issuer: str, item: str, party: str, state: str) -> None:
    async def same() -> bool:
        return await _state(tree, issuer, item, party) == state and await _state(tree, party, item, party) == state

    await tree.settle(same)


async def _audit(tree: InProcTree, court: str, action: str) -> list[dict[str, Any]]:
    rows = await tree[court].store.read(
        lambda c: c.execute(select(audit.c.detail, audit.c.peer).where(audit.c.action == action)).all()
    )
    return [{"peer": r.peer, **json.loads(r.detail)} for r in rows]


async def test_subtree_directive_table_read_and_feedback_with_attachment(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        await routes_known(tree)
        sent = await df.issue(
            tree["豫"],
            CourtCode.parse("豫14"),
            "关于开展集中执行行动的通知",
            "请于三日内反馈",
            subtree=True,
            level="urgent",
            feedback_days=3,
        )
        item = sent["id"]
        assert sent["recipients"] == ["豫14", "豫1402", "豫1403"]
        for court in sent["recipients"]:
            await _both(tree, "豫", item, court, "delivered")
        await df.read(tree["豫1402"], item[:10], by="李伊玲")
        await _both(tree, "豫", item, "豫1402", "read")
        report = "已冻结被执行人存款 12 万元".encode() * 100
        await df.feedback(tree["豫1402"], item, "已完成，详见附件", [("执行情况.txt", report)], by="李伊玲")
        await _both(tree, "豫", item, "豫1402", "answered")
        await df.read(tree["豫1403"], item)
        await _both(tree, "豫", item, "豫1403", "read")

        table = await df.show(tree["豫"], item)
        assert table["role"] == "issuer" and table["level"] == "urgent"
        by_court = {r["court"]: r for r in table["recipients"]}
        assert set(by_court) == {"豫14", "豫1402", "豫1403"}
        await tree.settle(lambda: _delivered_all(tree, item))
        a = by_court["豫1402"]
        assert a["read_by"] == "李伊玲" and a["answered"] and a["on_time"] is True
        assert a["feedback"]["text"] == "已完成，详见附件"
        digest = hashlib.sha256(report).hexdigest()
        assert a["feedback"]["files"] == [{"name": "执行情况.txt", "sha256": digest, "size": len(report)}]
        assert by_court["豫1403"]["read"] and not by_court["豫1403"]["answered"]
        assert by_court["豫14"]["state"] == "delivered" and not by_court["豫14"]["read"]
        assert table["summary"]["answered"] == 1 and table["summary"]["read"] == 2
        # The attachment travelled with the step and is stored by digest at the issuer.
        stored = await tree["豫"].store.read(
            lambda c: c.execute(select(attachments.c.content).where(attachments.c.sha256 == digest)).scalar()
        )
        assert stored == report
        fetched = await df.attachment(tree["豫"], digest[:10])
        assert fetched["name"] == "执行情况.txt" and fetched["size"] == len(report)
        # The recipient's own view: its row, not the others'.
        mine = await df.show(tree["豫1403"], item)
        assert mine["role"] == "recipient" and [r["court"] for r in mine["recipients"]] == ["豫1403"]


async def _delivered_all(tree: InProcTree, item: str) -> bool:
    table = await df.show(tree["豫"], item)
    return bool(table["summary"]["delivered"] == 3)


async def test_rule_feedback_deadline_by_level_then_automatic_催报(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS[:3]) as tree:
        await routes_known(tree)
        start = tree.clock.now_ms()
        item = (await df.issue(tree["豫"], CourtCode.parse("豫14"), "例行指令", "请反馈", subtree=True))["id"]
        await _both(tree, "豫", item, "豫1402", "delivered")
        await _both(tree, "豫", item, "豫14", "delivered")
        row = (await _rows(tree, "豫1402", item))[0]
        assert row["deadline_ms"] == start + 10 * DAY  # rule: routine feedback within 10 days
        await df.feedback(tree["豫14"], item, "已部署")
        await _both(tree, "豫", item, "豫14", "answered")
        tree.clock.advance(days=10, ms=-1)
        assert await tick(tree["豫"]) == []  # not yet overdue
        tree.clock.advance(ms=1)
        taken = await tick(tree["豫"])
        # rule: overdue → 催报, only to the court that has not answered
        assert [(t["action"], t["party"]) for t in taken] == [("remind", "豫1402")]
        await _both(tree, "豫", item, "豫1402", "reminded")
        assert await tick(tree["豫"]) == []  # one automatic reminder; more are by hand
        assert await tick(tree["豫1402"]) == []  # the recipient never reminds itself
        await df.feedback(tree["豫1402"], item, "逾期反馈：已执行完毕")
        await _both(tree, "豫", item, "豫1402", "answered")
        table = {r["court"]: r for r in (await df.show(tree["豫"], item))["recipients"]}
        assert table["豫1402"]["reminders"] == 1 and table["豫1402"]["on_time"] is False
        assert table["豫14"]["on_time"] is True and table["豫14"]["reminders"] == 0
        # An emergency directive's window is hours: 2 h for level Ⅰ.
        urgent = await df.issue(tree["豫"], CourtCode.parse("豫1402"), "突发事件处置", "立即处置", level="emergency_1")
        await _both(tree, "豫", urgent["id"], "豫1402", "delivered")
        row = (await _rows(tree, "豫1402", urgent["id"]))[0]
        assert row["deadline_ms"] == tree.clock.now_ms() + 2 * 3_600_000


async def test_rule_reconsideration_within_5_days_of_delivery(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS[:3]) as tree:
        await routes_known(tree)
        a = (await df.issue(tree["豫14"], CourtCode.parse("豫1402"), "指令一", "执行"))["id"]
        b = (await df.issue(tree["豫14"], CourtCode.parse("豫1402"), "指令二", "执行"))["id"]
        await _both(tree, "豫14", a, "豫1402", "delivered")
        await _both(tree, "豫14", b, "豫1402", "delivered")
        tree.clock.advance(days=4, ms=-1)
        await df.reconsider(tree["豫1402"], a, "案件已和解，申请复议")  # rule: within 5 days — accepted
        await _both(tree, "豫14", a, "豫1402", "reconsidering")
        await df.decide(tree["豫14"], a, "豫1402", "uphold", "维持原指令，请继续执行", feedback_days=2)
        await _both(tree, "豫14", a, "豫1402", "upheld")
        row = (await _rows(tree, "豫1402", a))[0]
        assert row["deadline_ms"] == tree.clock.now_ms() + 2 * DAY
        tree.clock.advance(days=1, ms=2)  # 5 days and 1 ms after delivery
        with pytest.raises(InvalidInput) as err:
            await df.reconsider(tree["豫1402"], b, "超期申请")
        assert err.value.reason == "reconsideration_window_closed"
        assert "复议期限" in err.value.message and "5 days" in err.value.message
        assert await _state(tree, "豫1402", b, "豫1402") == "delivered"
        refused = await _audit(tree, "豫1402", "refused")
        assert [r["reason"] for r in refused] == ["reconsideration_window_closed"]
        # Upheld once, it cannot be reconsidered again; a withdrawn directive needs no feedback.
        with pytest.raises(InvalidInput) as err:
            await df.reconsider(tree["豫1402"], a, "再次申请")
        assert err.value.reason == "wrong_state"
        c = (await df.issue(tree["豫14"], CourtCode.parse("豫1402"), "指令三", "执行"))["id"]
        await _both(tree, "豫14", c, "豫1402", "delivered")
        await df.reconsider(tree["豫1402"], c, "情况变化")
        await _both(tree, "豫14", c, "豫1402", "reconsidering")
        await df.decide(tree["豫14"], c, "豫1402", "withdraw", "同意撤回")
        await _both(tree, "豫14", c, "豫1402", "withdrawn")
        tree.clock.advance(days=30)
        # 催报 for the upheld-but-unanswered and the never-answered ones, not for the withdrawn one.
        assert sorted(t["item_id"] for t in await tick(tree["豫14"])) == sorted([a, b])


async def test_rule_reconsideration_refused_at_the_issuer_after_5_days(tmp_path: Path) -> None:
    """The issuer checks the same rule against the recipient's signed receipt (a forged late request
    that skipped the recipient's own check is refused there, with an audit entry)."""
    async with inproc_tree(tmp_path, SPECS[:3]) as tree:
        await routes_known(tree)
        item = (await df.issue(tree["豫14"], CourtCode.parse("豫1402"), "指令", "执行"))["id"]
        await _both(tree, "豫14", item, "豫1402", "delivered")
        await tree.settle(lambda: _receipt(tree, item))
        tree.clock.advance(days=6)
        county = tree["豫1402"]
        payload = wpb.WorkflowPayload(
            workflow="directive",
            item_id=item,
            action="reconsider",
            issuer="豫14",
            party="豫1402",
            data_json=json.dumps({"reason": "迟到的复议申请"}),
            deadline_ms=0,
        )
        await county.exchange.originate("workflow", Target.to_court(CourtCode.parse("豫14")), payload)

        async def refused() -> bool:
            return any(
                r.get("reason") == "reconsideration_window_closed" for r in await _audit(tree, "豫14", "rejected")
            )

        await tree.settle(refused)
        assert await _state(tree, "豫14", item, "豫1402") == "delivered"


async def _receipt(tree: InProcTree, item: str) -> bool:
    table = await df.show(tree["豫14"], item)
    return bool(table["recipients"][0]["delivered"])


async def test_urgent_directive_goes_to_the_duty_officer(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS[:3]) as tree:
        await routes_known(tree)
        county = tree["豫1402"]
        today = duty.court_date(tree.clock.now_ms())
        await duty.set_duty(county, today, "王值班", "13800000001")
        await duty.sign_in(county, "张替班", "13800000002")  # a stand-in took today's shift
        current = await duty.current_duty(county)
        assert current is not None and current["officer"] == "张替班" and current["stand_in"]
        assert (await county.status())["duty"]["officer"] == "张替班"
        item = (await df.issue(tree["豫"], CourtCode.parse("豫1402"), "紧急指令", "立即处置", level="urgent"))["id"]
        await _both(tree, "豫", item, "豫1402", "delivered")
        mine = (await _rows(tree, "豫1402", item))[0]
        assert mine["data"]["assignee"] == {"officer": "张替班", "phone": "13800000002", "source": "duty"}
        await df.read(county, item)  # read by default by the assignee
        await _both(tree, "豫", item, "豫1402", "read")
        table = await df.show(tree["豫"], item)
        assert table["recipients"][0]["read_by"] == "张替班"
        # A routine directive is not assigned.
        plain = (await df.issue(tree["豫"], CourtCode.parse("豫1402"), "例行", "知悉"))["id"]
        await _both(tree, "豫", plain, "豫1402", "delivered")
        assert "assignee" not in (await _rows(tree, "豫1402", plain))[0]["data"]


async def test_authority_upward_directive_and_outsider_refused_with_audit(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        await routes_known(tree)
        with pytest.raises(AuthorityError) as err:
            await df.issue(tree["豫1402"], CourtCode.parse("豫14"), "越级指令", "")
        assert err.value.reason == "wrong_direction"
        assert [r["reason"] for r in await _audit(tree, "豫1402", "refused")] == ["wrong_direction"]

        item = (await df.issue(tree["豫14"], CourtCode.parse("豫1402"), "指令", "执行"))["id"]
        await _both(tree, "豫14", item, "豫1402", "delivered")
        # 豫1403 was not sent this directive: it cannot answer it here …
        with pytest.raises(AuthorityError) as err:
            await df.feedback(tree["豫1403"], item, "冒名反馈")
        assert err.value.reason == "not_a_party"
        assert "not_a_party" in [r["reason"] for r in await _audit(tree, "豫1403", "refused")]
        # … nor by a forged envelope in 豫1402's name: the issuer refuses it and keeps an entry.
        payload = wpb.WorkflowPayload(
            workflow="directive",
            item_id=item,
            action="answer",
            issuer="豫14",
            party="豫1402",
            data_json=json.dumps({"text": "冒名反馈", "files": []}),
            deadline_ms=-1,
        )
        await tree["豫1403"].exchange.originate("workflow", Target.to_court(CourtCode.parse("豫14")), payload)

        async def rejected() -> bool:
            return any(r.get("reason") == "not_authorized" for r in await _audit(tree, "豫14", "rejected"))

        await tree.settle(rejected)
        assert await _state(tree, "豫14", item, "豫1402") == "delivered"
        # The issuer's own step is not the recipient's to take either.
        with pytest.raises(AuthorityError):
            await df.decide(tree["豫1402"], item, "豫1402", "withdraw", "自行撤回")


async def test_feedback_size_limits_are_clear_errors(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS[:3]) as tree:
        await routes_known(tree)
        item = (await df.issue(tree["豫14"], CourtCode.parse("豫1402"), "指令", "执行"))["id"]
        await _both(tree, "豫14", item, "豫1402", "delivered")
        with pytest.raises(InvalidInput, match=r"attachment '大文件.pdf' is 262145 bytes; the limit is 262144"):
            await df.feedback(tree["豫1402"], item, "附件过大", [("大文件.pdf", b"x" * (256 * 1024 + 1))])
        four = [(f"第{i}份.pdf", b"y" * (200 * 1024)) for i in range(4)]
        with pytest.raises(InvalidInput, match=r"attachments total 819200 bytes; the limit is 786432"):
            await df.feedback(tree["豫1402"], item, "附件总量过大", four)
        with pytest.raises(InvalidInput, match="not allowed"):
            await df.feedback(tree["豫1402"], item, "路径", [("../etc/passwd", b"z")])
        with pytest.raises(InvalidInput, match="text is required"):
            await df.feedback(tree["豫1402"], item, "  ")
        assert await _state(tree, "豫1402", item, "豫1402") == "delivered"
