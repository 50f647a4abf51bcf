"""`court-hub supervise …` against running nodes, as a command-center operator uses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.localtree import LocalTree, NodeSpec

pytestmark = pytest.mark.slow

SPECS = [NodeSpec("豫14", "商丘市中级人民法院"), NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14")]
CASE = "（2024）豫1402执123号"


def cli(tree: LocalTree, court: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args, "--home", str(tree.homes[court])],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_supervise_send_reply_close_and_upward_refusal(tmp_path: Path) -> None:
    with LocalTree(tmp_path, SPECS) as tree:
        tree.start_all()
        sent = ok_json(
            cli(tree, "豫14", "supervise", "send", "--to", "豫1402", "--case", CASE, "--text", "请报告进展", "--json")
        )
        item = sent["item_id"]
        tree.wait_until(
            lambda: any(r["item_id"] == item for r in ok_json(cli(tree, "豫1402", "supervise", "list", "--json"))),
            30,
            "letter at 豫1402",
        )
        reply = ok_json(
            cli(tree, "豫1402", "supervise", "reply", item, "--party", "豫1402", "--text", "已冻结存款", "--json")
        )
        assert reply["state"] == "replied"
        tree.wait_until(
            lambda: ok_json(cli(tree, "豫14", "supervise", "list", "--json"))[0]["state"] == "replied",
            30,
            "reply at 豫14",
        )
        closed = ok_json(cli(tree, "豫14", "supervise", "close", item, "--party", "豫1402", "--json"))
        assert closed["state"] == "closed"
        history = ok_json(cli(tree, "豫14", "supervise", "show", item, "--json"))
        assert [e["action"] for e in history["events"]] == ["create", "reply", "close"]

        # A lower court cannot supervise upward: one line naming the rule, non-zero exit.
        refused = cli(tree, "豫1402", "supervise", "send", "--to", "豫14", "--case", CASE)
        assert refused.returncode != 0
        assert "[wrong_direction]" in refused.stderr and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
