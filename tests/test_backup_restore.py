"""Backup and restore with real node processes (hub.backup, DESIGN.md §2 "nothing lost").

A node is backed up online, keeps working, is killed and restored from the older backup. On
restart it asks its neighbours to resend what they delivered since the snapshot (link protocol 2);
the tests prove it ends up with everything it missed, exactly once, and that its neighbours see no
duplicates either.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import backup as backups
from hub.config import Home
from hub.errors import InvalidInput
from hub.localtree import LocalTree, NodeSpec

pytestmark = pytest.mark.slow

TREE = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),
]


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[LocalTree]:
    with LocalTree(tmp_path / "tree", TREE) as t:
        t.start_all()
        yield t


def _query(tree: LocalTree, court: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    db = Home(tree.homes[court]).database
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(sql, params).fetchall()


def _received(tree: LocalTree, court: str) -> dict[str, int]:
    """Directive envelope id → how many times its handler recorded it (the business effect)."""
    rows = _query(tree, court, "SELECT envelope_id, COUNT(*) FROM directives WHERE direction='received' GROUP BY 1")
    return {str(e): int(str(n)) for e, n in rows}


def _audited(tree: LocalTree, court: str, action: str, eid: str) -> int:
    return int(
        str(_query(tree, court, "SELECT COUNT(*) FROM audit WHERE action=? AND envelope_id=?", action, eid)[0][0])
    )


def _receipts(tree: LocalTree, court: str, eids: set[str]) -> dict[str, str]:
    rows = _query(tree, court, "SELECT envelope_id, recipient, state FROM deliveries")
    return {f"{e}:{r}": str(s) for e, r, s in rows if e in eids}


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args, "--home", str(home)], capture_output=True, text=True, timeout=120
    )


def _audit_verifies(tree: LocalTree, court: str) -> None:
    done = _cli(tree.homes[court], "audit", "verify")
    assert done.returncode == 0, f"{court}: {done.stdout}{done.stderr}"


def _backup(tree: LocalTree, court: str, out: Path) -> None:
    done = _cli(tree.homes[court], "backup", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["court"] == court
    assert out.stat().st_mode & 0o077 == 0  # holds the court key: owner only


def _restore(tree: LocalTree, court: str, archive: Path) -> list[str]:
    done = _cli(tree.homes[court], "restore", str(archive), "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["resend_from"])


def test_restored_leaf_gets_what_it_missed_once(tree: LocalTree, tmp_path: Path) -> None:
    before = tree.send_directive("豫", "豫14", "关于开展集中执行行动的通知", subtree=True)
    tree.wait_until(lambda: before in _received(tree, "豫1402"), 30, "the first directive at 豫1402")
    archive = tmp_path / "豫1402.tar.gz"
    _backup(tree, "豫1402", archive)  # online: the node keeps running

    after = [tree.send_directive("豫", "豫14", f"第{i}号执行指令", subtree=True) for i in range(5)]
    everything = {before, *after}
    tree.wait_until(
        lambda: set(_received(tree, "豫1402")) == everything, 30, "all directives at 豫1402 before the crash"
    )
    tree.kill("豫1402")
    peers = _restore(tree, "豫1402", archive)
    assert peers == ["豫14"]
    assert set(_received(tree, "豫1402")) == {before}  # the store really went back in time
    tree.start("豫1402")

    tree.wait_until(lambda: set(_received(tree, "豫1402")) == everything, 60, "redelivery to the restored 豫1402")
    assert set(_received(tree, "豫1402").values()) == {1}
    for eid in everything:
        # Before the snapshot: resent but deduped by the restored inbox. After: delivered again, once.
        assert _audited(tree, "豫1402", "received", eid) == 1, eid
    resent = _query(tree, "豫14", "SELECT detail FROM audit WHERE action='resend_for_restore' AND peer='豫1402'")
    assert len(resent) == 1 and json.loads(str(resent[0][0]))["rows"] >= len(after)
    assert not (tree.homes["豫1402"] / backups.MARKER).exists()  # asked once, crossed off
    # Receipts for what it got again reach the origin; the origin still has one row per recipient.
    tree.wait_until(lambda: set(_receipts(tree, "豫", everything).values()) == {"delivered"}, 30, "receipts at 豫")
    assert len(_receipts(tree, "豫", everything)) == 3 * len(everything)
    for court in ("豫", "豫14", "豫1402"):
        _audit_verifies(tree, court)


def test_restored_relay_is_resent_from_both_sides(tree: LocalTree, tmp_path: Path) -> None:
    """The city node relays both ways: its parent resends directives, its children resend receipts."""
    archive = tmp_path / "豫14.tar.gz"
    _backup(tree, "豫14", archive)
    sent = [tree.send_directive("豫", "豫14", f"第{i}号执行指令", subtree=True) for i in range(4)]
    tree.wait_until(
        lambda: (
            len(_receipts(tree, "豫", set(sent))) == 12
            and set(_receipts(tree, "豫", set(sent)).values()) == {"delivered"}
        ),
        30,
        "all receipts at 豫 before the crash",
    )
    tree.kill("豫14")
    assert sorted(_restore(tree, "豫14", archive)) == ["豫", "豫1402", "豫1403"]
    tree.start("豫14")

    tree.wait_until(lambda: set(_received(tree, "豫14")) == set(sent), 60, "directives again at the restored 豫14")
    tree.wait_until(lambda: not (tree.homes["豫14"] / backups.MARKER).exists(), 30, "every neighbour asked")
    # The children had the directives: the relay's resends are deduped there, effects stay single.
    for leaf in ("豫1402", "豫1403"):
        assert _received(tree, leaf) == {eid: 1 for eid in sent}, leaf
        for eid in sent:
            assert _audited(tree, leaf, "received", eid) == 1
        resent = _query(tree, leaf, "SELECT detail FROM audit WHERE action='resend_for_restore' AND peer='豫14'")
        assert len(resent) == 1
    # Receipts the children resent pass through 豫14 again and are deduped at 豫.
    tree.wait_until(
        lambda: int(str(_query(tree, "豫14", "SELECT COUNT(*) FROM inbox WHERE kind='receipt'")[0][0])) >= 8,
        60,
        "the leaves' receipts relayed again by 豫14",
    )
    assert set(_receipts(tree, "豫", set(sent)).values()) == {"delivered"}
    receipts_at_root = _query(
        tree, "豫", "SELECT COUNT(*), COUNT(DISTINCT envelope_id) FROM inbox WHERE kind='receipt'"
    )
    assert receipts_at_root[0][0] == receipts_at_root[0][1]
    for court in ("豫", "豫14", "豫1402", "豫1403"):
        _audit_verifies(tree, court)


def test_restore_refuses_a_running_node_and_a_foreign_or_broken_archive(tree: LocalTree, tmp_path: Path) -> None:
    archive = tmp_path / "豫1403.tar.gz"
    _backup(tree, "豫1403", archive)
    with pytest.raises(InvalidInput, match="is running"):
        backups.restore(Home(tree.homes["豫1403"]), archive)
    tree.stop("豫1402")
    with pytest.raises(InvalidInput, match=r"backup of 豫1403; the node at .* is 豫1402"):
        backups.restore(Home(tree.homes["豫1402"]), archive)
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x1f\x8b not really gzip")
    done = _cli(tree.homes["豫1402"], "restore", str(garbage))
    assert done.returncode != 0 and "not a readable court-hub backup" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
