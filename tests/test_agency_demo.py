"""``court-hub demo --json`` end to end, run once for the module: the federation steps, the agency
scenario (simulators, 总对总 and 点对点 plugins attached live, 立案即查, a freeze, a waiting freeze
after a release) and one scenario of each command-center workflow across branches of the tree."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "hub", "demo", "--json", "--dir", str(tmp_path_factory.mktemp("demo") / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    return {s["step"]: s for s in summary["steps"]}


def test_demo_runs_the_agency_scenario(steps: dict[str, dict[str, Any]]) -> None:
    reachable = steps["agencies_attached"]["reachable_from_豫1402"]
    assert reachable == {
        "bank.inquiry": "豫14",
        "land.inquiry": "豫",
        "public_security.inquiry": "豫",
        "telecom.inquiry": "豫",
    }
    inquiries = {i["agency"]: i for i in steps["case_filed"]["inquiries"]}
    assert {a: (i["status"], i["served_by"]) for a, i in inquiries.items()} == {
        "bank": ("answered", "豫14"),
        "land": ("answered", "豫"),
        "public_security": ("answered", "豫"),
        "telecom": ("answered", "豫"),
    }
    freeze = steps["freeze"]["measure"]
    assert freeze["state"] == "active" and freeze["expires_at"]
    waiting = steps["waiting_freeze"]
    assert waiting["waiting"]["state"] == "waiting" and waiting["waiting"]["queue_position"] == 1
    assert waiting["release"]["outcome"] == "done"
    assert waiting["after_release"]["state"] == "active"


WORKFLOW_STEPS = (
    "duty",
    "directive_feedback",
    "supervision",
    "important_report",
    "entrusted_freeze",
    "sealed_approval",
    "request_and_petition",
    "deadlines_and_conclude",
    "statistics",
)


def test_every_workflow_scenario_succeeded(steps: dict[str, dict[str, Any]]) -> None:
    assert {name: steps[name]["ok"] for name in WORKFLOW_STEPS} == dict.fromkeys(WORKFLOW_STEPS, True)


def test_duty_officer_signs_in_and_answers_the_urgent_directive(steps: dict[str, dict[str, Any]]) -> None:
    duty = steps["duty"]
    assert (duty["court"], duty["signed_in"]) == ("豫1402", True)
    directive = steps["directive_feedback"]
    assert directive["level"] == "urgent"
    table = {r["court"]: r for r in directive["recipients"]}
    assert {c: r["state"] for c, r in table.items()} == {"豫14": "delivered", "豫1402": "answered", "豫1403": "read"}
    answered = table["豫1402"]
    assert answered["read_by"] == duty["officer"]  # the urgent directive went to the duty officer
    assert answered["on_time"] is True and answered["files"] == ["兑付情况.txt"]
    assert directive["summary"]["delivered"] == 3 and directive["summary"]["answered"] == 1


def test_supervision_report_and_requests_cross_levels(steps: dict[str, dict[str, Any]]) -> None:
    assert steps["supervision"]["states"] == {"豫14": "closed", "豫1403": "closed"}
    report = steps["important_report"]
    assert report["route"] == ["豫1402", "豫14", "豫"]  # forwarded up by rule (urgent)
    assert [i["by"] for i in report["instructions_at_reporter"]] == ["豫"]
    both = steps["request_and_petition"]
    assert both["request"]["to"] == "豫14"
    assert both["request"]["states"] == {"豫1403": "answered", "豫14": "answered"}
    assert both["petition"]["states"] == {"豫": "closed", "豫0102": "closed"}


def test_cross_city_entrusted_freeze_completes_at_both_ends(steps: dict[str, dict[str, Any]]) -> None:
    entrust = steps["entrusted_freeze"]
    assert (entrust["entrusting"], entrust["entrusted"], entrust["via"]) == ("豫1402", "豫0102", "豫")
    assert entrust["states"] == {"豫1402": "completed", "豫0102": "completed"}
    assert entrust["plugin"] == "bank"  # executed through 豫0102's own bank connection
    assert entrust["agency_result"]["status"] == "done" and entrust["agency_result"]["measure_id"]
    assert entrust["events"][0] == "create" and entrust["events"][-1] == "complete"


def test_sealed_approval_is_decided_by_the_province_and_verifies(steps: dict[str, dict[str, Any]]) -> None:
    approval = steps["sealed_approval"]
    assert (approval["requester"], approval["approver"], approval["state"]) == ("豫1402", "豫", "approved")
    assert approval["verified"] is True and approval["agency_verified"] is True


def test_conclude_is_refused_naming_the_missing_items(steps: dict[str, dict[str, Any]]) -> None:
    gate = steps["deadlines_and_conclude"]
    assert gate["refusal"]["reason"] == "checklist_incomplete"
    missing = {m["item"] for m in gate["missing"]}
    assert missing == {"investigation_exhausted", "assets_not_disposable", "three_months"}
    assert all(m["item"] in gate["refusal"]["message"] for m in gate["missing"])
    nodes = {n["node"]: n["state"] for n in gate["nodes"]}
    assert nodes["notice"] == "done" and nodes["investigate"] == "done"


def test_statistics_at_the_province_add_up_from_signed_summaries(steps: dict[str, dict[str, Any]]) -> None:
    stats = steps["statistics"]
    assert stats["consistent"] is True
    assert set(stats["children"]) == {"豫14", "豫01"}
    assert {c: k["courts"] for c, k in stats["children"].items()} == {"豫14": 3, "豫01": 2}
    figures = stats["figures"]
    assert figures["courts"] == 6
    assert figures["entrust_completed_issued"] == figures["entrust_completed_received"] == 1
    inquiries = len(steps["case_filed"]["inquiries"])
    assert figures["inquiries_sent"] >= inquiries and figures["inquiries_answered"] >= inquiries
    # The province's own directives (two broadcasts) plus the city's one.
    assert stats["own"]["directives_sent"] == 2 and figures["directives_sent"] == 3
