"""Statistics aggregated upward from children's signed summaries (豫 → 豫14 → 豫1402, 豫1403).

The subtree figures at the province equal the sum of the four courts' own figures, through two
levels of signed summaries; a summary that is unsigned, altered after signing, another court's,
stale, or from a court that is not a child is refused (audit entry at the parent, signed negative
receipt to the sender) and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from inproc import InProcTree, inproc_tree
from sqlalchemy import select

from hub.codes import CourtCode
from hub.federation.envelope import Target, build
from hub.localtree import NodeSpec
from hub.seal import seal
from hub.store.schema import audit, deliveries
from hub.workflows import deadlines, stats
from hub.workflows.stats import KIND, canonical, merge, pack

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPECS = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),
]
QUIET = {"check_interval_s": 3600, "stats": {"interval_s": 3600, "propagate_delay_s": 0.05}}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def tree(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcTree]:
    async with inproc_tree(tmp_path_factory.mktemp("stats"), SPECS) as t:
        for node in t.nodes.values():
            deadlines.of(node).configure(QUIET)
        yield t


def op(tree: InProcTree, court: str, name: str) -> Any:
    return tree[court].admin.operations[name]


async def stored_seq(tree: InProcTree, at: str, court: str) -> int:
    rows = await op(tree, at, "stats.summaries")({})
    return max([int(r["seq"]) for r in rows if r["court"] == court], default=0)


async def test_stats_aggregate_up_two_levels_from_signed_summaries(tree: InProcTree) -> None:
    code = CourtCode.parse
    # Work at every level: supervision issued at two levels, a subtree directive, tracked cases.
    await tree["豫14"].workflows.create(
        "supervision", [code("豫1402")], "督办函", {}, case_number="（2024）豫1402执1号"
    )
    await tree["豫"].workflows.create("supervision", [code("豫1403")], "督办函", {}, case_number="（2024）豫1403执1号")
    await tree["豫"].directives.send(code("豫"), True, "关于开展集中执行行动的通知", "请各院按期反馈")
    for court, n in (("豫1402", 2), ("豫1403", 1), ("豫14", 1)):
        for i in range(n):
            await op(tree, court, "deadlines.track")({"number": f"（2024）{court}执{10 + i}号", "amount_fen": 10_000})

    async def settled() -> bool:
        got = [len(await tree[c].workflows.items("supervision")) for c in ("豫1402", "豫1403")]
        received = [await op(tree, c, "stats.show")({}) for c in ("豫14", "豫1402", "豫1403")]
        return got == [1, 1] and all(r["own"]["directives"]["received"] == 1 for r in received)

    await tree.settle(settled)
    tree.clock.advance(days=8)  # every case's 分案 node overdue
    for court in ("豫14", "豫1402", "豫1403"):
        await op(tree, court, "deadlines.tick")({})
    before = {c: await stored_seq(tree, "豫", c) for c in ("豫14",)}
    for court in ("豫1402", "豫1403"):
        await op(tree, court, "stats.send")({})

    async def propagated() -> bool:
        # 豫14 forwarded a summary built after both of its children's arrived.
        if await stored_seq(tree, "豫", "豫14") <= before["豫14"]:
            return False
        shown = await op(tree, "豫", "stats.show")({"subtree": True})
        mid = shown["children"].get("豫14", {})
        return bool(mid) and mid["courts"] == 3 and mid["subtree"]["case_nodes"]["tracked"] == 4

    await tree.settle(propagated)
    own = {c: (await op(tree, c, "stats.show")({}))["own"] for c in tree.nodes}
    top = await op(tree, "豫", "stats.show")({"subtree": True})
    expected: dict[str, Any] = {}
    for figures in own.values():
        merge(expected, json.loads(json.dumps(figures)))
    assert top["courts"] == 4
    assert top["subtree"] == expected  # two levels of signed summaries add up exactly
    sup = top["subtree"]["workflows"]["supervision"]
    assert sup["issued"] == {"issued": 2} and sup["received"] == {"issued": 2}
    assert top["subtree"]["directives"]["sent"] == 1 and top["subtree"]["directives"]["received"] == 3
    assert top["subtree"]["directives"]["recipients_delivered"] == 3  # signed receipts back at the issuer
    assert top["subtree"]["case_nodes"]["tracked"] == 4
    assert top["subtree"]["case_nodes"]["by_node"]["assign"]["overdue"] == 4
    assert top["own"]["case_nodes"]["tracked"] == 0
    # Per court: 豫14's line is its subtree; its own summary lists its children's digests.
    mid = top["children"]["豫14"]
    assert mid["subtree"]["case_nodes"]["tracked"] == 4 and mid["courts"] == 3
    middle = await op(tree, "豫14", "stats.show")({"subtree": True})
    assert set(middle["children"]) == {"豫1402", "豫1403"}
    assert middle["children"]["豫1402"]["subtree"] == own["豫1402"]
    assert [r["valid"] for r in await op(tree, "豫", "stats.summaries")({}) if r["court"] == "豫14"] == [True]
    assert middle["last_sent"]["delivery"] == "delivered"


async def refused(tree: InProcTree, sender: str, to: str, payload: Any, reason: str) -> None:
    """Send ``payload`` as a summary from ``sender``; it must be refused at ``to`` with ``reason``."""
    seq_before = await stored_seq(tree, to, sender)
    eid, _ = await tree[sender].exchange.originate(KIND, Target.to_court(CourtCode.parse(to)), payload)

    async def answered() -> bool:
        rows = await tree[sender].store.read(
            lambda c: c.execute(select(deliveries).where(deliveries.c.envelope_id == eid)).all()
        )
        return bool(rows) and rows[0].state != "pending"

    await tree.settle(answered)
    receipt = await tree[sender].store.read(
        lambda c: c.execute(select(deliveries).where(deliveries.c.envelope_id == eid)).one()
    )
    assert receipt.state == "rejected" and receipt.reason.startswith(reason), receipt.reason
    entries = await tree[to].store.read(
        lambda c: (
            c.execute(select(audit.c.detail).where(audit.c.action == "rejected", audit.c.envelope_id == eid))
            .scalars()
            .all()
        )
    )
    assert [json.loads(e)["reason"] for e in entries] == [reason]
    assert await stored_seq(tree, to, sender) == seq_before  # nothing kept


async def test_tampered_unsigned_foreign_or_stale_summaries_are_refused(tree: InProcTree) -> None:
    child = tree["豫1402"]
    sent = await op(tree, "豫1402", "stats.send")({})

    async def arrived() -> bool:
        return await stored_seq(tree, "豫14", "豫1402") == int(sent["seq"])

    await tree.settle(arrived)
    doc = await child.store.read(lambda c: stats.of(child).build(c, child.clock.now_ms()))
    body = canonical(doc)
    sealed = seal(child.key, "豫1402", body)

    await refused(tree, "豫1402", "豫14", pack(body, ""), "unsigned_summary")

    tampered = json.loads(body)
    tampered["own"]["case_nodes"]["tracked"] += 100
    tampered["subtree"]["case_nodes"]["tracked"] += 100
    await refused(tree, "豫1402", "豫14", pack(canonical(tampered), sealed), "bad_seal")

    sibling = tree["豫1403"]
    other = canonical(await sibling.store.read(lambda c: stats.of(sibling).build(c, sibling.clock.now_ms())))
    await refused(tree, "豫1402", "豫14", pack(other, seal(sibling.key, "豫1403", other)), "bad_seal")
    await refused(tree, "豫1402", "豫14", pack(other, seal(child.key, "豫1402", other)), "wrong_court")

    for broken in (
        {**doc, "seq": doc["seq"] + 1, "own": {**doc["own"], "measures": {"active": -1}}},
        {
            **doc,
            "seq": doc["seq"] + 1,
            "lists": {**doc["lists"], "overdue": {"items": [{"court": "豫1402"}], "total": 1}},
        },
    ):
        signed = canonical(broken)
        await refused(tree, "豫1402", "豫14", pack(signed, seal(child.key, "豫1402", signed)), "malformed_summary")

    stale = canonical({**doc, "seq": 1})
    await refused(tree, "豫1402", "豫14", pack(stale, seal(child.key, "豫1402", stale)), "stale_summary")

    # A grandchild's summary straight to the province: only a court's own children count.
    await refused(tree, "豫1402", "豫", pack(body, sealed), "not_a_child")

    # The same, properly signed and new, is accepted.
    accepted = await stored_seq(tree, "豫14", "豫1402")
    fresh = canonical({**doc, "seq": doc["seq"] + 5})
    await tree["豫1402"].exchange.originate(
        KIND, Target.to_court(CourtCode.parse("豫14")), pack(fresh, seal(child.key, "豫1402", fresh))
    )

    async def kept() -> bool:
        return await stored_seq(tree, "豫14", "豫1402") == int(doc["seq"]) + 5

    await tree.settle(kept)
    assert accepted < doc["seq"] + 5


async def test_summary_altered_in_transit_is_refused_by_the_link(tree: InProcTree) -> None:
    child, parent = tree["豫1402"], tree["豫14"]
    doc = await child.store.read(lambda c: stats.of(child).build(c, child.clock.now_ms()))
    body = canonical(doc)
    envelope = build(
        child.key,
        child.me,
        KIND,
        Target.to_court(parent.me),
        pack(body, seal(child.key, "豫1402", body)),
        now_ms=child.clock.now_ms(),
    )
    altered = envelope.payload.replace(b"tracked", b"tracker", 1)
    assert altered != envelope.payload
    envelope.payload = altered
    [checked] = parent.exchange.check([envelope], child.me, True)
    assert checked.error is not None and checked.error.reason == "bad_digest"
