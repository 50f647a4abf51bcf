"""事项委托 entrusted matters across a real in-process federation, time moved by the test.

The tree has two cities under one province, so a basic court of one city entrusting a basic court
of the other goes up to the province (the common ancestor) and down again. Each time-limit test
names its rule (委托执行规定, DESIGN.md §3): register within 7 days; 30 days to supply material;
return approved by the high court, then 15 days to hand the papers back; unfinished after six
months → escalated to the common superior; a measure with under a month left is renewed before
handover.
"""

from __future__ import annotations

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
from hub.store.schema import audit, deliveries
from hub.workflows import entrust
from hub.workflows.engine import DAY_MS

SPECS = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫01", "郑州市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫0102", "郑州市中原区人民法院", "豫01"),
]
A, B = "豫1402", "豫0102"
CASE = "（2024）豫1402执123号"
SUBJECT = {"subject_name": "张三", "id_number": "411402198001011234"}


def op(tree: InProcTree, court: str, name: str) -> Any:
    return tree[court].admin.operations[name]


async def create(tree: InProcTree, **extra: Any) -> str:
    args = {"to": B, "item": "freeze", "case_number": CASE, "text": "请协助冻结被执行人在郑州的银行存款", **SUBJECT}
    shown = await op(tree, A, "entrust.create")({**args, **extra})
    return str(shown["item_id"])


async def row(tree: InProcTree, court: str, item: str) -> dict[str, Any]:
    rows = [r for r in await tree[court].workflows.items("entrust") if r["item_id"] == item]
    return rows[0] if rows else {}


async def both(tree: InProcTree, item: str, state: str) -> tuple[dict[str, Any], dict[str, Any]]:
    async def same() -> bool:
        a, b = await row(tree, A, item), await row(tree, B, item)
        return bool(a and b and a["state"] == b["state"] == state and a["deadline_ms"] == b["deadline_ms"])

    await tree.settle(same)
    return await row(tree, A, item), await row(tree, B, item)


async def step(tree: InProcTree, court: str, action: str, item: str, **args: Any) -> dict[str, Any]:
    result: dict[str, Any] = await op(tree, court, f"entrust.{action}")({"item_id": item, **args})
    return result


async def audits(tree: InProcTree, court: str, action: str) -> list[dict[str, Any]]:
    def read(conn: Any) -> list[dict[str, Any]]:
        rows = conn.execute(select(audit).where(audit.c.action == action).order_by(audit.c.seq)).all()
        return [{"envelope_id": r.envelope_id, "origin": r.origin, **json.loads(r.detail)} for r in rows]

    result: list[dict[str, Any]] = await tree[court].store.read(read)
    return result


async def test_cross_branch_freeze_registered_worked_and_completed(tmp_path: Path) -> None:
    """Rule: register within 7 days; the matter travels via the common ancestor 豫 and both ends
    see every transition, the result and its attachment."""
    async with inproc_tree(tmp_path, SPECS) as tree:
        t0 = tree.clock.now_ms()
        item = await create(tree)
        a, b = await both(tree, item, "submitted")
        assert a["deadline_ms"] == t0 + 7 * DAY_MS  # rule: register within 7 days
        relayed = await audits(tree, "豫", "relayed")
        assert any(r["origin"] == A for r in relayed)  # routed up to the common ancestor and down
        await step(tree, B, "register", item, handler="王法官", phone="0371-1234567")
        a, b = await both(tree, item, "registered")
        assert a["deadline_ms"] == entrust.add_months(t0, 6)  # the six-month limit takes over
        await step(tree, B, "progress", item, note="已向开户行送达协助冻结通知书")
        await both(tree, item, "in_progress")
        import base64

        receipt = "冻结回执：冻结存款人民币50,000.00元".encode()
        await step(
            tree,
            B,
            "complete",
            item,
            result="已冻结存款50,000元，期限一年",
            files=[{"name": "冻结回执.txt", "content_b64": base64.b64encode(receipt).decode()}],
        )
        a, b = await both(tree, item, "completed")
        assert a["deadline_ms"] is None and b["data"]["result"] == a["data"]["result"]
        shown_a = await op(tree, A, "entrust.show")({"item_id": item})
        shown_b = await op(tree, B, "entrust.show")({"item_id": item})
        assert shown_a["result"] == shown_b["result"] == "已冻结存款50,000元，期限一年"
        assert [e["action"] for e in shown_a["events"]] == ["create", "register", "progress", "complete"]
        assert [e["envelope_id"] for e in shown_a["events"]] == [e["envelope_id"] for e in shown_b["events"]]


