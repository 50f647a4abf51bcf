"""The fault campaign (``court-hub chaos``): a short real campaign, the schedule, and the checker.

The campaign test runs the real thing briefly — seven node processes, four simulator processes,
every fault kind at least once — and requires zero violations. The checker is then shown able to
fail: on the campaign's own stores (an inbox row removed, a transition applied twice, an audit entry
altered, a measure carried out twice at the bank) and on hand-built snapshots, each planted fault is
named by its rule, court and envelope / item / request.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import socket
import sqlite3
import subprocess
import sys
import threading

import pytest

from hub.chaos.invariants import NodeSnapshot, SimSnapshot, Violation, check, read_node, read_sim
from hub.chaos.load import Accepted
from hub.chaos.runner import Campaign, render, tree_shape
from hub.chaos.schedule import ALL_KINDS, LINK_FAULTS, NODE_KILLS, make_schedule
from hub.cli.demo_cmd import verify_home
from hub.config import Home
from hub.faultproxy import FaultProxy

SEED = 11
DURATION_S = 40.0


def _rules(violations: list[Violation]) -> set[str]:
    return {v.rule for v in violations}


# -- the schedule ----------------------------------------------------------------------------------


def test_same_seed_same_schedule_and_every_kind_present() -> None:
    shape = tree_shape()
    for seed in range(1, 30):
        one = make_schedule(seed, 60, shape)
        assert one == make_schedule(seed, 60, shape)
        assert {f.kind for f in one} == set(ALL_KINDS)
        assert {f.target for f in one if f.kind in NODE_KILLS} & set(shape.leaves)
        assert all(f.at_s >= 3.0 and f.heal_s <= 60 - 10 + 0.01 for f in one), "every fault heals before the end"
    assert make_schedule(1, 60, shape) != make_schedule(2, 60, shape)
    long = make_schedule(1, 900, shape)
    assert len(long) > 100 and {f.kind for f in long} == set(ALL_KINDS)


def test_schedule_never_overlaps_faults_on_one_target() -> None:
    shape = tree_shape()
    for seed in range(1, 20):
        faults = make_schedule(seed, 300, shape, rate_per_min=30)
        for kind_group in (NODE_KILLS, LINK_FAULTS):
            by_target: dict[str, list[tuple[float, float]]] = {}
            for f in faults:
                if f.kind in kind_group:
                    by_target.setdefault(f.target, []).append((f.at_s, f.heal_s))
            for spans in by_target.values():
                spans.sort()
                assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_schedule_refuses_too_short_a_campaign() -> None:
    with pytest.raises(ValueError, match="at least 20 s"):
        make_schedule(1, 10, tree_shape())


# -- the checker on planted violations -------------------------------------------------------------


def _clean() -> tuple[dict[str, NodeSnapshot], dict[str, SimSnapshot]]:
    """豫14 sent a directive (e1) to 豫1402 and opened supervision item i1 there; a freeze r1 went to
    the bank. All consistent."""
    parent = NodeSnapshot("豫14")
    child = NodeSnapshot("豫1402")
    parent.outbox = [("e1", "豫1402", "directive", "豫14", "delivered", None)]
    parent.deliveries = [("e1", "豫1402", "delivered")]
    child.inbox = {"e1": "豫14", "e2": "豫14"}
    child.outbox = [("e3", "豫14", "receipt", "豫1402", "delivered", None)]
    parent.inbox = {"e3": "豫1402"}
    parent.directives = {"e1"}
    child.directives = {"e1"}
    for snap, role in ((parent, "issuer"), (child, "party")):
        snap.items[("i1", "豫1402")] = ("supervision", "豫14", role, "replied")
        snap.events[("i1", "豫1402")] = [("create", "issued", "e2"), ("reply", "replied", "e4")]
    child.requests = {"r1": ("control", "answered", "relay", "豫14", "done", "M1")}
    child.cases = {"（2026）豫1402执1号"}
    parent.served = {"r1": ("豫1402", "answered", True)}
    parent.jobs = {"r1": ("bank", "answered")}
    bank = SimSnapshot("bank", measures=[("M0", None), ("M1", "r1")], requests={"r1"})
    return {"豫14": parent, "豫1402": child}, {"bank": bank}


ACCEPTED = [
    Accepted("豫14", "directive", "e1", "豫1402"),
    Accepted("豫14", "supervision", "i1", "豫1402"),
    Accepted("豫1402", "step", "i1:reply"),
    Accepted("豫1402", "case", "（2026）豫1402执1号"),
    Accepted("豫1402", "control", "r1"),
]


def test_checker_passes_a_consistent_state() -> None:
    nodes, sims = _clean()
    assert check(nodes, sims, ACCEPTED, seeded_measures={"bank": {"M0"}}) == []


@pytest.mark.parametrize(
    ("plant", "rule", "court", "ref"),
    [
        (lambda n, s: n["豫1402"].inbox.pop("e1"), "hop_lost", "豫14", "e1"),
        (lambda n, s: n["豫14"].deliveries.__setitem__(0, ("e1", "豫1402", "pending")),
         "receipt_missing", "豫14", "e1"),
        (lambda n, s: n["豫14"].outbox.append(("e9", "豫1402", "directive", "豫14", "pending", None)),
         "outbox_pending", "豫14", "e9"),
        (lambda n, s: n["豫14"].outbox.append(("e1", "豫1402", "directive", "豫14", "delivered", None)),
         "outbox_duplicate", "豫14", "e1"),
        (lambda n, s: n["豫1402"].events[("i1", "豫1402")].append(("reply", "replied", "e4")),
         "effect_duplicated", "豫1402", "i1"),
        (lambda n, s: n["豫1402"].items.__setitem__(("i1", "豫1402"), ("supervision", "豫14", "party", "closed")),
         "workflow_diverged", "豫14", "i1"),
        (lambda n, s: n["豫1402"].items.pop(("i1", "豫1402")), "workflow_one_sided", "豫14", "i1"),
        (lambda n, s: s["bank"].measures.append(("M2", "r1")), "agency_twice", "bank", "r1"),
        (lambda n, s: s["bank"].measures.append(("M3", "zz")), "agency_orphan", "bank", "M3"),
        (lambda n, s: s["bank"].measures.remove(("M1", "r1")), "agency_lost", "豫1402", "r1"),
        (lambda n, s: n["豫1402"].requests.__setitem__("r2", ("inquiry", "pending", "relay", None, None, None)),
         "agency_stuck", "豫1402", "r2"),
        (lambda n, s: n["豫14"].served.__setitem__("r1", ("豫1402", "failed", True)),
         "agency_mismatch", "豫1402", "r1"),
        (lambda n, s: setattr(n["豫14"], "audit_ok", False), "audit_broken", "豫14", "audit"),
        (lambda n, s: n["豫1402"].cases.clear(), "accepted_lost", "豫1402", "豫1402执1号"),
        (lambda n, s: n["豫1402"].events[("i1", "豫1402")].pop(), "workflow_diverged", "豫14", "i1"),
    ],
)  # fmt: skip
def test_checker_names_a_planted_violation(plant: object, rule: str, court: str, ref: str) -> None:
    nodes, sims = _clean()
    plant(nodes, sims)  # type: ignore[operator]
    found = check(nodes, sims, ACCEPTED, seeded_measures={"bank": {"M0"}})
    assert rule in _rules(found), found
    named = [v for v in found if v.rule == rule]
    assert any(v.court == court and ref in (v.ref + v.message) for v in named), named


# -- a short real campaign -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    base = tmp_path_factory.mktemp("chaos")
    run = Campaign(SEED, DURATION_S, base, quiesce_s=150, log=io.StringIO())
    run.run()
    return run


def test_short_campaign_has_no_violation_and_injects_every_kind(campaign: Campaign) -> None:
    report = campaign.report
    text = io.StringIO()
    render(report, text)
    assert report.error == "", text.getvalue()
    assert report.violations == [], text.getvalue()
    assert set(report.faults_by_kind) == {k.value for k in ALL_KINDS}, text.getvalue()
    assert all(r.recovered_s is not None for r in report.recoveries)
    assert report.convergence_s is not None
    data = report.as_json()
    assert data["ok"] and data["counts"]["envelopes"] > 0 and data["counts"]["workflow_items"] > 0
    assert data["counts"]["agency_requests"] > 0
    for what in ("directive", "supervision", "request", "entrust", "case", "report", "petition"):
        assert data["load"]["accepted"].get(what, 0) > 0, (what, data["load"])
    assert report.load["steps_taken"] > 0
    # Every process the campaign started is gone.
    assert not any(campaign.tree.running(c) for c in campaign.tree.order)
    assert all(s.proc is None for s in campaign.sims.values())


def test_checker_finds_faults_planted_in_the_campaign_stores(campaign: Campaign) -> None:
    """Tamper with the real stores the campaign left and read them again: each tampering is named."""
    homes = campaign.tree.homes
    leaf = "豫1402"
    db = Home(homes[leaf]).database
    with sqlite3.connect(db) as conn:
        env = conn.execute(
            "SELECT envelope_id FROM inbox WHERE from_hop='豫14' ORDER BY received_at_ms LIMIT 1"
        ).fetchone()[0]
        conn.execute("DELETE FROM inbox WHERE envelope_id=?", (env,))
        item, party, action, frm, to, actor, at, data, wenv = conn.execute(
            "SELECT item_id, party, action, from_state, to_state, actor, at_ms, data, envelope_id FROM workflow_events"
            " WHERE envelope_id IS NOT NULL AND actor != ? LIMIT 1",
            (leaf,),
        ).fetchone()
        conn.execute(
            "INSERT INTO workflow_events (item_id, party, action, from_state, to_state, actor, at_ms, data,"
            " envelope_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item, party, action, frm, to, actor, at, data, wenv),
        )
        conn.execute("UPDATE audit SET detail = '{\"tampered\": 1}' WHERE seq = (SELECT max(seq) / 2 FROM audit)")
    bank = campaign.sims["bank"].db_path
    with sqlite3.connect(bank) as conn:
        _mid, rid = conn.execute(
            "SELECT measure_id, request_id FROM measures WHERE request_id IS NOT NULL LIMIT 1"
        ).fetchone() or (None, None)
        if rid is None:  # no freeze reached the bank in this run: plant one under a fresh id
            rid = "planted-request"
        conn.execute(
            "INSERT INTO measures (measure_id, seq, asset_id, owner_id_no, court_code, court_name, case_no,"
            " request_id, status, term_days, queued_at) SELECT 'PLANTED', max(seq) + 1, 'a', 'o', '豫1402', 'x',"
            " 'c', ?, 'active', 1, 0 FROM measures",
            (rid,),
        )
    nodes: dict[str, NodeSnapshot] = {}
    for court in campaign.tree.order:
        snap = read_node(court, Home(homes[court]).database)
        audit = verify_home(homes[court])
        snap.audit_ok, snap.audit_problem = bool(audit["ok"]), str(audit["problem"] or "")
        nodes[court] = snap
    sims = {k: read_sim(k, s.db_path) for k, s in campaign.sims.items()}
    assert campaign.load is not None
    found = check(nodes, sims, campaign.load.accepted, seeded_measures=campaign.seeded_measures)
    rules = _rules(found)
    assert {"hop_lost", "effect_duplicated", "audit_broken"} <= rules, found
    assert rules & {"agency_twice", "agency_orphan"}, found
    assert any(v.rule == "hop_lost" and env in v.ref and v.court == "豫14" for v in found), found
    assert any(v.rule == "effect_duplicated" and item in v.ref and v.court == leaf for v in found), found
    assert any(v.rule == "audit_broken" and v.court == leaf for v in found), found


def test_cli_prints_the_same_schedule_for_a_seed_and_refuses_a_short_campaign() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hub", "chaos", *args], capture_output=True, text=True, check=False, timeout=120
        )

    one = run("--seed", "3", "--duration", "60", "--schedule-only", "--json")
    assert one.returncode == 0, one.stderr
    faults = json.loads(one.stdout)
    assert faults == [f.as_json() for f in make_schedule(3, 60, tree_shape())]
    short = run("--seed", "3", "--duration", "5")
    assert short.returncode == 2 and "--duration" in short.stderr


def test_fault_proxy_stall_holds_bytes_without_closing_and_heal_delivers_them() -> None:
    """A stalled link loses nothing and resets nothing: what was sent arrives after the heal."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def echo() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(target=lambda c=conn: _echo(c), daemon=True).start()

    threading.Thread(target=echo, daemon=True).start()
    proxy = FaultProxy("127.0.0.1", server.getsockname()[1]).start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
            client.sendall(b"before")
            assert _recv(client, 6) == b"before"
            proxy.stall()
            client.sendall(b"during")
            client.settimeout(0.5)
            with pytest.raises(TimeoutError):
                client.recv(16)
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as late:
                late.sendall(b"late")
                proxy.heal()
                client.settimeout(10)
                assert _recv(client, 6) == b"during"
                assert _recv(late, 4) == b"late"
        assert proxy.stall_count == 1
    finally:
        proxy.stop()
        server.close()
        for conn in accepted:
            conn.close()


def _echo(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := conn.recv(4096):
            conn.sendall(data)


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data
