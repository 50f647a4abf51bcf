"""``court-hub bench outage``: a child offline while a large backlog queues for it at its parent.

Three real node processes: the province 豫 and two of its cities, 豫14 (taken offline) and 豫01
(the sibling that must stay served). The run:

1. **Idle baseline** — sealed pings 豫 → 豫01 (and back) while nothing else happens.
2. **Queue** — 豫14 is stopped; 豫 originates ``count`` ``bench`` envelopes for it. They wait in
   豫's outbox (SQLite, on disk). RSS of 豫 is sampled from ``/proc`` at 10 %, 50 % and 100 % of
   the backlog: durable queueing must not grow the process per message.
3. **Drain** — 豫14 is started again; its link pumps the backlog (bounded batches, bounded window
   of unacked batches). Meanwhile 豫 and 豫01 keep pinging each other and 豫 sends 豫01 a directive,
   which must come back with its signed receipt. RSS of 豫14 is sampled at 10 %, 50 % and 100 %.
   (The child's bench handler records the latency of each envelope it receives in a deque of up
   to 100,000 floats, about 3 MiB when full; the drain loop empties it as it goes, so the figures
   are the node's, not the benchmark's bookkeeping.)
4. **Proof** — arrival order is the order of 豫14's inbox rows (rowid: rows are inserted in batch
   order, batches commit in order); sending order is 豫's outbox id order for that hop. The two
   id sequences must be identical: in order, none missing, none twice. The child's audit entries
   of executed bench deliveries (durable, so a ``crash_at`` restart does not reset them) must be
   ``count`` distinct ids: dedupe held for the resends.

The store files are read directly (SQLite, read-only, WAL lets it run beside the node's writer):
the nodes expose counts, not the order of their inbox.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.bench.link import percentile
from hub.config import Home
from hub.localtree import LocalTree, NodeSpec

PARENT, OFFLINE, SIBLING = "豫", "豫14", "豫01"
TREE = [
    NodeSpec(PARENT, "河南省高级人民法院"),
    NodeSpec(OFFLINE, "商丘市中级人民法院", PARENT),
    NodeSpec(SIBLING, "郑州市中级人民法院", PARENT),
]


def rss_kb(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS since start) of a process in KiB, from /proc/<pid>/status."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


@contextlib.contextmanager
def _db(tree: LocalTree, court: str) -> Iterator[sqlite3.Connection]:
    path = Home(tree.homes[court]).database
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def _scalar(tree: LocalTree, court: str, sql: str, *params: Any) -> int:
    with _db(tree, court) as conn:
        return int(conn.execute(sql, params).fetchone()[0])


def queued(tree: LocalTree) -> int:
    """Bench envelopes for the offline child in the parent's outbox (any state)."""
    return _scalar(tree, PARENT, "SELECT count(*) FROM outbox WHERE next_hop = ? AND kind = 'bench'", OFFLINE)


def pending(tree: LocalTree) -> int:
    return _scalar(tree, PARENT, "SELECT count(*) FROM outbox WHERE next_hop = ? AND state = 'pending'", OFFLINE)


def arrived(tree: LocalTree) -> int:
    """Bench envelopes committed in the child's inbox (each id at most once: it is the key)."""
    return _scalar(tree, OFFLINE, "SELECT count(*) FROM inbox WHERE kind = 'bench' AND origin = ?", PARENT)


def executed(tree: LocalTree) -> tuple[int, int]:
    """(bench deliveries audited as received by the child, distinct envelope ids among them):
    the durable record of each handler run, so a crash and restart does not reset it."""
    with _db(tree, OFFLINE) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT envelope_id) FROM audit WHERE action = 'received' AND kind = 'bench'"
        ).fetchone()
    return int(row[0]), int(row[1])


