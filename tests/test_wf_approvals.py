"""远程电子签章 sealed approvals across a real in-process federation.

A basic court asks for border exit control (边控, decided by the high court) and telecom location
(定位, decided by the intermediate court); the decision comes back sealed by the deciding court's
key, verifies against the tree's certificates, and is accepted by the public-security simulator (a
real process) that trusts the approving court's key. A court below the configured level cannot
decide: refused with a clear error and an audit entry at the refusing court — both when it tries
and when a decision it sealed anyway reaches the requester.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from inproc import InProcTree, inproc_tree
from sqlalchemy import select

from hub.codes import CourtCode, CourtLevel
from hub.errors import AuthorityError, ConfigError, TrustError
from hub.federation.envelope import Target
from hub.keys import public_key_from_raw
from hub.localtree import NodeSpec
from hub.proto.courthub.v1 import workflow_pb2 as wpb
from hub.store.schema import audit, deliveries
from hub.workflows import approvals
from plugins.agency.approval import ApprovalError, write_trusted_approvers
from plugins.agency.approval import verify_approval as agency_verify
from plugins.agency.errors import AgencyRefused
from plugins.agency.model import Subject
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import subject_by_role
from plugins.agency.testing import court
from plugins.public_security.client import PublicSecurityClient

SPECS = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
]
CASE = "（2024）豫1402执123号"
SEED = 13
PERSON = subject_by_role(SEED, "rich")


def op(tree: InProcTree, court_code: str, name: str) -> Any:
    return tree[court_code].admin.operations[name]


async def state(tree: InProcTree, court_code: str, item: str) -> str:
    rows = [r for r in await tree[court_code].workflows.items("approval") if r["item_id"] == item]
    return str(rows[0]["state"]) if rows else ""


async def audits(tree: InProcTree, court_code: str, action: str) -> list[dict[str, Any]]:
    def read(conn: Any) -> list[dict[str, Any]]:
        rows = conn.execute(select(audit).where(audit.c.action == action)).all()
        return [{"envelope_id": r.envelope_id, **json.loads(r.detail)} for r in rows]

    result: list[dict[str, Any]] = await tree[court_code].store.read(read)
    return result


async def ask(tree: InProcTree, action: str, **extra: Any) -> dict[str, Any]:
    args = {"action": action, "case_number": CASE, "subject_id": PERSON.id_no, "reason": "被执行人拟出境逃避执行"}
    result: dict[str, Any] = await op(tree, "豫1402", "approval.request")({**args, **extra})
    target = str(result["to"])
    await tree.settle(lambda: _at(tree, target, str(result["item_id"])))
    return result


async def _at(tree: InProcTree, court_code: str, item: str) -> bool:
    return await state(tree, court_code, item) == "requested"


async def test_border_control_approved_by_the_high_court_and_accepted_by_the_agency(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path / "tree", SPECS) as tree:
        asked = await ask(tree, "border_control", subject_name=PERSON.name, term_days=180)
        assert asked["to"] == "豫" and asked["required_level"] == "high"  # travels up to the configured level
        decided = await op(tree, "豫", "approval.decide")({"item_id": asked["item_id"], "approve": True})
        assert decided["state"] == "approved"

        async def back() -> bool:
            return await state(tree, "豫1402", asked["item_id"]) == "approved"

        await tree.settle(back)
        token = await approvals.token_for(tree["豫1402"], asked["item_id"])
        # Verifiable by anyone holding the tree's certificates: chain, level, requester, case.
        decision = approvals.verify_decision(
            token,
            tree["豫1402"].trust,
            now_ms=tree.clock.now_ms(),
            action="border_control",
            subject_id=PERSON.id_no,
            case_number=CASE,
        )
        assert (str(decision.approver), str(decision.requester), decision.approved) == ("豫", "豫1402", True)
        shown = await op(tree, "豫1402", "approval.show")({"item_id": asked["item_id"]})
        assert shown["verified"]["decision_id"] == decision.decision_id == shown["item"]["data"]["decision_id"]
        # The agencies' own verifier accepts it with the approving court's key from the certificates.
        cert = tree["豫1402"].trust.certificate(CourtCode.parse("豫"))
        assert cert is not None
        high_key = public_key_from_raw(cert.public_raw)
        claims = agency_verify(
            token, "border_control", PERSON.id_no, trusted={"豫": [high_key]}, now_ms=tree.clock.now_ms()
        )
        assert (claims.iss, claims.sub, claims.jti) == ("豫", CASE, decision.decision_id)
        # …and so does a verifier backed by the tree's certificates instead of a key file.
        tree_verifier = approvals.TreeApprovalVerifier(tree["豫1402"].trust, tree.clock)
        assert tree_verifier.verify_approval(token, "border_control", PERSON.id_no) == claims
        # A denial is sealed too, but no agency takes it for an approval.
        denied_req = await ask(tree, "border_control")
        await op(tree, "豫", "approval.decide")(
            {"item_id": denied_req["item_id"], "approve": False, "reason": "理由不足"}
        )

        async def denied() -> bool:
            return await state(tree, "豫1402", denied_req["item_id"]) == "denied"

        await tree.settle(denied)
        denial = str((await op(tree, "豫1402", "approval.show")({"item_id": denied_req["item_id"]}))["token"])
        assert not approvals.verify_decision(denial, tree["豫1402"].trust).approved
        with pytest.raises(ApprovalError) as not_approved:
            tree_verifier.verify_approval(denial, "border_control", PERSON.id_no)
        assert not_approved.value.reason == "approval_denied"

        # The public-security simulator, a real process trusting 豫's key, applies the border control.
        trust_file = tmp_path / "approvers.json"
        write_trusted_approvers(trust_file, {"豫": high_key})
        with SimulatorProcess.start("public_security", seed=SEED, now=tree.clock.now_ms(), approvers=trust_file) as sim:
            async with PublicSecurityClient(sim.url, timeout_s=10) as client:
                here = court("豫1402", "商丘市梁园区人民法院", case_no=CASE)
                person = Subject(name=PERSON.name, id_no=PERSON.id_no)
                with pytest.raises(AgencyRefused) as refused:
                    await client.apply_border_control(here, person, approval=denial, term_days=180, request_id="d")
                assert refused.value.reason == "approval_malformed"
                done = await client.apply_border_control(here, person, approval=token, term_days=180, request_id="b")
                assert done.outcome == "applied" and done.control.approval_iss == "豫"


async def test_location_decided_by_the_intermediate_court(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        asked = await ask(tree, "location")
        assert asked["to"] == "豫14" and asked["required_level"] == "intermediate"
        await op(tree, "豫14", "approval.decide")({"item_id": asked["item_id"], "approve": True, "ttl_days": 3})

        async def back() -> bool:
            return await state(tree, "豫1402", asked["item_id"]) == "approved"

        await tree.settle(back)
        token = await approvals.token_for(tree["豫1402"], asked["item_id"])
        decision = approvals.verify_decision(token, tree["豫"].trust, action="location")
        assert str(decision.approver) == "豫14"
        assert decision.expires_at_s - decision.issued_at_s == 3 * 86_400
        listed = await op(tree, "豫14", "approval.list")({})
        assert [(r["role"], r["state"]) for r in listed] == [("approver", "approved")]


async def test_a_court_below_the_level_cannot_decide(tmp_path: Path) -> None:
    """Authority: 边控 is decided by the high court; the intermediate court that receives it is
    refused — when it tries (error + audit there) and when its sealed decision reaches the
    requester anyway (refusal + audit at the requester, negative receipt to the sender)."""
    async with inproc_tree(tmp_path, SPECS) as tree:
        asked = await ask(tree, "border_control", to="豫14")
        assert "cannot approve" in asked["warning"]
        with pytest.raises(AuthorityError) as err:
            await op(tree, "豫14", "approval.decide")({"item_id": asked["item_id"], "approve": True})
        assert err.value.reason == "wrong_level"
        assert "high" in err.value.message and "豫14" in err.value.message
        assert any(e["reason"] == "wrong_level" for e in await audits(tree, "豫14", "refused"))
        assert await state(tree, "豫14", asked["item_id"]) == "requested"
        # The requesting court checks too: a decision sealed by the wrong level is refused there.
        token = approvals.seal_decision(
            tree["豫14"],
            approved=True,
            requester=CourtCode.parse("豫1402"),
            action="border_control",
            case_number=CASE,
            subject_id=PERSON.id_no,
            item_id=asked["item_id"],
            ttl_days=7,
            now_ms=tree.clock.now_ms(),
        )
        with pytest.raises(AuthorityError):
            approvals.verify_decision(token, tree["豫1402"].trust)
        with pytest.raises(ApprovalError) as agency_side:  # an executing plugin refuses it too
            approvals.TreeApprovalVerifier(tree["豫"].trust, tree.clock).verify_approval(
                token, "border_control", PERSON.id_no
            )
        assert agency_side.value.reason == "approval_wrong_level"
        payload = wpb.WorkflowPayload(
            workflow="approval",
            item_id=asked["item_id"],
            action="approve",
            issuer="豫1402",
            party="豫14",
            data_json=json.dumps({"token": token}),
            deadline_ms=-1,
        )
        eid, _ = await tree["豫14"].exchange.originate(
            "workflow", Target.to_court(CourtCode.parse("豫1402")), payload, case_number=CASE
        )

        async def refused() -> bool:
            def read(conn: Any) -> str | None:
                value = conn.execute(select(deliveries.c.state).where(deliveries.c.envelope_id == eid)).scalar()
                return None if value is None else str(value)

            return await tree["豫14"].store.read(read) == "rejected"

        await tree.settle(refused)
        rejected = [e for e in await audits(tree, "豫1402", "rejected") if e["envelope_id"] == eid]
        assert rejected and rejected[0]["reason"] == "wrong_level"
        assert await state(tree, "豫1402", asked["item_id"]) == "requested"
        # The requester withdraws the misaddressed request and asks the right court.
        await op(tree, "豫1402", "approval.withdraw")({"item_id": asked["item_id"], "reason": "应报高院"})
        again = await ask(tree, "border_control")
        assert again["to"] == "豫"


async def test_only_the_addressed_court_decides(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        asked = await ask(tree, "location")
        with pytest.raises(AuthorityError) as err:  # the high court relays nothing here and holds no request
            await op(tree, "豫", "approval.decide")({"item_id": asked["item_id"], "approve": True})
        assert err.value.reason == "not_a_party"
        assert any(e["reason"] == "not_a_party" for e in await audits(tree, "豫", "refused"))
        with pytest.raises(AuthorityError):  # nor does the requester decide its own request
            await op(tree, "豫1402", "approval.decide")({"item_id": asked["item_id"], "approve": True})


def test_levels_are_configurable_per_node(tmp_path: Path) -> None:
    path = tmp_path / "approvals.toml"
    assert approvals.load_levels(path) == approvals.DEFAULT_LEVELS
    path.write_text('[levels]\nlocation = "high"\nsearch_warrant = "intermediate"\n', encoding="utf-8")
    levels = approvals.load_levels(path)
    assert levels["location"] is CourtLevel.HIGH and levels["border_control"] is CourtLevel.HIGH
    assert str(approvals.approver_for(CourtCode.parse("豫1402"), "location", levels)) == "豫"
    assert str(approvals.approver_for(CourtCode.parse("豫1402"), "search_warrant", levels)) == "豫14"
    # A court at the level itself asks its own superior: nobody approves its own request.
    assert str(approvals.approver_for(CourtCode.parse("豫14"), "location")) == "豫"
    path.write_text('[levels]\nlocation = "province"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        approvals.load_levels(path)
    assert "approvals.toml" in err.value.message and "province" in err.value.message


async def test_tampered_or_unknown_tokens_are_refused(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS[:2]) as tree:
        token = approvals.seal_decision(
            tree["豫"],
            approved=True,
            requester=CourtCode.parse("豫14"),
            action="border_control",
            case_number="（2024）豫14执1号",
            subject_id=PERSON.id_no,
            item_id="x",
            ttl_days=1,
            now_ms=tree.clock.now_ms(),
        )
        assert approvals.verify_decision(token, tree["豫14"].trust).approved
        head, body, sig = token.split(".")
        forged = f"{head}.{body}.{sig[:-4]}AAAA"
        with pytest.raises(TrustError):
            approvals.verify_decision(forged, tree["豫14"].trust)
        with pytest.raises(TrustError) as expired:
            approvals.verify_decision(token, tree["豫14"].trust, now_ms=tree.clock.now_ms() + 2 * 86_400_000)
        assert expired.value.reason == "approval_expired"
        with pytest.raises(TrustError) as mismatch:
            approvals.verify_decision(token, tree["豫14"].trust, subject_id="110101199001011234")
        assert mismatch.value.reason == "decision_mismatch"
