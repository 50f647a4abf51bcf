"""督办 supervision across a real two-level federation, with time moved by the test (no sleeping).

Rules (DESIGN.md §3): the reply deadline defaults to 10 days; overdue → reminder (催报) with 5 more
days; still overdue → escalation recorded as a decision (调卷 by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from inproc import InProcTree, inproc_tree

from hub.codes import CourtCode
from hub.errors import AuthorityError
from hub.localtree import NodeSpec

DAY = 86_400_000
SPECS = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
]
CASE = "（2024）豫1402执123号"


async def _state(tree: InProcTree, court: str, item: str) -> str:
    rows = [r for r in await tree[court].workflows.items("supervision") if r["item_id"] == item]
    return str(rows[0]["state"]) if rows else ""


async def _both(tree: InProcTree, item: str, state: str) -> None:
    async def same() -> bool:
        return await _state(tree, "豫", item) == state and await _state(tree, "豫1402", item) == state

    await tree.settle(same)


async def test_reply_within_deadline_then_close(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        item = await tree["豫"].workflows.create(
            "supervision",
            [CourtCode.parse("豫1402")],
            "关于（2024）豫1402执123号案件的督办函",
            {"text": "请说明进展"},
            case_number=CASE,
        )
        await _both(tree, item, "issued")
        row: dict[str, Any] = (await tree["豫1402"].workflows.items("supervision"))[0]
        assert row["deadline_ms"] == tree.clock.now_ms() + 10 * DAY  # rule: reply within 10 days by default
        await tree["豫1402"].workflows.act(
            item, CourtCode.parse("豫1402"), "reply", {"text": "已冻结存款，正在评估拍卖"}
        )
        await _both(tree, item, "replied")
        await tree["豫"].workflows.act(item, CourtCode.parse("豫1402"), "close")
        await _both(tree, item, "closed")
        history = await tree["豫"].workflows.history(item)
        assert [e["action"] for e in history["events"]] == ["create", "reply", "close"]


async def test_overdue_reminder_then_escalation(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        item = await tree["豫14"].workflows.create(
            "supervision", [CourtCode.parse("豫1402")], "督办函", {"reply_days": 10}, case_number=CASE
        )
        await _both_at(tree, "豫14", item, "issued")
        tree.clock.advance(days=9)
        assert await tree["豫14"].workflows.tick() == []  # not yet overdue
        tree.clock.advance(days=1, ms=1)
        taken = await tree["豫14"].workflows.tick()
        assert [t["action"] for t in taken] == ["remind"]  # rule: overdue → 催报
        await _both_at(tree, "豫14", item, "reminded")
        tree.clock.advance(days=5, ms=1)  # rule: the reminder gives 5 more days
        taken = await tree["豫14"].workflows.tick()
        assert [t["action"] for t in taken] == ["escalate"]  # rule: still overdue → escalation
        await _both_at(tree, "豫14", item, "escalated")
        history = await tree["豫1402"].workflows.history(item)
        assert history["items"][0]["data"]["escalation"] == "调卷"


async def _both_at(tree: InProcTree, issuer: str, item: str, state: str) -> None:
    async def same() -> bool:
        a = [r for r in await tree[issuer].workflows.items("supervision") if r["item_id"] == item]
        b = [r for r in await tree["豫1402"].workflows.items("supervision") if r["item_id"] == item]
        return bool(a and b and a[0]["state"] == b[0]["state"] == state)

    await tree.settle(same)


async def test_lower_court_cannot_supervise_upward(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        with pytest.raises(AuthorityError) as err:
            await tree["豫1402"].workflows.create("supervision", [CourtCode.parse("豫14")], "越级督办", {})
        assert err.value.reason == "wrong_direction"


async def test_party_cannot_take_the_issuers_step(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        item = await tree["豫14"].workflows.create("supervision", [CourtCode.parse("豫1402")], "督办函", {})
        await _both_at(tree, "豫14", item, "issued")
        with pytest.raises(AuthorityError):
            await tree["豫1402"].workflows.act(item, CourtCode.parse("豫1402"), "close")