def order_check(tree: LocalTree) -> dict[str, Any]:
    """Compare the parent's sending order with the child's arrival order, id by id."""
    with _db(tree, PARENT) as conn:
        sent = [
            r[0]
            for r in conn.execute(
                "SELECT envelope_id FROM outbox WHERE next_hop = ? AND kind = 'bench' ORDER BY id", (OFFLINE,)
            )
        ]
    with _db(tree, OFFLINE) as conn:
        got = [
            r[0]
            for r in conn.execute(
                "SELECT envelope_id FROM inbox WHERE kind = 'bench' AND origin = ? ORDER BY rowid", (PARENT,)
            )
        ]
    sent_set, got_set = set(sent), set(got)
    first_diff = next((i for i, (a, b) in enumerate(zip(sent, got, strict=False)) if a != b), None)
    return {
        "sent": len(sent),
        "arrived": len(got),
        "missing": len(sent_set - got_set),
        "unexpected": len(got_set - sent_set),
        "in_order": sent == got,
        "first_out_of_order_index": first_diff,
    }


def _pings(tree: LocalTree, src: str, dst: str, n: int) -> tuple[list[float], int]:
    """``n`` sealed round trips src → dst, one at a time; (round-trip ms of those answered, failures)."""
    ok: list[float] = []
    failed = 0
    for result in tree.ping(src, dst, count=n, timeout_ms=10_000):
        if result.ok:
            ok.append(result.round_trip_ms)
        else:
            failed += 1
    return ok, failed


def _directive_state(tree: LocalTree, eid: str) -> str:
    with _db(tree, PARENT) as conn:
        row = conn.execute(
            "SELECT state FROM deliveries WHERE envelope_id = ? AND recipient = ?", (eid, SIBLING)
        ).fetchone()
    return str(row[0]) if row else "none"


def _lat(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "samples": len(values),
    }


