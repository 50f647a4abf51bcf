"""Process-level: ``court-hub bench tree --json`` (short profile: a 1 + 2 + 4 real-process tree, a
few rounds; the figures are there and every round got a signed receipt from every court below the
root, and the raw gRPC baseline a receipt count from every process — no timing assertions), and the
``deadlines``/``stats``/``conclude`` commands against running nodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from hub.cli import app
from hub.localtree import LocalTree, NodeSpec

SPECS = [NodeSpec("豫14", "商丘市中级人民法院"), NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14")]
CASE = "（2024）豫1402执7号"


def test_bench_tree_short_profile() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hub", "bench", "tree", "--json", "--fanout", "2", "--rounds", "3", "--warmup", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["nodes"] == 7 and result["recipients"] == 6 and result["rounds"] == 3
    assert result["receipts_complete"] is True
    for key in ("tree_p50_ms", "tree_p99_ms", "raw_grpc_p50_ms", "raw_grpc_p99_ms", "ratio_p50", "ratio_p99"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["tree_p50_ms"] <= result["tree_p99_ms"] <= result["tree_max_ms"]
    assert result["target_p99_ms"] == 1000.0 and isinstance(result["p99_within_target"], bool)


def test_cli_deadlines_stats_conclude_on_real_processes(tmp_path: Path) -> None:
    """The commands against running nodes (``court-hub run`` processes, clock moved by the admin
    operation ``clock.advance``): a tracked case goes overdue, the city sees it in its subtree."""
    runner = CliRunner()

    def cli(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(app, list(args))
        assert (result.exit_code == 0) == ok, (result.output, result.exception)
        if not ok:  # a CourtHubError reaches the runner (``main`` turns it into one line on stderr)
            return f"{result.exception} {result.output}"
        return json.loads(result.stdout) if "--json" in args else result.output

    with LocalTree(tmp_path, SPECS, env={"COURTHUB_CLOCK_CONTROL": "1"}) as tree:
        tree.start_all()
        city, court = str(tree.homes["豫14"]), str(tree.homes["豫1402"])
        tracked = cli("deadlines", "track", CASE, "--home", court, "--amount", "50000", "--json")
        assert tracked["track"] == "简" and {n["node"] for n in tracked["nodes"]} >= {"assign", "notice", "conclude"}
        # Time passes for the whole federation (a node whose clock alone jumped 8 days ahead would
        # have its envelopes refused as from the future: stale_envelope).
        for node in ("豫14", "豫1402"):
            tree.call(node, "clock.advance", {"days": 8})
        checked = cli("deadlines", "check", "--home", court, "--json")
        assert {o["node"] for o in checked["overdue"]} == {"assign"}
        cli("stats", "--home", court, "--send", "--json")

        def reported() -> bool:
            shown = cli("stats", "--home", city, "--subtree", "--json")
            return bool(shown.get("children", {}).get("豫1402", {}).get("subtree", {}).get("case_nodes"))

        tree.wait_until(reported, 30, "豫1402's summary at 豫14")
        shown = cli("stats", "--home", city, "--subtree", "--json")
        assert shown["courts"] == 2 and shown["subtree"]["case_nodes"]["tracked"] == 1
        overdue = cli("deadlines", "overdue", "--home", city, "--subtree", "--json")
        assert [(o["court"], o["node"]) for o in overdue["overdue"]] == [("豫1402", "assign")]
        assert "1402" in cli("stats", "--home", city, "--subtree")  # the table form
        refused = cli("conclude", "submit", CASE, "--home", court, "--item", "notice_served", ok=False)
        assert "no case" in refused  # 终本 needs the case filed through the hub (its debtor, its inquiries)
        verified = cli("audit", "verify", "--home", city, "--json")  # opens the stored stats.summary envelopes
        assert verified["ok"] is True
