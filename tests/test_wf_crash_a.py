"""Command workflows across branches with real node processes, the relaying city SIGKILLed midway.

Tree: 豫 (province) → 豫14 (商丘) → 豫1402, and 豫 → 豫01 (郑州) → 豫0102. Urgent 执行要情 reports
go 豫1402 → 豫14 → 豫 (forwarded by rule at 豫14) while 豫14 is killed and restarted; the province's
instructions come back down through 豫14 while it is killed again; a directive to the whole
province is answered from both branches (with an attachment) across the same crash. At the end the
states agree at both ends of every item, and nothing is lost or applied twice.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hub.config import Home
from hub.localtree import LocalTree, NodeSpec

pytestmark = pytest.mark.slow

TREE = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫01", "郑州市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫0102", "郑州市中原区人民法院", "豫01"),
]
N = 12


def _query(tree: LocalTree, court: str, sql: str) -> list[tuple[Any, ...]]:
    db = Home(tree.homes[court]).database
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def _reports(tree: LocalTree, court: str) -> dict[str, dict[str, Any]]:
    return {r["report_id"]: r for r in tree.call(court, "report.list")}


def _states(tree: LocalTree, court: str) -> dict[tuple[str, str], str]:
    rows = _query(tree, court, "SELECT item_id, party, state FROM workflow_items")
    return {(str(i), str(p)): str(s) for i, p, s in rows}


def test_reports_and_directive_feedback_survive_sigkill_of_the_relaying_city(tmp_path: Path) -> None:
    with LocalTree(tmp_path, TREE) as tree:
        tree.start_all()
        tree.wait_until(lambda: len(tree.status("豫")["routes"]) >= 4, 30, "routes at the province")

        # 1. Reports up, forwarded by rule at the city, which is killed after the fourth one.
        sent = []
        for i in range(N):
            r = tree.call(
                "豫1402",
                "report.send",
                {"title": f"第{i}号要情", "text": "现场情况", "category": "violence", "urgency": "urgent"},
            )
            sent.append(r["id"])
            if i == 3:
                tree.kill("豫14")
        directive = tree.call(
            "豫", "directive.issue", {"to": "豫", "subtree": True, "title": "全省集中执行行动", "body": "请反馈"}
        )
        tree.start("豫14")
        tree.wait_until(lambda: set(sent) <= set(_reports(tree, "豫")), 60, "every report at the province")

        # 2. Instructions down while the city is killed again; feedback up from both branches.
        tree.wait_until(
            lambda: (
                {"豫1402", "豫0102"}
                <= {
                    r["court"]
                    for r in tree.call("豫", "directive.show", {"id": directive["id"]})["recipients"]
                    if r["delivered"]
                }
            ),
            60,
            "directive delivered in both branches",
        )
        for i, rid in enumerate(sent):
            tree.call("豫", "report.instruct", {"id": rid, "text": f"第{i}号批示：依法处置"})
            if i == N // 2:
                tree.kill("豫14")
                attachment = {"name": "反馈.txt", "content_b64": base64.b64encode("已部署".encode()).decode()}
                tree.call(
                    "豫1402",
                    "directive.feedback",
                    {"id": directive["id"], "text": "梁园区已部署", "files": [attachment]},
                )
                tree.call("豫0102", "directive.feedback", {"id": directive["id"], "text": "中原区已部署"})
        tree.start("豫14")

        def instructed() -> bool:
            got = _reports(tree, "豫1402")
            return all(len(got[rid]["instructions"]) == 1 for rid in sent)

        tree.wait_until(instructed, 60, "every instruction back at the reporter")
        tree.wait_until(
            lambda: all(
                r["answered"]
                for r in tree.call("豫", "directive.show", {"id": directive["id"]})["recipients"]
                if r["court"] in ("豫1402", "豫0102")
            ),
            60,
            "feedback from both branches at the province",
        )
        table = {r["court"]: r for r in tree.call("豫", "directive.show", {"id": directive["id"]})["recipients"]}
        sent_file = table["豫1402"]["feedback"]["files"][0]
        assert sent_file["name"] == "反馈.txt"
        # The attachment crossed the crash intact: saved with the CLI at the province, by digest.
        saved = tmp_path / "saved.txt"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "hub",
                "directive",
                "attachment",
                sent_file["sha256"][:12],
                "--out",
                str(saved),
                "--home",
                str(tree.homes["豫"]),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert saved.read_text() == "已部署" and json.loads(done.stdout)["sha256"] == sent_file["sha256"]
        assert table["豫0102"]["feedback"]["text"] == "中原区已部署"

        # 3. Converged: every item has the same state at both of its ends …
        def converged() -> bool:
            states = {c: _states(tree, c) for c in tree.order}
            for court, rows in states.items():
                for (item, party), state in rows.items():
                    other = party if party != court else None
                    if other is None:  # this court is the party: find the issuer's row
                        issuers = [c for c in states if c != court and (item, party) in states[c]]
                        if not issuers or states[issuers[0]][(item, party)] != state:
                            return False
                    elif states[other].get((item, party)) != state:
                        return False
            return True

        tree.wait_until(converged, 60, "both ends of every item agree")
        # … and nothing was applied twice: one create and one instruction per hop.
        for court, hops in (("豫1402", N), ("豫14", 2 * N), ("豫", N)):
            events = Counter(
                (str(i), str(a))
                for i, a in _query(
                    tree,
                    court,
                    "SELECT e.item_id, e.action FROM workflow_events e JOIN workflow_items w "
                    "ON w.item_id = e.item_id AND w.party = e.party WHERE w.workflow = 'report'",
                )
            )
            creates = [k for k, n in events.items() if k[1] == "create"]
            assert len(creates) == hops, court
            assert all(n == 1 for n in events.values()), (court, [k for k, n in events.items() if n > 1])
            assert sum(1 for k in events if k[1] == "instruct") == hops, court
        assert all(len(r["hops"]) == 1 for r in _reports(tree, "豫").values())
        relayed = _query(tree, "豫14", "SELECT COUNT(*), COUNT(DISTINCT envelope_id) FROM inbox WHERE kind='workflow'")
        assert relayed[0][0] == relayed[0][1]