def run(
    count: int = 100_000, size: int = 256, pings: int = 100, base: Path | None = None, crash_at: float = 0.0
) -> dict[str, Any]:
    """One outage: queue ``count`` envelopes for an offline child, then drain them. Figures and
    the correctness verdict (``violations``: empty when delivery was in order and exactly once and
    the sibling was served throughout).

    ``crash_at`` (0 < f < 1) SIGKILLs the child once that fraction has arrived and starts it again:
    the batches it committed but had not acked are resent and must be deduped, not run twice."""
    if base is None:
        with tempfile.TemporaryDirectory(prefix="court-hub-outage-") as tmp:
            return run(count, size, pings, Path(tmp), crash_at)
    with LocalTree(base, TREE) as tree:
        tree.start_all()
        parent_pid = tree.procs[PARENT].pid
        _pings(tree, PARENT, SIBLING, 10)  # warm the path
        idle, idle_failed = _pings(tree, PARENT, SIBLING, pings)
        idle_up, idle_up_failed = _pings(tree, SIBLING, PARENT, pings)

        # -- outage: the child is down, the backlog queues at the parent -----------------------
        tree.stop(OFFLINE)
        rss_parent_start = rss_kb(parent_pid)[0]
        started = time.perf_counter()
        tree.call(PARENT, "bench.emit", {"count": count, "size": size, "to": OFFLINE, "chunk": 1000})
        rss_parent_10 = rss_parent_50 = 0
        while (n := queued(tree)) < count:
            if not rss_parent_10 and n >= count // 10:
                rss_parent_10 = rss_kb(parent_pid)[0]
            if not rss_parent_50 and n >= count // 2:
                rss_parent_50 = rss_kb(parent_pid)[0]
            time.sleep(0.05)
        queue_s = time.perf_counter() - started
        rss_parent_100, _ = rss_kb(parent_pid)
        rss_parent_10 = rss_parent_10 or rss_parent_100
        rss_parent_50 = rss_parent_50 or rss_parent_100
        backlog_status = tree.status(PARENT)

        # -- reconnect: the backlog drains while the sibling is pinged ---------------------------
        drain_started = time.perf_counter()
        tree.start(OFFLINE)
        child_pid = tree.procs[OFFLINE].pid
        rss_child_10 = rss_child_50 = 0
        crashed = False
        first_arrival = 0.0
        during: list[float] = []
        during_up: list[float] = []
        during_failed = 0
        directive = tree.send_directive(PARENT, SIBLING, "积压期间的指令", "大量信封补发期间本院仍须及时收到。")
        directive_sent_at = arrived(tree)
        while (n := arrived(tree)) < count:
            if n and not first_arrival:
                first_arrival = time.perf_counter()
            if not rss_child_10 and n >= count // 10:
                rss_child_10 = rss_kb(child_pid)[0]
            if not rss_child_50 and n >= count // 2:
                rss_child_50 = rss_kb(child_pid)[0]
            if crash_at and not crashed and n >= crash_at * count:
                tree.kill(OFFLINE)
                tree.start(OFFLINE)
                child_pid, crashed = tree.procs[OFFLINE].pid, True
            # Empty the bench handler's latency record (a deque of up to 100,000 floats) so that
            # the RSS figures show the node, not the benchmark's own bookkeeping.
            tree.call(OFFLINE, "bench.stats", {"reset": True})
            ok, failed = _pings(tree, PARENT, SIBLING, 1)
            during.extend(ok)
            up, failed_up = _pings(tree, SIBLING, PARENT, 1)
            during_up.extend(up)
            during_failed += failed + failed_up
            if time.perf_counter() - drain_started > 3600:
                raise TimeoutError(f"backlog not drained after an hour ({n} of {count} arrived)")
        time_done = time.perf_counter()
        drain_s = time_done - drain_started
        rss_child_100, child_peak = rss_kb(child_pid)
        rss_child_10 = rss_child_10 or rss_child_100
        rss_child_50 = rss_child_50 or rss_child_100
        directive_state = _directive_state(tree, directive)
        tree.wait_until(lambda: pending(tree) == 0, 120, "acks of the drained backlog at the parent")
        tree.wait_until(lambda: _directive_state(tree, directive) != "pending", 60, "the directive's receipt")
        directive_final = _directive_state(tree, directive)
        handled, handled_distinct = executed(tree)
        links = {c["court"]: c for c in tree.status(PARENT)["children"]}
        _, parent_peak = rss_kb(parent_pid)
        order = order_check(tree)

    violations = []
    if not order["in_order"]:
        violations.append(f"arrival order differs from sending order at index {order['first_out_of_order_index']}")
    if order["missing"] or order["unexpected"] or order["arrived"] != count:
        violations.append(
            f"{order['arrived']} of {count} arrived ({order['missing']} missing, {order['unexpected']} unexpected)"
        )
    if handled != count or handled_distinct != count:
        violations.append(f"the child executed {handled} bench deliveries ({handled_distinct} distinct) for {count}")
    idle_failed += idle_up_failed
    if idle_failed or during_failed:
        violations.append(f"sibling pings unanswered: {idle_failed} idle, {during_failed} during the drain")
    if directive_final != "delivered":
        violations.append(f"directive to {SIBLING} during the drain ended {directive_final}")
    return {
        "count": count,
        "size_bytes": size,
        "queue_s": round(queue_s, 2),
        "queue_rate_per_s": round(count / queue_s),
        "backlog_at_parent": backlog_status["backlog"]["by_hop"].get(OFFLINE, {}),
        "drain_s": round(drain_s, 2),
        "drain_rate_per_s": round(count / drain_s),
        "drain_rate_from_first_arrival_per_s": round(count / (time_done - first_arrival)) if first_arrival else 0,
        "child_crashed_mid_drain": crashed,
        "parent_rss_kib": {
            "before": rss_parent_start,
            "at_10pct_queued": rss_parent_10,
            "at_50pct_queued": rss_parent_50,
            "at_100pct_queued": rss_parent_100,
            "ratio_100_to_10": round(rss_parent_100 / rss_parent_10, 3),
            "peak": parent_peak,
        },
        "child_rss_kib": {
            "at_10pct_drained": rss_child_10,
            "at_50pct_drained": rss_child_50,
            "at_100pct_drained": rss_child_100,
            "ratio_100_to_10": round(rss_child_100 / rss_child_10, 3),
            "peak": child_peak,
        },
        "sibling_ping_idle": _lat(idle),
        "sibling_ping_during_drain": _lat(during),
        "sibling_to_parent_ping_idle": _lat(idle_up),
        "sibling_to_parent_ping_during_drain": _lat(during_up),
        "directive_during_drain": {
            "sent_when_arrived": directive_sent_at,
            "state_when_drained": directive_state,
            "final": directive_final,
        },
        "link_to_child": {k: links.get(OFFLINE, {}).get(k) for k in ("state", "envelopes_sent")},
        "order": order,
        "handled_by_child": handled,
        "violations": violations,
    }
