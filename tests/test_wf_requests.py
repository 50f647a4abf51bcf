"""事项请求 (requests for instructions, upward) and 信访 petitions (handed down), in-process tree.

Rules (hub.workflows.requests defaults), each named by its test:

* request answer deadline: 10 days by default; unanswered → automatic 催办 to the upper court;
* petition deadline: 30 days by default; no reply → automatic 催办 with 5 more days; still none →
  超期督办 (escalated); a reply sent back to be redone (退回重办) gets 15 more days.
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
from hub.workflows import requests
from hub.workflows.txsteps import tick

DAY = 86_400_000
SPECS = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),
]


async def _row(tree: InProcTree, court: str, workflow: str, item: str) -> dict[str, Any] | None:
    found = [r for r in await requests.list_items(tree[court], workflow) if r["id"] == item]
    return found[0] if found else None


async def _both(tree: InProcTree, a: str, b: str, workflow: str, item: str, state: str) -> None:
    async def same() -> bool:
        x, y = await _row(tree, a, workflow, item), await _row(tree, b, workflow, item)
        return bool(x and y and x["state"] == y["state"] == state)

    await tree.settle(same)


async def test_rule_request_answer_deadline_then_催办_and_answer_back(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS[:3]) as tree:
        await routes_known(tree)
        start = tree.clock.now_ms()
        sent = await requests.send_request(
            tree["豫1402"], "关于案外人异议期间能否继续拍卖的请示", "请上级法院明确法律适用意见", topic="law"
        )
        item = sent["id"]
        assert sent["to"] == "豫14"
        await _both(tree, "豫1402", "豫14", "request", item, "requested")
        shown = await requests.show(tree["豫14"], "request", item)
        assert shown["data"]["topic"] == "law" and shown["role"] == "party"
        assert (await tree["豫14"].workflows.items("request"))[0]["deadline_ms"] == start + 10 * DAY
        tree.clock.advance(days=10, ms=-1)
        assert await tick(tree["豫1402"]) == []
        tree.clock.advance(ms=1)
        taken = await tick(tree["豫1402"])  # rule: unanswered after 10 days → 催办
        assert [(t["workflow"], t["action"]) for t in taken] == [("request", "remind")]
        await _both(tree, "豫1402", "豫14", "request", item, "reminded")
        await requests.act(tree["豫14"], "request", item, "answer", {"text": "异议审查期间应暂缓拍卖"})
        await _both(tree, "豫1402", "豫14", "request", item, "answered")
        history = (await requests.show(tree["豫1402"], "request", item))["history"]
        assert [e["action"] for e in history] == ["create", "remind", "answer"]
        assert history[-1]["data"]["text"] == "异议审查期间应暂缓拍卖"
        with pytest.raises(AuthorityError) as err:  # the asker cannot answer its own request
            await requests.act(tree["豫1402"], "request", item, "answer", {"text": "自问自答"})
        assert err.value.reason == "not_a_party"


async def test_rule_petition_deadline_reminder_then_escalation_reply_return_close(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS[:3]) as tree:
        await routes_known(tree)
        sent = await requests.send_petition(
            tree["豫"],
            "豫1402",
            "信访人反映执行不力",
            "申请执行人反映案件长期未执结",
            "赵某",
            phone="13900000003",
            case_number="（2023）豫1402执45号",
        )
        item = sent["id"]
        await _both(tree, "豫", "豫1402", "petition", item, "handed_down")
        await requests.act(tree["豫1402"], "petition", item, "accept", {"by": "李伊玲"})
        await _both(tree, "豫", "豫1402", "petition", item, "accepted")
        tree.clock.advance(days=30, ms=1)
        taken = await tick(tree["豫"])  # rule: no reply within 30 days → 催办, 5 more days
        assert [t["action"] for t in taken] == ["remind"]
        await _both(tree, "豫", "豫1402", "petition", item, "reminded")
        row = await _row(tree, "豫1402", "petition", item)
        assert row is not None and row["overdue"] is False
        tree.clock.advance(days=5, ms=1)
        taken = await tick(tree["豫"])  # rule: still no reply → 超期督办
        assert [t["action"] for t in taken] == ["escalate"]
        await _both(tree, "豫", "豫1402", "petition", item, "escalated")
        await requests.act(tree["豫1402"], "petition", item, "reply", {"text": "已约谈申请人，执行款已发放"})
        await _both(tree, "豫", "豫1402", "petition", item, "replied")
        await requests.act(tree["豫"], "petition", item, "return", {"reason": "答复不完整", "redo_days": 15})
        await _both(tree, "豫", "豫1402", "petition", item, "returned")
        row = await _row(tree, "豫1402", "petition", item)
        assert row is not None and row["deadline"] is not None
        redo = (await tree["豫1402"].workflows.items("petition"))[0]["deadline_ms"]
        assert redo == tree.clock.now_ms() + 15 * DAY  # rule: redone within 15 days
        await requests.act(tree["豫1402"], "petition", item, "reply", {"text": "补充答复：已全部执结"})
        await _both(tree, "豫", "豫1402", "petition", item, "replied")
        await requests.act(tree["豫"], "petition", item, "close", {"text": "结案"})
        await _both(tree, "豫", "豫1402", "petition", item, "closed")
        shown = await requests.show(tree["豫"], "petition", item)
        assert shown["data"]["petitioner"] == "赵某"
        assert shown["data"]["text"] == "申请执行人反映案件长期未执结"  # what was handed down, not the reply
        assert shown["data"]["notify"] == [{"name": "赵某", "phone": "****0003"}]  # masked for display
        assert [e["action"] for e in shown["history"]] == [
            "create",
            "accept",
            "remind",
            "escalate",
            "reply",
            "return",
            "reply",
            "close",
        ]


async def test_authority_petitions_go_down_only_and_outsiders_cannot_reply(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        await routes_known(tree)
        with pytest.raises(AuthorityError) as err:
            await requests.send_petition(tree["豫1402"], "豫14", "向上交办", "不允许", "某人")
        assert err.value.reason == "wrong_direction"
        with pytest.raises(AuthorityError) as err:
            await requests.send_request(tree["豫14"], "向下请示", "不允许", to="豫1402")
        assert err.value.reason == "wrong_direction"
        item = (await requests.send_petition(tree["豫14"], "豫1402", "信访件", "内容", "钱某"))["id"]
        await _both(tree, "豫14", "豫1402", "petition", item, "handed_down")
        with pytest.raises(AuthorityError) as err:
            await requests.act(tree["豫1403"], "petition", item, "reply", {"text": "越权答复"})
        assert err.value.reason == "not_a_party"
        with pytest.raises(InvalidInput, match="petitioner"):
            await requests.send_petition(tree["豫14"], "豫1402", "信访件", "内容", "")
        with pytest.raises(InvalidInput, match="reply_days"):
            await requests.send_petition(tree["豫14"], "豫1402", "信访件", "内容", "孙某", reply_days=0)
        for court, reason in (("豫1402", "wrong_direction"), ("豫14", "wrong_direction"), ("豫1403", "not_a_party")):
            rows = await tree[court].store.read(
                lambda c: c.execute(select(audit.c.detail).where(audit.c.action == "refused")).scalars().all()
            )
            assert {json.loads(r)["reason"] for r in rows} == {reason}, court
