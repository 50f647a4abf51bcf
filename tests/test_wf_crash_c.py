"""督办, 事项请求, 信访 and 远程电子签章 across branches — two levels up, two levels down — while the
relaying city nodes are SIGKILLed and restarted in the middle: every item converges to the same
state at both ends, and each transition is recorded exactly once at each end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hub.errors import Unavailable
from hub.localtree import LocalTree, NodeSpec

pytestmark = pytest.mark.slow

SPECS = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫01", "郑州市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫0102", "郑州市中原区人民法院", "豫01"),
]
CASE = "（2024）豫1402执88号"
RICH_ID = "11010519491231002X"  # a well-formed resident ID (valid check digit)


def show(tree: LocalTree, court: str, item: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = tree.call(court, "workflow.show", {"item_id": item})
    except Exception:
        return None
    return data


def state(tree: LocalTree, court: str, item: str) -> str | None:
    data = show(tree, court, item)
    return str(data["items"][0]["state"]) if data and data["items"] else None


def until(tree: LocalTree, what: str, check: Any, timeout: float = 90) -> None:
    def ok() -> bool:
        try:
            return bool(check())
        except Unavailable:
            return False

    tree.wait_until(ok, timeout, what)


def test_workflows_converge_across_branches_through_relay_crashes(tmp_path: Path) -> None:
    with LocalTree(tmp_path, SPECS) as tree:
        tree.start_all()
        # Two levels down through 豫14: supervision of a case at 豫1402.
        sup = tree.call(
            "豫",
            "workflow.create",
            {
                "workflow": "supervision",
                "parties": ["豫1402"],
                "title": "督办函",
                "data": {"text": "请报告进展"},
                "case_number": CASE,
            },
        )["item_id"]
        # Two levels up through 豫14: a request for instructions, and a border-control approval.
        req = tree.call(
            "豫1402",
            "request.send",
            {"to": "豫", "title": "关于参与分配的请示", "text": "请予答复", "topic": "law", "answer_days": 5},
        )["id"]
        appr = tree.call(
            "豫1402",
            "approval.request",
            {
                "action": "border_control",
                "case_number": CASE,
                "subject_id": RICH_ID,
                "subject_name": "王某",
                "reason": "有出境迹象",
                "term_days": 90,
            },
        )["item_id"]
        # Two levels down the other branch through 豫01: a petition handed down.
        pet = tree.call(
            "豫",
            "petition.send",
            {
                "to": "豫0102",
                "title": "信访人反映执行款未到账",
                "text": "请核查答复",
                "petitioner": "李某",
                "reply_days": 30,
            },
        )["id"]

        # Crash both relays while the creations are in flight; restart them a moment later.
        tree.kill("豫14")
        tree.kill("豫01")
        time.sleep(1.0)
        tree.start("豫14")
        tree.start("豫01")
        until(
            tree,
            "creations at the far ends",
            lambda: all(
                (state(tree, c, i) is not None)
                for c, i in (("豫1402", sup), ("豫", req), ("豫", appr), ("豫0102", pet))
            ),
        )

        tree.call(
            "豫1402", "workflow.act", {"item_id": sup, "party": "豫1402", "action": "reply", "data": {"text": "已冻结"}}
        )
        tree.call("豫", "request.answer", {"id": req, "text": "可以参与分配"})
        tree.call("豫", "approval.decide", {"item_id": appr, "approve": True, "reason": "同意"})
        tree.call("豫0102", "petition.accept", {"id": pet, "by": "刘洋"})
        tree.call("豫0102", "petition.reply", {"id": pet, "text": "执行款已发放"})
        # And again while the answers travel.
        tree.kill("豫14")
        tree.kill("豫01")
        time.sleep(1.0)
        tree.start("豫14")
        tree.start("豫01")

        expected = {
            sup: ("豫", "豫1402", "replied"),
            req: ("豫1402", "豫", "answered"),
            appr: ("豫1402", "豫", "approved"),
            pet: ("豫", "豫0102", "replied"),
        }
        for item, (a, b, want) in expected.items():
            until(
                tree,
                f"{item[:8]} {want} at {a} and {b}",
                lambda a=a, b=b, item=item, want=want: state(tree, a, item) == want and state(tree, b, item) == want,
            )
            for court in (a, b):
                data = show(tree, court, item)
                assert data is not None
                actions = [(e["action"], e["envelope_id"]) for e in data["events"]]
                assert len(actions) == len(set(actions)), f"{court} recorded a transition twice: {actions}"
            ends = [[e["envelope_id"] for e in show(tree, c, item)["events"]] for c in (a, b)]  # type: ignore[index]
            assert ends[0] == ends[1], f"{item}: the two ends saw different transitions"
