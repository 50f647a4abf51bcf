"""The federation's promises, proven with real node processes over real TLS sockets.

Every test here starts ``court-hub run`` processes (each with its own nats-server) on loopback and
talks to them only through their admin sockets and store files, as an operator would. The same
tests run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hub.config import Home
from hub.faultproxy import FaultProxy
from hub.localtree import LocalTree, NodeSpec

pytestmark = pytest.mark.slow

TREE = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫01", "郑州市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),
]


def _query(tree: LocalTree, court: str, sql: str) -> list[tuple[object, ...]]:
    """Read a node's store directly (read-only), as an auditor would."""
    url = Home(tree.homes[court]).load().store.url
    if not url:
        db = Home(tree.homes[court]).database
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(sql.encode()).fetchall()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _store_urls(backend: str, request: pytest.FixtureRequest, specs: list[NodeSpec]) -> dict[str, str]:
    """One fresh database per node in the session's throwaway PostgreSQL cluster (or SQLite files)."""
    store_urls: dict[str, str] = {}
    if backend == "postgres":
        cluster = request.getfixturevalue("_postgres_cluster")
        for spec in specs:
            name = f"n_{uuid.uuid4().hex[:12]}"
            cluster.create_database(name)
            store_urls[spec.court] = cluster.url(name)
    return store_urls


@pytest.fixture
def tree(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[LocalTree]:
    with LocalTree(tmp_path, TREE, store_urls=_store_urls(backend, request, TREE)) as t:
        t.start_all()
        yield t


def received(tree: LocalTree, court: str) -> dict[str, int]:
    rows = _query(tree, court, "SELECT envelope_id, COUNT(*) FROM directives WHERE direction='received' GROUP BY 1")
    return {str(r[0]): int(str(r[1])) for r in rows}


def receipt_states(tree: LocalTree, court: str, ids: set[str]) -> dict[str, int]:
    rows = _query(tree, court, "SELECT envelope_id, state FROM deliveries")
    states: dict[str, int] = {}
    for eid, state in rows:
        if eid in ids:
            states[str(state)] = states.get(str(state), 0) + 1
    return states


def test_subtree_directive_reaches_every_court_once(tree: LocalTree) -> None:
    eid = tree.send_directive("豫", "豫14", "关于开展集中执行行动的通知", "请于本周内完成", subtree=True)
    tree.wait_until(
        lambda: receipt_states(tree, "豫", {eid}) == {"delivered": 3}, 30, "receipts from 豫14, 豫1402, 豫1403"
    )
    for court in ("豫14", "豫1402", "豫1403"):
        assert received(tree, court) == {eid: 1}, court
    # Not in the subtree: nothing arrives.
    assert received(tree, "豫01") == {}
    listed = tree.call("豫", "directive.list")
    assert [r["court"] for r in listed[0]["recipients"]] == ["豫14", "豫1402", "豫1403"]
    assert all(r["state"] == "delivered" for r in listed[0]["recipients"])


def test_sigkill_of_relay_mid_burst_loses_and_duplicates_nothing(tree: LocalTree) -> None:
    """1,000 directives root → county while the city node relaying them is SIGKILLed and restarted."""
    sent: list[str] = []
    for i in range(1000):
        sent.append(tree.send_directive("豫", "豫1402", f"第{i}号指令", "正文"))
        if i == 300:
            tree.kill("豫14")
        if i == 600:
            tree.start("豫14")
    tree.wait_until(lambda: len(received(tree, "豫1402")) == 1000, 120, "1,000 directives at 豫1402")
    got = received(tree, "豫1402")
    assert set(got) == set(sent)
    assert set(got.values()) == {1}
    tree.wait_until(lambda: receipt_states(tree, "豫", set(sent)) == {"delivered": 1000}, 60, "1,000 receipts at 豫")
    # The relay's own records: each envelope relayed (inbox) exactly once despite the crash.
    relayed = _query(tree, "豫14", "SELECT COUNT(*), COUNT(DISTINCT envelope_id) FROM inbox WHERE kind='directive'")
    assert relayed[0][0] == relayed[0][1] == 1000


def test_link_cut_and_healed(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    specs = [*TREE[:2], TREE[3]]  # 豫 → 豫14 → 豫1402
    with LocalTree(tmp_path, specs, store_urls=_store_urls(backend, request, specs)) as tree:
        tree.provision()
        tree.start("豫")
        import asyncio

        from hub import provision

        asyncio.run(provision.join(tree.homes["豫14"], provision.issue_token(tree.homes["豫"], "豫14", 60).token))
        tree.start("豫14")
        asyncio.run(provision.join(tree.homes["豫1402"], provision.issue_token(tree.homes["豫14"], "豫1402", 60).token))
        # Put a fault proxy on the county's link to the city.
        home = Home(tree.homes["豫1402"])
        config = home.load()
        assert config.parent is not None
        host, _, port = config.parent.address.rpartition(":")
        proxy = FaultProxy(host, int(port)).start()
        try:
            config.parent.address = proxy.address
            home.save(config)
            tree.start("豫1402")
            tree.wait_links()
            first = tree.send_directive("豫", "豫1402", "切断前", "")
            tree.wait_until(lambda: first in received(tree, "豫1402"), 30, "directive before the cut")
            proxy.cut()
            tree.wait_until(lambda: tree.status("豫1402")["parent"]["state"] != "up", 30, "link noticed down")
            during = [tree.send_directive("豫", "豫1402", f"切断期间{i}", "") for i in range(20)]
            time.sleep(1)
            assert not set(during) & set(received(tree, "豫1402"))
            backlog = tree.status("豫14")["backlog"]["by_hop"]["豫1402"]["pending"]
            assert backlog == 20
            proxy.heal()
            tree.wait_until(lambda: set(during) <= set(received(tree, "豫1402")), 60, "backlog drained after heal")
            assert set(received(tree, "豫1402").values()) == {1}
            # The city marks its outbox once the county's acks arrive.
            tree.wait_until(lambda: tree.status("豫14")["backlog"]["pending"] == 0, 30, "outbox drained at 豫14")
        finally:
            tree.stop_all()
            proxy.stop()


def test_ping_across_branches_and_audit_verifies(tree: LocalTree) -> None:
    results = tree.ping("豫1402", "豫01", count=3)
    assert all(r.ok for r in results)
    assert list(results[0].route) == ["豫1402", "豫14", "豫", "豫01"]
    tree.call("豫1402", "chain_head.send")
    tree.wait_until(
        lambda: bool(_query(tree, "豫14", "SELECT seq FROM chain_heads WHERE court='豫1402'")), 30, "chain head"
    )
    for court in ("豫", "豫14", "豫1402"):
        tree.stop(court)
    import subprocess
    import sys

    for court in ("豫", "豫14", "豫1402"):
        done = subprocess.run(
            [sys.executable, "-m", "hub", "audit", "verify", "--home", str(tree.homes[court]), "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"ok": true' in done.stdout
