"""Long outages and backpressure (issue 6, item 3), at a size the suite can afford.

Real node processes (``hub.bench.outage``): a child is offline while a backlog queues for it at its
parent; on reconnect the backlog must arrive in the order it was sent, each envelope executed
exactly once — also across a SIGKILL of the child in the middle of the drain, which makes the
parent resend batches the child had committed but not acked — while the parent's other child
keeps getting its pings and a directive. ``court-hub bench outage --count 100000`` is the full
size, with the memory and latency figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from inproc import count, until
from sqlalchemy import Connection, func, select, update

from hub import provision
from hub.bench import outage
from hub.clock import FixedClock, SystemClock
from hub.config import Home
from hub.maintenance import prune
from hub.netutil import free_port
from hub.node import Node
from hub.store.schema import audit, deliveries, inbox, outbox

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


# -- dedupe retention: the outage it survives, and what happens beyond it -----------------------
#
# In-process nodes (real TLS links, real SQLite) on a clock the test moves by days. The child's
# inbox remembers envelope ids for ``[federation] dedupe_retention_days``; maintenance prunes older
# ids, and the exchange refuses envelopes older than the retention as ``stale_envelope``.

RETENTION_DAYS = 10
DAY_MS = 86_400_000


class Pair:
    """豫 and its child 豫14 in this event loop; the child can be stopped and started again."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.clock = FixedClock(SystemClock().now_ms())
        self.parent: Node | None = None
        self.child: Node | None = None

    async def start(self) -> None:
        parent_home, child_home = Home(self.base / "豫"), Home(self.base / "豫14")
        provision.init_node(parent_home.path, "豫", "河南省高级人民法院", f"127.0.0.1:{free_port()}", root=True)
        provision.init_node(child_home.path, "豫14", "商丘市中级人民法院", f"127.0.0.1:{free_port()}")
        for home in (parent_home, child_home):
            config = home.load()
            config.federation.dedupe_retention_days = RETENTION_DAYS
            config.federation.reconnect_max_s = 0.5
            home.save(config)
        self.parent = Node(parent_home, clock=self.clock)
        await self.parent.start()
        token = await asyncio.to_thread(provision.issue_token, parent_home.path, "豫14", 600)
        await provision.join(child_home.path, token.token)
        await self.start_child()

    async def start_child(self) -> Node:
        self.child = Node(Home(self.base / "豫14"), clock=self.clock)
        await self.child.start()
        child = self.child
        await until(lambda: child.router.parent in child.sessions, "the child's link up")
        return child

    def running(self) -> tuple[Node, Node]:
        assert self.parent is not None and self.child is not None
        return self.parent, self.child

    async def stop_child(self) -> None:
        assert self.child is not None
        await self.child.stop(0.5)
        self.child = None

    async def stop(self) -> None:
        for node in (self.child, self.parent):
            if node is not None:
                await node.stop(0.5)


@contextlib.asynccontextmanager
async def pair(base: Path) -> AsyncIterator[Pair]:
    nodes = Pair(base)
    try:
        await nodes.start()
        yield nodes
    finally:
        await nodes.stop()


async def _bench(node: Node, to: Node, count: int) -> list[str]:
    """``count`` bench envelopes node → to, committed; their ids in sending order."""
    before = await node.store.read(lambda c: int(c.execute(select(func.max(outbox.c.id))).scalar() or 0))
    await node.bench.emit({"count": count, "size": 64, "to": str(to.me), "wait": True})
    ids = await node.store.read(
        lambda c: c.execute(
            select(outbox.c.envelope_id).where(outbox.c.id > before, outbox.c.kind == "bench").order_by(outbox.c.id)
        ).scalars()
    )
    return list(ids)


async def _lose_acks(parent: Node, ids: list[str]) -> None:
    """Put the parent's rows for ``ids`` back to pending: the store as it is when the parent crashed
    after the child committed them but before the parent recorded the acks. They will be resent."""
    await parent.store.write(
        lambda c: c.execute(
            update(outbox).where(outbox.c.envelope_id.in_(ids)).values(state="pending", done_at_ms=None)
        )
    )


async def _drained(parent: Node, child: Node) -> bool:
    n = await parent.store.read(count(outbox, outbox.c.next_hop == str(child.me), outbox.c.state == "pending"))
    return n == 0


def _executed(conn: Connection) -> list[str]:
    """Envelope ids of bench deliveries the child executed (audited as received), in order."""
    rows = conn.execute(
        select(audit.c.envelope_id).where(audit.c.action == "received", audit.c.kind == "bench").order_by(audit.c.seq)
    )
    return [str(r) for r in rows.scalars()]