async def test_register_within_7_days_rule(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        item = await create(tree)
        await both(tree, item, "submitted")
        tree.clock.advance(days=7, ms=-1)
        assert await op(tree, A, "entrust.tick")({}) == []  # within 7 days: in time
        tree.clock.advance(ms=1)
        taken = await op(tree, A, "entrust.tick")({})
        assert [t["action"] for t in taken] == ["remind_register"]  # rule: not registered in 7 days → 催办
        await both(tree, item, "register_overdue")
        await step(tree, B, "register", item)  # registering late is still possible
        await both(tree, item, "registered")


async def test_material_30_days_rule(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        item = await create(tree)
        await both(tree, item, "submitted")
        await step(tree, B, "register", item)
        await step(tree, B, "progress", item, note="已调查")
        await both(tree, item, "in_progress")
        await step(tree, B, "request_material", item, text="请补充生效法律文书副本")
        a, _ = await both(tree, item, "material_requested")
        assert a["deadline_ms"] == tree.clock.now_ms() + 30 * DAY_MS  # rule: 30 days to supply material
        with pytest.raises(AuthorityError):  # supplying is the entrusting court's step
            await step(tree, B, "supply", item, text="x")
        tree.clock.advance(days=10)
        await step(tree, A, "supply", item, text="已补充（2024）豫1402民初1号判决书")
        await both(tree, item, "in_progress")  # back where it was
        await step(tree, B, "request_material", item, text="请补充申请执行人联系方式")
        await both(tree, item, "material_requested")
        tree.clock.advance(days=30, ms=-1)
        assert await op(tree, B, "entrust.tick")({}) == []
        tree.clock.advance(ms=1)
        taken = await op(tree, B, "entrust.tick")({})
        assert [t["action"] for t in taken] == ["material_lapsed"]  # rule: not supplied in 30 days
        await both(tree, item, "material_lapsed")


async def test_return_needs_high_court_approval_then_15_days_rule(tmp_path: Path) -> None:
    """Rule (委托执行规定第十一条): the return is approved by the high court of the entrusted court's
    province; then the papers go back within 15 days, with a written explanation."""
    async with inproc_tree(tmp_path, SPECS) as tree:
        item = await create(tree)
        await both(tree, item, "submitted")
        await step(tree, B, "register", item)
        await both(tree, item, "registered")
        with pytest.raises(AuthorityError) as err:
            await step(tree, B, "return", item, reason="被执行人在本辖区无财产")
        assert err.value.reason == "approval_required" and "第十一条" in err.value.message
        assert any(e["reason"] == "approval_required" for e in await audits(tree, B, "refused"))
        # An intermediate court's approval is not enough.
        asked = await op(tree, B, "approval.request")(
            {"action": "entrust_return", "case_number": CASE, "subject_id": item, "reason": "无财产", "to": "豫01"}
        )
        assert asked["to"] == "豫01" and "warning" in asked
        # The high court's is.
        asked = await op(tree, B, "approval.request")(
            {"action": "entrust_return", "case_number": CASE, "subject_id": item, "reason": "被执行人在本辖区无财产"}
        )
        assert asked["to"] == "豫"
        await tree.settle(lambda: _has(tree, "豫", asked["item_id"]))
        await op(tree, "豫", "approval.decide")({"item_id": asked["item_id"], "approve": True, "reason": "同意退回"})
        await tree.settle(lambda: _approved(tree, B, asked["item_id"]))
        await step(tree, B, "return", item, reason="被执行人在本辖区无财产", approval_item=asked["item_id"])
        a, _ = await both(tree, item, "returning")
        assert a["deadline_ms"] == tree.clock.now_ms() + 15 * DAY_MS  # rule: hand the papers back in 15 days
        assert (await op(tree, A, "entrust.show")({"item_id": item}))["data"]["return_approved_by"] == "豫"
        tree.clock.advance(days=15, ms=1)
        taken = await op(tree, A, "entrust.tick")({})
        assert [t["action"] for t in taken] == ["remind_return"]  # overdue → 催退 from the entrusting court
        await both(tree, item, "return_overdue")
        await step(tree, B, "hand_back", item, text="已将委托函及案卷材料退回，说明：本辖区无可供执行财产")
        await both(tree, item, "returned")


async def _has(tree: InProcTree, court: str, item: str) -> bool:
    return any(r["item_id"] == item for r in await tree[court].workflows.items())


async def _approved(tree: InProcTree, court: str, item: str) -> bool:
    return any(r["item_id"] == item and r["state"] == "approved" for r in await tree[court].workflows.items())


async def test_six_months_escalates_to_the_common_superior(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        t0 = tree.clock.now_ms()
        item = await create(tree)
        await both(tree, item, "submitted")
        await step(tree, B, "register", item)
        await step(tree, B, "progress", item, note="正在办理")
        await both(tree, item, "in_progress")
        with pytest.raises(InvalidInput) as early:
            await step(tree, A, "escalate", item)
        assert early.value.reason == "too_early"
        limit = entrust.add_months(t0, 6)
        tree.clock.advance(ms=limit - 1 - tree.clock.now_ms())
        assert await op(tree, A, "entrust.tick")({}) == []  # within six months: not yet
        tree.clock.advance(ms=1)
        taken = await op(tree, A, "entrust.tick")({})
        assert [t["action"] for t in taken] == ["escalate"]  # rule: unfinished after 6 months → common superior
        a, b = await both(tree, item, "escalated")
        assert a["data"]["escalated_to"] == b["data"]["escalated_to"] == "豫"  # both ends see where it went
        link = entrust.linked_id(item, "escalation")

        async def at_superior() -> bool:
            rows = await tree["豫"].workflows.items("entrust_escalation")
            return any(r["item_id"] == link and r["state"] == "reported" for r in rows)

        await tree.settle(at_superior)
        await tree["豫"].workflows.act(link, CourtCode.parse("豫"), "decide", {"decision": "督办", "text": "限期办结"})
        supervision = entrust.linked_id(link, "supervision")

        async def supervised() -> bool:
            rows = await tree[B].workflows.items("supervision")
            decided = await tree[A].workflows.items("entrust_escalation")
            return any(r["item_id"] == supervision for r in rows) and any(
                r["item_id"] == link and r["state"] == "decided" for r in decided
            )

        await tree.settle(supervised)
        letter = (await tree[B].workflows.history(supervision))["items"][0]
        assert letter["issuer"] == "豫" and "督办" in letter["data"]["text"]
        # The entrusted court can still finish the matter.
        await step(tree, B, "complete", item, result="已办结")
        await both(tree, item, "completed")


async def test_renewal_before_handover_is_refused_naming_the_rule(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        now = tree.clock.now_ms()
        with pytest.raises(InvalidInput) as err:
            await create(tree, measure_expiry=now + 29 * DAY_MS)
        assert err.value.reason == "renew_before_handover"
        assert "第八条" in err.value.message and "续冻" in err.value.message  # rule: renew before handover
        assert await tree[A].workflows.items("entrust") == []  # nothing was sent
        assert any(e["reason"] == "renew_before_handover" for e in await audits(tree, A, "refused"))
        ok = await create(tree, measure_expiry=entrust.add_months(now, 1) + DAY_MS)
        await both(tree, ok, "submitted")


async def test_a_court_outside_the_matter_cannot_act_on_it(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        item = await create(tree)
        await both(tree, item, "submitted")
        # The relaying province holds no row: refused, with an audit entry there.
        with pytest.raises(AuthorityError) as err:
            await step(tree, "豫", "register", item)
        assert err.value.reason == "not_a_party"
        assert any(e["reason"] == "not_a_party" for e in await audits(tree, "豫", "refused"))
        # A court that forges the step anyway is refused by the entrusted court (audit + negative receipt).
        payload = wpb.WorkflowPayload(
            workflow="entrust", item_id=item, action="register", issuer=A, party=B, data_json="{}", deadline_ms=-1
        )
        eid, _ = await tree["豫14"].exchange.originate("workflow", Target.to_court(CourtCode.parse(B)), payload)

        async def refused() -> bool:
            def read(conn: Any) -> str | None:
                value = conn.execute(select(deliveries.c.state).where(deliveries.c.envelope_id == eid)).scalar()
                return None if value is None else str(value)

            return await tree["豫14"].store.read(read) == "rejected"

        await tree.settle(refused)
        rejected = [r for r in await audits(tree, B, "rejected") if r["envelope_id"] == eid]
        assert rejected and rejected[0]["reason"] == "not_authorized" and "not a party" in rejected[0]["message"]
        assert (await row(tree, B, item))["state"] == "submitted"
        # The entrusted court cannot take the entrusting court's steps either.
        with pytest.raises(AuthorityError):
            await step(tree, B, "withdraw", item, reason="x")


async def test_entrusted_freeze_done_by_the_entrusted_courts_bank_plugin(tmp_path: Path) -> None:
    """When the entrusted court holds the agency capability, the result comes from its plugin."""
    from plugins.agency.sim import SimulatorProcess
    from plugins.agency.subjects import subject_by_role

    rich = subject_by_role(7, "rich")
    account = rich.bank_accounts[0]
    with SimulatorProcess.start("bank", seed=7) as bank:
        async with inproc_tree(tmp_path, SPECS) as tree:
            settings = tree[B].config.agency
            settings.judge_name, settings.judge_phone = "王法官", "0371-6781234"
            settings.officer_ids = ["豫0102-0001", "豫0102-0002"]
            await tree[B].agency.load_plugins(config={"bank": {"url": bank.url}})
            item = await create(
                tree,
                subject_name=rich.name,
                id_number=rich.id_no,
                asset=account.asset_id,
                amount_fen=100_000,
                term_days=365,
            )
            await both(tree, item, "submitted")
            with pytest.raises(AuthorityError):  # only the entrusted court runs it through its plugins
                await op(tree, A, "entrust.execute")({"item_id": item})
            await step(tree, B, "register", item)
            shown = await op(tree, B, "entrust.execute")({"item_id": item[:8]})
            assert shown["data"]["capability"] == "bank.control" and shown["data"]["plugin"] == "bank"
            a, b = await both(tree, item, "completed")
            result = a["data"]["agency_result"]
            assert b["data"]["agency_result"] == result
            assert result["status"] == "done" and result["controlled_amount_fen"] == 100_000
            assert result["measure_id"] and a["data"]["result"].startswith("冻结结果")
            history = await tree[A].workflows.history(item)
            assert [e["action"] for e in history["events"]] == ["create", "register", "progress", "complete"]


def test_escalation_goes_to_the_common_superior_court() -> None:
    def target(a: str, b: str) -> tuple[str, str] | None:
        found = entrust.escalation_target(CourtCode.parse(a), CourtCode.parse(b))
        return None if found is None else (found[0], str(found[1]))

    assert target("豫1402", "豫0102") == ("entrust_escalation", "豫")  # two cities: the province
    assert target("豫1402", "豫1403") == ("entrust_escalation", "豫14")  # one city: the city
    assert target("桂0305", "豫0102") == ("entrust_escalation", "最高法")  # two provinces: the national root
    assert target("豫01", "豫0102") == ("supervision", "豫0102")  # the entrusting court is above: it supervises
    assert target("豫0102", "豫01") == ("entrust_escalation", "豫")  # the entrusted court is above: its superior


async def test_six_months_when_the_entrusting_court_is_above_becomes_its_supervision(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        t0 = tree.clock.now_ms()
        shown = await op(tree, "豫01", "entrust.create")(
            {"to": B, "item": "investigate", "case_number": "（2024）豫01执5号", "text": "调查被执行人经营场所"}
        )
        item = str(shown["item_id"])

        async def registered() -> bool:
            return (await row(tree, "豫01", item)).get("state") == "registered"

        await tree.settle(lambda: _has_entrust(tree, B, item))
        await step(tree, B, "register", item)
        await tree.settle(registered)
        tree.clock.advance(ms=entrust.add_months(t0, 6) - tree.clock.now_ms())
        assert [t["action"] for t in await op(tree, "豫01", "entrust.tick")({})] == ["escalate"]
        letter = entrust.linked_id(item, "escalation")

        async def supervised() -> bool:
            return any(r["item_id"] == letter for r in await tree[B].workflows.items("supervision"))

        await tree.settle(supervised)
        assert (await row(tree, B, item))["data"]["escalation_workflow"] == "supervision"


async def _has_entrust(tree: InProcTree, court: str, item: str) -> bool:
    return bool(await row(tree, court, item))
