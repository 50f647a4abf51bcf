"""Background upkeep of a running node: chain heads to the parent, pruning by retention."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete

from hub.audit import head
from hub.clock import FixedClock
from hub.federation.envelope import Target
from hub.federation.exchange import Delivery
from hub.proto.courthub.v1 import payloads_pb2 as ppb
from hub.store.schema import chain_heads, inbox, outbox

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)
DAY_MS = 86_400_000


WORKFLOW_TICK_S = 30.0


def maintenance_tasks(node: Node) -> list[asyncio.Task[Any]]:
    tasks = [asyncio.create_task(_prune_loop(node), name="prune")]
    if not isinstance(node.clock, FixedClock):  # a test holding the clock ticks by hand
        tasks.append(asyncio.create_task(workflow_tick_loop(node), name="workflow-tick"))
    if node.router.parent is not None:
        tasks.append(asyncio.create_task(_chain_head_loop(node), name="chain-head"))
    return tasks


async def send_chain_head(node: Node) -> str:
    seq, digest = await node.store.read(head)
    payload = ppb.ChainHeadPayload(seq=seq, hash=digest, at_ms=node.clock.now_ms())
    assert node.router.parent is not None
    eid, _ = await node.exchange.originate("chain_head", Target.to_court(node.router.parent), payload)
    return eid


async def _chain_head_loop(node: Node) -> None:
    while True:
        await asyncio.sleep(node.config.federation.chain_head_interval_s)
        try:
            await send_chain_head(node)
        except Exception as exc:
            log.warning("chain head not sent: %s", exc)


def record_chain_head(delivery: Delivery) -> None:
    """A child's signed audit chain head: keep the latest, refuse one that goes backwards."""
    p = delivery.payload
    assert isinstance(p, ppb.ChainHeadPayload)
    court = str(delivery.opened.origin)
    conn = delivery.conn
    row = conn.execute(chain_heads.select().where(chain_heads.c.court == court)).first()
    if row is not None and row.seq > p.seq:
        delivery.event("audit.chain_regressed", {"court": court, "had": row.seq, "got": p.seq})
        log.warning("chain head of %s went backwards (%s → %s): history rewritten?", court, row.seq, p.seq)
    values = {"seq": p.seq, "hash": p.hash, "at_ms": p.at_ms, "envelope_id": delivery.opened.id}
    if row is None:
        conn.execute(chain_heads.insert().values(court=court, **values))
    else:
        conn.execute(chain_heads.update().where(chain_heads.c.court == court).values(**values))


async def workflow_tick_loop(node: Node) -> None:
    """Every workflow's automatic steps (催报, escalation, lapses …) whose deadline has passed."""
    while True:
        await asyncio.sleep(WORKFLOW_TICK_S)
        try:
            await node.workflows.tick()
        except Exception as exc:  # keep ticking: one bad pass must not end automatic steps
            log.warning("workflow tick failed: %s", exc)


async def prune(node: Node) -> dict[str, int]:
    """Forget what the retentions allow forgetting; returns the rows dropped per table.

    * inbox ids older than ``dedupe_retention_days``: past that age a resent envelope is refused as
      ``stale_envelope`` by the exchange, so the id is no longer needed to refuse it as a duplicate
      (docs/outages.md: the longest outage survived without refusals is this retention);
    * outbox rows settled (delivered or rejected) longer ago than ``delivered_retention_days``.
      Pending rows are never pruned, however old: they are the backlog of an offline neighbour.
    """
    fed = node.config.federation
    now = node.clock.now_ms()

    def work(conn: Connection) -> dict[str, int]:
        ids = conn.execute(delete(inbox).where(inbox.c.received_at_ms < now - fed.dedupe_retention_days * DAY_MS))
        rows = conn.execute(
            delete(outbox).where(
                outbox.c.state != "pending", outbox.c.done_at_ms < now - fed.delivered_retention_days * DAY_MS
            )
        )
        return {"inbox": int(ids.rowcount), "outbox": int(rows.rowcount)}

    return await node.store.write(work)


async def _prune_loop(node: Node) -> None:
    while True:
        try:
            dropped = await prune(node)
            if any(dropped.values()):
                log.info("pruned %d inbox ids and %d settled outbox rows", dropped["inbox"], dropped["outbox"])
        except Exception as exc:
            log.warning("pruning failed: %s", exc)
        await asyncio.sleep(3600)
