"""What a receiving node does when a handler's database write fails (hub.federation.exchange).

A failure of the *content* (the database refuses the values: a constraint, a NUL on PostgreSQL)
is final: that one envelope is refused with ``unstorable`` and audited, the rest of the batch and
the link go on; so is a bug in the handler (``handler_failed``). A failure of the *store itself*
(disk, connection, lock) is transient: the batch is not acked, so the sender resends it.
"""

from __future__ import annotations

import json
from pathlib import Path

from inproc import count, inproc_tree
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError

from hub.federation.exchange import Delivery
from hub.localtree import NodeSpec
from hub.store.schema import audit, children, outbox

SPECS = [NodeSpec("豫", "河南省高级人民法院"), NodeSpec("豫14", "商丘市中级人民法院", "豫")]


async def test_handler_database_errors_refuse_content_and_retry_the_store(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS) as tree:
        parent, child = tree["豫"], tree["豫14"]
        calls: list[int] = []

        def handler(delivery: Delivery) -> None:
            calls.append(len(calls))
            if len(calls) == 2:  # the content: a row the schema forbids (duplicate primary key)
                row = {"court": "豫", "name": "重复", "serial": "x", "enrolled_at_ms": 1}
                delivery.conn.execute(insert(children).values(**row))
                delivery.conn.execute(insert(children).values(**row))
            if len(calls) == 3:  # a bug in the handler
                raise KeyError("no such field")
            if len(calls) == 4:  # the store: fails once, as a locked or full database would
                raise OperationalError("INSERT …", {}, Exception("database is locked"))

        child.exchange.handle("bench", handler, writes=True)

        async def send_one() -> None:
            await parent.bench.emit({"count": 1, "size": 16, "to": "豫14", "wait": True})

        for _ in range(4):
            await send_one()

        async def settled() -> bool:
            rows: dict[str, int] = await parent.store.read(
                lambda c: dict(
                    c.execute(
                        select(outbox.c.state, func.count()).where(outbox.c.next_hop == "豫14").group_by(outbox.c.state)
                    ).all()
                )
            )
            return rows.get("pending", 0) == 0 and sum(rows.values()) == 4

        await tree.settle(settled, 30)
        # Every envelope reached the child and was acked (the fourth on its resend after the
        # transient failure): the link was never blocked.
        states = await parent.store.read(
            lambda c: c.execute(select(outbox.c.state).where(outbox.c.next_hop == "豫14")).scalars().all()
        )
        assert states == ["delivered"] * 4
        assert len(calls) == 5  # the fourth envelope was handled twice: failed, then resent and done
        # The second and third were refused for good at the child, each audited with its reason.
        refused = await child.store.read(
            lambda c: (
                c.execute(select(audit.c.detail).where(audit.c.action == "rejected").order_by(audit.c.seq))
                .scalars()
                .all()
            )
        )
        reasons = [json.loads(d) for d in refused]
        assert [(r["reason"], r["message"]) for r in reasons] == [
            ("unstorable", "the store refused its content (IntegrityError)"),
            ("handler_failed", "bench handler failed: KeyError"),
        ]
        executed = await child.store.read(count(audit, audit.c.action == "received", audit.c.kind == "bench"))
        assert executed == 2
        # The forbidden write was undone with its savepoint: only the node's real child row is there.
        names = await child.store.read(lambda c: c.execute(select(children.c.name)).scalars().all())
        assert "重复" not in names
