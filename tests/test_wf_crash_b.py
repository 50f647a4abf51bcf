"""事项委托 across branches with real node processes, and a SIGKILL of the relaying province.

A basic court in one city (豫1402, 商丘) entrusts freezes to a basic court in another city
(豫0102, 郑州); every envelope goes 豫1402 → 豫14 → 豫 → 豫01 → 豫0102 and back. The province node
is killed (SIGKILL, no goodbye) while matters are being created, and again while they are being
registered and completed; it restarts from its store. States converge at both ends, and every
matter has each transition exactly once, with the same envelope at both ends.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
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
A, B = "豫1402", "豫0102"
N = 12


def query(tree: LocalTree, court: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    db = Home(tree.homes[court]).database
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, params).fetchall()


def states(tree: LocalTree, court: str) -> dict[str, str]:
    rows = query(tree, court, "SELECT item_id, state FROM workflow_items WHERE workflow = 'entrust'")
    return {str(i): str(s) for i, s in rows}


def events(tree: LocalTree, court: str) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    rows = query(tree, court, "SELECT item_id, action, envelope_id FROM workflow_events ORDER BY id")
    for item, action, eid in rows:
        out.setdefault(str(item), []).append((str(action), str(eid)))
    return out


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[LocalTree]:
    with LocalTree(tmp_path, TREE) as t:
        t.start_all()
        yield t


def cli(tree: LocalTree, court: str, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args, "--home", str(tree.homes[court]), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_cross_branch_entrusted_freezes_survive_sigkill_of_the_province(tree: LocalTree) -> None:
    case = "（2024）豫1402执88号"
    made = cli(
        tree, A, "entrust", "create", "--to", B, "--item", "freeze", "--case", case,
        "--subject-name", "李四", "--id-number", "41140219800101123X", "--amount", "50000",
        "--text", "请协助冻结被执行人在郑州的银行存款",
    )  # fmt: skip
    ids = [str(made["item_id"])]
    for i in range(1, N):
        if i == 4:
            tree.kill("豫")  # the relay between the two cities dies with matters in flight
        shown = tree.call(
            A,
            "entrust.create",
            {"to": B, "item": "freeze", "case_number": case, "subject_name": "李四", "id_number": "41140219800101123X"},
        )
        ids.append(str(shown["item_id"]))
    assert set(states(tree, A).values()) == {"submitted"}
    tree.start("豫")
    tree.wait_until(lambda: len(states(tree, B)) == N, 60, f"{N} matters at {B}")
    assert states(tree, B) == dict.fromkeys(ids, "submitted")

    # The entrusted court registers and completes them; the province dies again in the middle.
    for i, item in enumerate(ids):
        if i == N // 2:
            tree.kill("豫")
        tree.call(B, "entrust.register", {"item_id": item, "handler": "王法官"})
        if i % 2 == 0:
            tree.call(B, "entrust.complete", {"item_id": item, "result": f"已冻结存款（第{i}项）"})
    shown_b = cli(tree, B, "entrust", "show", ids[1][:8])
    assert shown_b["state"] == "registered"
    tree.start("豫")
    expected = {item: "completed" if i % 2 == 0 else "registered" for i, item in enumerate(ids)}
    tree.wait_until(lambda: states(tree, A) == expected, 60, "states converged at the entrusting court")
    assert states(tree, B) == expected

    # Every transition exactly once, the same envelope at both ends.
    at_a, at_b = events(tree, A), events(tree, B)
    for i, item in enumerate(ids):
        want = ["create", "register", "complete"] if i % 2 == 0 else ["create", "register"]
        assert [a for a, _ in at_a[item]] == want, item
        assert at_a[item] == at_b[item], item
    relayed = query(tree, "豫", "SELECT COUNT(*), COUNT(DISTINCT envelope_id) FROM inbox WHERE kind = 'workflow'")
    assert relayed[0][0] == relayed[0][1] == len(ids) * 2 + N // 2  # each envelope relayed once
    listed = cli(tree, A, "entrust", "list")
    assert isinstance(listed, list) and len(listed) == N
