"""Directives (指令): an upper court's instruction to one court or a whole subtree.

Sending writes the directive and its outbox rows in one transaction; each recipient stores it once
(the inbox dedupes retries) and returns a signed receipt; the sender lists per-recipient state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select

from hub.clock import iso
from hub.codes import CourtCode
from hub.errors import AuthorityError, InvalidInput
from hub.federation.envelope import Target
from hub.federation.exchange import Delivery, Tx
from hub.proto.courthub.v1 import payloads_pb2 as ppb
from hub.store.schema import deliveries, directives
from hub.text import control_character
from hub.trust import below

if TYPE_CHECKING:
    from hub.node import Node

LEVELS = ("routine", "urgent", "emergency_1", "emergency_2", "emergency_3", "emergency_4")
LEVEL_NAMES = {
    "routine": "常规",
    "urgent": "紧急",
    "emergency_1": "Ⅰ级",
    "emergency_2": "Ⅱ级",
    "emergency_3": "Ⅲ级",
    "emergency_4": "Ⅳ级",
}
MAX_TITLE = 200
MAX_BODY = 100_000


def validate(title: str, body: str, level: str) -> None:
    if not title.strip() or len(title) > MAX_TITLE:
        raise InvalidInput(f"directive title must be 1–{MAX_TITLE} characters")
    if len(body) > MAX_BODY:
        raise InvalidInput(f"directive body is {len(body)} characters; the limit is {MAX_BODY}")
    if level not in LEVELS:
        raise InvalidInput(f"directive level {level!r} must be one of {', '.join(LEVELS)}")
    for field, text, multiline in (("title", title, False), ("body", body, True)):
        if bad := control_character(text, multiline=multiline):
            raise InvalidInput(f"directive {field} contains a control character ({bad})")


class Directives:
    def __init__(self, node: Node) -> None:
        self.node = node
        node.exchange.handle("directive", self._on_directive)
        self.on_sent: Any = lambda *_: None  # (tx, id, payload, recipients) when sent: hub.workflows.directive_flow

    async def send(
        self, to: CourtCode, subtree: bool, title: str, body: str, level: str = "routine", feedback_due_ms: int = 0
    ) -> tuple[str, list[str]]:
        me = self.node.me
        validate(title, body, level)
        # A subtree broadcast may start at this court itself (every court below it receives it).
        allowed = to.is_within(me) if subtree else below(to, me)
        if not allowed:
            raise AuthorityError(
                f"{me} may send directives only to courts below it; {to} is not", reason="wrong_direction"
            )
        target = Target.to_subtree(to) if subtree else Target.to_court(to)
        recipients = [str(c) for c in self.node.exchange.recipients(target)]
        payload = ppb.DirectivePayload(title=title, body=body, level=level, feedback_due_ms=feedback_due_ms)

        def record(tx: Tx, eid: str) -> None:
            tx.conn.execute(
                insert(directives).values(
                    envelope_id=eid,
                    direction="sent",
                    origin=str(me),
                    target=str(to),
                    subtree=subtree,
                    title=title,
                    body=body,
                    level=level,
                    feedback_due_ms=feedback_due_ms or None,
                    created_at_ms=tx.now_ms,
                )
            )
            self.on_sent(tx, eid, payload, recipients)

        eid, _ = await self.node.exchange.originate("directive", target, payload, extra=record)
        return eid, recipients

    def _on_directive(self, delivery: Delivery) -> None:
        d = delivery.payload
        assert isinstance(d, ppb.DirectivePayload)
        validate(d.title, d.body, d.level)
        header = delivery.opened.header
        target = delivery.opened.target
        delivery.conn.execute(
            insert(directives).values(
                envelope_id=header.id,
                direction="received",
                origin=header.origin,
                target=str(target.court),
                subtree=target.mode == "subtree",
                title=d.title,
                body=d.body,
                level=d.level,
                feedback_due_ms=d.feedback_due_ms or None,
                created_at_ms=header.created_at_ms,
                received_at_ms=delivery.now_ms,
            )
        )
        delivery.event("directive.received", {"id": header.id, "origin": header.origin, "title": d.title})


def list_directives(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(select(directives).order_by(directives.c.created_at_ms.desc()).limit(limit)).all()
    sent = [r.envelope_id for r in rows if r.direction == "sent"]
    states: dict[str, list[dict[str, Any]]] = {}
    if sent:
        for d in conn.execute(select(deliveries).where(deliveries.c.envelope_id.in_(sent))).all():
            states.setdefault(d.envelope_id, []).append(
                {
                    "court": d.recipient,
                    "state": d.state,
                    "receipt_at": iso(d.receipt_at_ms) if d.receipt_at_ms else None,
                    "reason": d.reason,
                }
            )
    out = []
    for r in rows:
        item: dict[str, Any] = {
            "id": r.envelope_id,
            "direction": r.direction,
            "origin": r.origin,
            "to": r.target,
            "subtree": r.subtree,
            "title": r.title,
            "level": r.level,
            "created_at": iso(r.created_at_ms),
            "received_at": iso(r.received_at_ms) if r.received_at_ms else None,
        }
        if r.direction == "sent":
            recips = sorted(states.get(r.envelope_id, []), key=lambda x: x["court"])
            item["recipients"] = recips
            item["delivered"] = sum(1 for x in recips if x["state"] == "delivered")
        out.append(item)
    return out
