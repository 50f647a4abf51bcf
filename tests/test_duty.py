"""值班 duty roster and sign-in: rules in process with a test clock; the CLI against a real node.

The current duty officer is today's signed-in officer (a stand-in possibly), else today's rostered
one (not yet signed in), else nobody; days are Beijing calendar days. ``court-hub status`` shows
them; urgent directives are assigned to them (tests/test_wf_directives.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from inproc import inproc_tree

from hub.errors import InvalidInput
from hub.localtree import LocalTree, NodeSpec
from hub.workflows import duty

COURT = [NodeSpec("豫1402", "商丘市梁园区人民法院")]
# 2024-06-03 23:30 in Beijing = 15:30 UTC: the court's day changes half an hour later.
LATE_EVENING_MS = int(datetime(2024, 6, 3, 15, 30, tzinfo=UTC).timestamp() * 1000)


async def test_roster_signin_stand_in_and_the_court_day(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, COURT, start_ms=LATE_EVENING_MS) as tree:
        node = tree["豫1402"]
        assert duty.court_date(tree.clock.now_ms()) == "2024-06-03"
        assert await duty.current_duty(node) is None
        assert (await node.status())["duty"] is None
        await duty.set_duty(node, "2024-06-03", "王值班", "13800000001")
        await duty.set_duty(node, "2024-06-04", "李值班", "13800000002", days=2)
        now = await duty.current_duty(node)
        assert now is not None and now["officer"] == "王值班" and not now["signed_in"]
        signed = await duty.sign_in(node, "王值班")
        assert signed["signed_in"] and signed["phone"] == "13800000001" and not signed["stand_in"]
        tree.clock.advance(seconds=30 * 60)  # midnight in Beijing: the next court day
        nxt = await duty.current_duty(node)
        assert nxt is not None and nxt["officer"] == "李值班" and not nxt["signed_in"]
        stand_in = await duty.sign_in(node, "赵替班", "13800000003")
        assert stand_in["stand_in"] and stand_in["rostered"] == "李值班"
        status = await node.status()
        assert status["duty"]["officer"] == "赵替班" and status["duty"]["date"] == "2024-06-04"
        shown = await duty.show(node)
        assert [r["date"] for r in shown["roster"]] == ["2024-06-04", "2024-06-05"]
        assert [s["officer"] for s in shown["signins"]] == ["赵替班", "王值班"]  # from the audit log, newest first
        tree.clock.advance(days=2)
        assert await duty.current_duty(node) is None  # nobody rostered on 2024-06-06


async def test_roster_input_is_checked(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, COURT, start_ms=LATE_EVENING_MS) as tree:
        node = tree["豫1402"]
        with pytest.raises(InvalidInput, match="has passed"):
            await duty.set_duty(node, "2024-06-02", "王值班")
        with pytest.raises(InvalidInput, match="YYYY-MM-DD"):
            await duty.set_duty(node, "6/3/2024", "王值班")
        with pytest.raises(InvalidInput, match="phone"):
            await duty.set_duty(node, "2024-06-03", "王值班", "call me")
        with pytest.raises(InvalidInput, match="name"):
            await duty.sign_in(node, "  ")
        with pytest.raises(InvalidInput, match="days"):
            await duty.set_duty(node, "2024-06-03", "王值班", days=40)


def _cli(home: Path, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args, "--home", str(home), "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_duty_cli_and_status_on_a_running_node(tmp_path: Path) -> None:
    with LocalTree(tmp_path, COURT) as tree:
        tree.start_all()
        home = tree.homes["豫1402"]
        today = duty.court_date(int(datetime.now(UTC).timestamp() * 1000))
        rostered = _cli(home, "duty", "set", "--officer", "王值班", "--phone", "13800000001", "--days", "2")
        assert rostered["dates"][0] == today and len(rostered["dates"]) == 2
        signed = _cli(home, "duty", "signin", "--officer", "王值班")
        assert signed["signed_in"] and signed["officer"] == "王值班"
        assert _cli(home, "status")["duty"]["officer"] == "王值班"
        shown = _cli(home, "duty", "show")
        assert shown["current"]["officer"] == "王值班" and len(shown["roster"]) == 2
        bad = subprocess.run(
            [
                sys.executable,
                "-m",
                "hub",
                "duty",
                "set",
                "--officer",
                "王值班",
                "--date",
                "2000-01-01",
                "--home",
                str(home),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert bad.returncode == 1 and "has passed" in bad.stderr and "Traceback" not in bad.stderr
