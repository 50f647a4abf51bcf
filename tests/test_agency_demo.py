"""``court-hub demo --json`` end to end: the federation steps and the agency scenario (simulators,
总对总 and 点对点 plugins attached live, 立案即查, a freeze, a waiting freeze after a release)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_runs_the_agency_scenario(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hub", "demo", "--json", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    steps = {s["step"]: s for s in summary["steps"]}
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
