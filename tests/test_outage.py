"""Long outages and backpressure (issue 6, item 3), at a size the suite can afford.

Real node processes (``hub.bench.outage``): a child is offline while a backlog queues for it at its
parent; on reconnect the backlog must arrive in the order it was sent, each envelope executed
exactly once — also across a SIGKILL of the child in the middle of the drain, which makes the
parent resend batches the child had committed but not acked — while the parent's other child
keeps getting its pings and a directive. ``court-hub bench outage --count 100000`` is the full
size, with the memory and latency figures.
"""

from __future__ import annotations

from pathlib import Path

from hub.bench import outage

COUNT = 4000


def test_backlog_drains_in_order_exactly_once_and_the_sibling_stays_served(tmp_path: Path) -> None:
    result = outage.run(COUNT, size=128, pings=10, base=tmp_path, crash_at=0.5)

    assert result["violations"] == []
    order = result["order"]
    # Same ids, same order: the child's inbox (arrival order) equals the parent's outbox for it.
    assert order == {
        "sent": COUNT,
        "arrived": COUNT,
        "missing": 0,
        "unexpected": 0,
        "in_order": True,
        "first_out_of_order_index": None,
    }
    # The crash happened mid-drain, and still every envelope was executed once (audited at the child).
    assert result["child_crashed_mid_drain"] is True
    assert result["handled_by_child"] == COUNT
    # While the backlog queued, it waited in the parent's store, not in a session.
    assert result["backlog_at_parent"]["pending"] == COUNT
    # The sibling was answered throughout and the directive sent during the drain got its receipt.
    assert result["sibling_ping_during_drain"]["samples"] >= 1
    assert result["directive_during_drain"]["final"] == "delivered"
