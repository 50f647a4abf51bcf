"""Case-node deadlines (流程节点期限) and triage (繁简分流) on a real in-process federation.

One tree for the module (豫 → 豫14 → 豫1402, 豫1403) with a clock only the tests move; each test
tracks its own cases and names the rule it checks (DESIGN.md §3): assign within 7 days, enforcement
notice within 10 days, property clues verified within 7 days of each clue, investigation started
within 10 days (done when 立案即查 starts), concluded within 6 months; an overdue node flagged for
supervision raises 督办 at the parent automatically; overdue lists per court and per subtree (from
signed summaries two levels up); triage rules are configuration.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from inproc import InProcTree, inproc_tree
from sqlalchemy import select

from hub.config import Home
from hub.errors import ConfigError, InvalidInput
from hub.localtree import NodeSpec
from hub.store.schema import audit
from hub.workflows import deadlines
from hub.workflows.deadlines import DAY_MS, add_months, parse_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPECS = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),
]
QUIET = {"check_interval_s": 3600, "stats": {"interval_s": 3600, "propagate_delay_s": 0.05}}
_serial = itertools.count(100)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def tree(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcTree]:
    async with inproc_tree(tmp_path_factory.mktemp("deadlines"), SPECS) as t:
        yield t


@pytest.fixture(autouse=True)
def quiet(tree: InProcTree) -> None:
    """Background checks effectively off (the tests tick), settings back to the defaults."""
    for node in tree.nodes.values():
        deadlines.of(node).configure(QUIET)


def op(tree: InProcTree, court: str, name: str) -> Any:
    return tree[court].admin.operations[name]


async def track(tree: InProcTree, court: str = "豫1402", **extra: Any) -> str:
    number = f"（2024）{court}执{next(_serial)}号"
    await op(tree, court, "deadlines.track")({"number": number, **extra})
    return number


async def overdue(tree: InProcTree, court: str, number: str) -> set[str]:
    found = await op(tree, court, "deadlines.overdue")({})
    return {o["node"] for o in found["overdue"] if o["case_number"] == number}


async def node_state(tree: InProcTree, court: str, number: str, node: str) -> str:
    shown = await op(tree, court, "deadlines.show")({"number": number})
    return str([n for n in shown["nodes"] if n["node"] == node][-1]["state"])


async def expect_deadline(tree: InProcTree, node: str, days: int) -> None:
    number = await track(tree)
    tree.clock.advance(days=days)
    await op(tree, "豫1402", "deadlines.tick")({})
    assert node not in await overdue(tree, "豫1402", number)  # the last day is still in time
    tree.clock.advance(ms=1)
    ticked = await op(tree, "豫1402", "deadlines.tick")({})
    assert node in await overdue(tree, "豫1402", number)
    assert (number, node) in {(o["case_number"], o["node"]) for o in ticked["overdue"]}
    entries = await tree["豫1402"].store.read(
        lambda c: c.execute(select(audit.c.detail).where(audit.c.action == "case_node_overdue")).scalars().all()
    )
    assert any(number in e and f'"node": "{node}"' in e for e in entries)


async def test_rule_assign_within_7_days_of_filing(tree: InProcTree) -> None:
    await expect_deadline(tree, "assign", 7)


async def test_rule_enforcement_notice_within_10_days(tree: InProcTree) -> None:
    await expect_deadline(tree, "notice", 10)
    number = await track(tree)
    tree.clock.advance(days=9)
    done = await op(tree, "豫1402", "deadlines.done")({"number": number, "node": "notice"})
    assert done["on_time"] is True
    tree.clock.advance(days=2)
    assert "notice" not in await overdue(tree, "豫1402", number)
    assert await node_state(tree, "豫1402", number, "notice") == "done"


async def test_rule_investigation_started_within_10_days(tree: InProcTree) -> None:
    await expect_deadline(tree, "investigate", 10)


async def test_rule_investigation_is_started_by_the_filing_inquiry(tree: InProcTree) -> None:
    """A case filed through the hub starts 立案即查 at once: the node completes by itself."""
    number = f"（2024）豫1402执{next(_serial)}号"
    await tree["豫1402"].agency.file_case({"number": number, "party": "张三", "id_number": "411402198001011234"})
    await tree.settle(lambda: _started(tree, number))
    await op(tree, "豫1402", "deadlines.tick")({})  # picks the filed case up (if the loop has not yet)
    await op(tree, "豫1402", "deadlines.tick")({})
    assert await node_state(tree, "豫1402", number, "investigate") == "done"
    assert await node_state(tree, "豫1402", number, "assign") == "open"


async def _started(tree: InProcTree, number: str) -> bool:
    shown = await tree["豫1402"].agency.show_case({"number": number})
    return shown["case"]["inquiries_started_at_ms"] is not None


async def test_rule_property_clues_verified_within_7_days_of_each_clue(tree: InProcTree) -> None:
    number = await track(tree)
    assert await overdue(tree, "豫1402", number) == set()
    with pytest.raises(InvalidInput):
        await op(tree, "豫1402", "deadlines.start")({"number": number, "node": "assign"})  # filing-anchored
    tree.clock.advance(days=3)
    first = await op(tree, "豫1402", "deadlines.start")({"number": number, "node": "clues"})
    assert first["seq"] == 1
    tree.clock.advance(days=6)
    on_time = await op(tree, "豫1402", "deadlines.done")({"number": number, "node": "clues"})
    assert on_time["on_time"] is True
    second = await op(tree, "豫1402", "deadlines.start")({"number": number, "node": "clues"})
    assert second["seq"] == 2
    tree.clock.advance(days=7, ms=1)
    await op(tree, "豫1402", "deadlines.tick")({})
    assert "clues" in await overdue(tree, "豫1402", number)
    late = await op(tree, "豫1402", "deadlines.done")({"number": number, "node": "clues"})
    assert late["on_time"] is False and late["seq"] == 2
    assert await node_state(tree, "豫1402", number, "clues") == "done_late"


async def test_rule_concluded_within_6_months(tree: InProcTree) -> None:
    number = await track(tree)
    filed = tree.clock.now_ms()
    shown = await op(tree, "豫1402", "deadlines.show")({"number": number})
    conclude = next(n for n in shown["nodes"] if n["node"] == "conclude")
    assert conclude["due_at_ms"] == add_months(filed, 6)  # calendar months, China Standard Time
    tree.clock.advance(ms=add_months(filed, 6) - filed)
    await op(tree, "豫1402", "deadlines.tick")({})
    assert "conclude" not in await overdue(tree, "豫1402", number)
    tree.clock.advance(ms=1)
    await op(tree, "豫1402", "deadlines.tick")({})
    assert "conclude" in await overdue(tree, "豫1402", number)


async def test_calendar_months() -> None:
    jan31 = 1_769_788_800_000  # 2026-01-31 00:00 +08:00
    assert add_months(jan31, 1) == jan31 + 28 * DAY_MS  # 2026-02-28
    assert add_months(jan31, 6) == jan31 + 181 * DAY_MS  # 2026-07-31


async def test_rule_overdue_node_raises_supervision_at_the_parent(tree: InProcTree) -> None:
    deadlines.of(tree["豫1402"]).configure({**QUIET, "nodes": {"assign": {"supervise": True}}})
    flagged = await track(tree, "豫1402")
    unflagged = await track(tree, "豫1403")
    tree.clock.advance(days=7, ms=1)
    await op(tree, "豫1402", "deadlines.tick")({})
    await op(tree, "豫1403", "deadlines.tick")({})

    async def raised(court: str, number: str) -> list[dict[str, Any]]:
        return [r for r in await tree[court].workflows.items("supervision") if r["case_number"] == number]

    async def both_sides() -> bool:
        return bool(await raised("豫14", flagged)) and bool(await raised("豫1402", flagged))

    await tree.settle(both_sides)
    item = (await raised("豫14", flagged))[0]
    assert item["party"] == "豫1402" and item["state"] == "issued" and "分案" in item["title"]
    assert item["deadline_ms"] == tree.clock.now_ms() + 10 * DAY_MS  # reply within supervise_reply_days
    rows = (await op(tree, "豫1402", "deadlines.overdue")({}))["overdue"]
    assert [r["supervision"] for r in rows if r["case_number"] == flagged and r["node"] == "assign"] == [
        item["item_id"]
    ]
    # Reported again in later summaries: still one supervision item per overdue node.
    await op(tree, "豫1402", "stats.send")({})
    await op(tree, "豫14", "deadlines.tick")({})
    assert len(await raised("豫14", flagged)) == 1
    assert await raised("豫14", unflagged) == []  # 豫1403's rule does not ask for supervision


async def test_overdue_lists_per_court_and_per_subtree(tree: InProcTree) -> None:
    a = await track(tree, "豫1402")
    b = await track(tree, "豫1403")
    tree.clock.advance(days=10, ms=1)
    for court in ("豫1402", "豫1403"):
        await op(tree, court, "deadlines.tick")({})
        await op(tree, court, "stats.send")({})
    assert await overdue(tree, "豫14", a) == set()  # not 豫14's own cases

    async def at_root() -> bool:
        found = await op(tree, "豫", "deadlines.overdue")({"subtree": True})
        seen = {(o["court"], o["case_number"], o["node"]) for o in found["overdue"]}
        return {("豫1402", a, "notice"), ("豫1403", b, "notice")} <= seen

    await tree.settle(at_root)  # two levels up, from 豫14's signed summary
    own = await op(tree, "豫1402", "deadlines.overdue")({})
    assert {o["court"] for o in own["overdue"]} == {"豫1402"}
    mid = await op(tree, "豫14", "deadlines.overdue")({"subtree": True})
    assert {"豫1402", "豫1403"} <= {o["court"] for o in mid["overdue"]}
    assert set(mid["reported"]) == {"豫1402", "豫1403"}


async def test_triage_rules_are_configuration(tree: InProcTree) -> None:
    small = await track(tree, amount_fen=5_000_000, parties=2)
    large = await track(tree, amount_fen=500_000_000, parties=2)
    shown = [await op(tree, "豫1402", "deadlines.show")({"number": n}) for n in (small, large)]
    assert [s["track"] for s in shown] == ["简", "繁"]  # the example defaults
    assert shown[0]["triage_rule"].startswith("小额案件")
    deadlines.of(tree["豫1402"]).configure(
        {
            **QUIET,
            "triage": {
                "default": "简",
                "rules": [
                    {"name": "多方当事人", "track": "繁", "min_parties": 5},
                    {"name": "大额", "track": "繁", "min_amount_fen": 100_000_000},
                ],
            },
        }
    )
    many = await track(tree, amount_fen=1_000, parties=6)
    again = await op(tree, "豫1402", "deadlines.track")({"number": large, "amount_fen": 50_000_000, "parties": 2})
    assert (await op(tree, "豫1402", "deadlines.show")({"number": many}))["triage_rule"] == "多方当事人"
    assert again["track"] == "简" and again["triage_rule"] == "default" and again["created"] is False
    assert await op(tree, "豫1402", "deadlines.triage")({"amount_fen": 200_000_000}) == {
        "track": "繁",
        "triage_rule": "大额",
    }


async def test_case_mgmt_section_in_config_toml(tmp_path: Path) -> None:
    home = Home(tmp_path)
    tmp_path.joinpath("config.toml").write_text(
        '[node]\ncourt = "豫1402"\nname = "梁园区法院"\nlisten = "127.0.0.1:1"\n\n'
        "[case_mgmt.nodes.assign]\ndays = 5\nsupervise = true\n\n"
        '[case_mgmt.nodes.auction]\nlabel = "启动网络拍卖"\nmonths = 1\nanchor = "event"\n\n'
        '[[case_mgmt.triage.rules]]\nname = "全部简案"\ntrack = "简"\n',
        encoding="utf-8",
    )
    settings = parse_settings(home.load().case_mgmt)
    assert settings.nodes["assign"].days == 5 and settings.nodes["assign"].supervise
    assert settings.nodes["assign"].label == "分案（确定承办人）"  # the rest of the default stays
    assert settings.nodes["auction"].due(0) == add_months(0, 1)
    assert settings.nodes["conclude"].months == 6
    assert settings.triage.classify(None, 9, False) == ("简", "全部简案")
    with pytest.raises(ConfigError, match=r"nodes\.assign\.days"):
        parse_settings({"nodes": {"assign": {"days": 0}}})
    with pytest.raises(ConfigError, match="exactly one of days or months"):
        parse_settings({"nodes": {"new": {"label": "x", "days": 1, "months": 1}}})
    with pytest.raises(ConfigError, match=r"triage\.rules\.0\.track"):
        parse_settings({"triage": {"rules": [{"name": "x", "track": "中"}]}})