async def test_outage_shorter_than_the_retention_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    async with pair(tmp_path) as nodes:
        parent, child = nodes.running()
        before = await _bench(parent, child, 30)
        await until(lambda: _drained(parent, child), "the first envelopes acked")
        await nodes.stop_child()
        await _lose_acks(parent, before)  # the child has them; the parent will resend them

        # The outage: just under the retention. Maintenance runs on both sides meanwhile.
        nodes.clock.advance(days=RETENTION_DAYS - 1)
        assert (await prune(parent))["inbox"] == 0
        during = await _bench(parent, child, 40)
        child = await nodes.start_child()
        assert (await prune(child))["inbox"] == 0  # received 9 days ago: still remembered

        await until(lambda: _drained(parent, child), "the backlog acked after reconnect")
        executed = await child.store.read(_executed)
        assert executed == before + during  # each once, in sending order: the resends were duplicates
        assert child.bench.received == len(during)  # this process ran only the new ones
        assert child.sessions[parent.me].stats.duplicates == len(before)  # … though all 30 came again
        states = await parent.store.read(
            lambda c: c.execute(
                select(outbox.c.state, func.count()).where(outbox.c.next_hop == "豫14").group_by(outbox.c.state)
            ).all()
        )
        assert dict(states) == {"delivered": len(before) + len(during)}


async def test_outage_longer_than_the_retention_ends_in_refusals_not_loss_or_repeats(tmp_path: Path) -> None:
    async with pair(tmp_path) as nodes:
        parent, child = nodes.running()
        executed_before = await _bench(parent, child, 30)
        await until(lambda: _drained(parent, child), "the first envelopes acked")
        await nodes.stop_child()
        await _lose_acks(parent, executed_before)
        # Queued at the start of the outage and never delivered: a directive (with a receipt
        # expected) and bench envelopes.
        directive, _ = await parent.directives.send(child.me, False, "停电期间的指令", "长时间离线后应被拒收")
        never_delivered = await _bench(parent, child, 20)

        nodes.clock.advance(days=RETENTION_DAYS + 2)
        fresh = await _bench(parent, child, 10)  # queued after the retention, still in the outage
        child = await nodes.start_child()  # its maintenance prunes on start; once more here
        await prune(child)
        remembered = await child.store.read(count(inbox, inbox.c.envelope_id.in_(executed_before)))
        assert remembered == 0  # the dedupe ids of the 30 are forgotten: only their age protects now

        await until(lambda: _drained(parent, child), "the backlog settled after reconnect")
        old = [*executed_before, directive, *never_delivered]
        # Nothing ran twice and nothing stale ran: the child executed the 30 once, then only the fresh.
        assert await child.store.read(_executed) == executed_before + fresh
        # Every old envelope was refused with the clear reason, audited at the child …
        refused = await child.store.read(
            lambda c: {
                r.envelope_id: json.loads(r.detail)["reason"]
                for r in c.execute(select(audit.c.envelope_id, audit.c.detail).where(audit.c.action == "rejected"))
            }
        )
        assert refused == dict.fromkeys(old, "stale_envelope")
        # … and marked rejected at the sender, with the reason; the directive's receipt row too.
        rows = await parent.store.read(
            lambda c: c.execute(
                select(outbox.c.envelope_id, outbox.c.state, outbox.c.reason).where(outbox.c.next_hop == "豫14")
            ).all()
        )
        by_id = {r.envelope_id: r for r in rows}
        for eid in old:
            assert by_id[eid].state == "rejected" and by_id[eid].reason.startswith("stale_envelope:")
        assert {by_id[eid].state for eid in fresh} == {"delivered"}
        delivery = await parent.store.read(
            lambda c: c.execute(
                select(deliveries.c.state, deliveries.c.reason).where(deliveries.c.envelope_id == directive)
            ).one()
        )
        assert delivery.state == "rejected" and delivery.reason.startswith("stale_envelope:")
        peer_audit = await parent.store.read(count(audit, audit.c.action == "rejected_by_peer"))
        assert peer_audit == len(old)


async def test_stale_envelope_the_inbox_still_remembers_is_acked_as_a_duplicate(tmp_path: Path) -> None:
    """Queued for almost the whole retention, delivered, ack lost, resent after it got too old:
    the child still remembers the id (received recently), so it acks a duplicate instead of
    refusing it — the sender records it delivered, and it ran once."""
    async with pair(tmp_path) as nodes:
        parent, child = nodes.running()
        await nodes.stop_child()
        late = await _bench(parent, child, 25)
        nodes.clock.advance(days=RETENTION_DAYS - 1)  # a long outage, still inside the retention
        child = await nodes.start_child()
        await until(lambda: _drained(parent, child), "the late envelopes delivered")
        await nodes.stop_child()
        await _lose_acks(parent, late)

        nodes.clock.advance(days=2)  # now older than the retention, but received only 2 days ago
        child = await nodes.start_child()
        assert (await prune(child))["inbox"] == 0
        await until(lambda: _drained(parent, child), "the resends acked")

        assert await child.store.read(_executed) == late  # once each
        assert child.sessions[parent.me].stats.duplicates == len(late)
        rejected = await child.store.read(count(audit, audit.c.action == "rejected"))
        assert rejected == 0
        states: dict[str, int] = await parent.store.read(
            lambda c: dict(c.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state)).all())
        )
        assert states == {"delivered": len(late)}
