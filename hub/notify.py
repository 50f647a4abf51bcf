"""Notifications (12368-style SMS to judges and parties) for workflow events.

Every workflow transition is a committed row of ``workflow_events``. The dispatcher follows that
table with a cursor kept in ``node_meta``: for each new event it builds the notifications the event
calls for, offers each to every notification plugin (``courthub_notify`` through the node's plugin
host, :meth:`hub.plugins.host.PluginHost.notify`), and records it with the built-in **log
notifier** — a line in the node's log and an audit entry ``notification`` (text, recipients with
masked numbers, which plugins took it, which failed) — then moves the cursor, in one transaction.

So no event is missed (a crash before the cursor moves repeats the batch) and the gateway can drop
repeats: a notification's id is derived from the event and is the same on every attempt. A
notification some plugin failed to take is offered again later (after 1, 2, 3 … minutes of the
node's clock, at most 5 attempts; audit entries ``notification.retried`` / ``notification.failed``).

Who is told what:

* **the court** — when the other side of an item acts (a new directive, supervision letter,
  report, request or petition arrives; a reminder 催报, an answer, an instruction comes back):
  the court's current duty officer (:mod:`hub.workflows.duty`), else the command center's contact
  (``[agency] judge_name``/``judge_phone``). Steps this court took itself are not echoed to it.
* **parties** — steps listed in :data:`PARTY_TEXTS` (e.g. a petition's reply, 信访答复) are also
  sent to the people named in the item's ``notify`` data (name, phone), by the court that took
  the step only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, update

from hub.audit import AuditLog
from hub.clock import iso
from hub.codes import CaseNumber
from hub.plugins.models import InvalidModel, Notification, Recipient
from hub.store.schema import audit, node_meta
from hub.workflows.duty import current as current_duty
from hub.workflows.schema import workflow_events, workflow_items

if TYPE_CHECKING:
    from hub.node import Node
    from hub.plugins.host import CallOutcome

log = logging.getLogger(__name__)

CURSOR_KEY = "notify.cursor"
RETRY_KEY = "notify.retry"  # notifications a plugin failed to take: offered again, with backoff
MAX_ATTEMPTS = 5
RETRY_AFTER_MS = 60_000  # × the attempts so far
POLL_S = 0.5
BATCH = 100
MAX_TEXT = 1000

#: Steps whose parties (``data.notify``: name, phone) get an SMS from the court taking the step.
PARTY_TEXTS: dict[tuple[str, str], str] = {
    ("petition", "reply"): "您反映的信访事项「{title}」已由{court_name}办理答复：{text}",
    ("petition", "close"): "您反映的信访事项「{title}」已办结。",
}


@dataclass(frozen=True)
class Pending:
    notification: Notification
    event: str  # workflow.action
    item_id: str
    audience: str  # court | party


def _masked(phone: str) -> str:
    digits = phone.strip()
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 8 else "*" * len(digits)


def _case(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return str(CaseNumber.parse(text))
    except Exception:
        return None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


class Notifier:
    """The dispatcher of one node (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._lock = asyncio.Lock()

    # -- building --------------------------------------------------------------------------------
    def _court_recipients(self, conn: Connection, now: int) -> list[Recipient]:
        duty = current_duty(conn, now)
        if duty and duty.get("phone"):
            try:
                return [Recipient(duty["officer"], duty["phone"], "other")]
            except InvalidModel:
                pass
        agency = self.node.config.agency
        if agency.judge_phone:
            try:
                return [Recipient(agency.judge_name, agency.judge_phone, "judge")]
            except InvalidModel:
                return []
        return []

    def _court_text(self, e: Any, item: Any) -> str:
        spec = self.node.workflows.specs.get(item.workflow)
        label = spec.label if spec else item.workflow
        if e.action == "create":
            what = f"收到{label}"
        else:
            step = next((s for s in spec.steps if s.action == e.action), None) if spec else None
            what = f"{label}{(step.label if step and step.label else e.action)}"
        data = json.loads(e.data)
        text = str(data.get("text") or data.get("reason") or "")
        auto = "（自动）" if data.get("auto") else ""
        tail = f"：{text}" if text else ""
        by = str(data.get("by") or "")
        source = f"来自{by}（经{e.actor}转）" if data.get("relayed") and by and by != e.actor else f"来自{e.actor}"
        return _clip(f"【执行指挥中心】{what}{auto}「{item.title}」，{source}{tail}")

    def build(self, conn: Connection, rows: list[Any], now: int) -> list[Pending]:
        me = str(self.node.me)
        court = self._court_recipients(conn, now)
        out: list[Pending] = []
        for e, item in rows:
            event = f"{item.workflow}.{e.action}"
            base = hashlib.sha256(f"{me}|{e.item_id}|{e.party}|{e.id}".encode()).hexdigest()[:24]
            case = _case(item.case_number)
            if e.actor != me:
                out.append(
                    Pending(
                        Notification(
                            f"wf-{base}-c", tuple(court) or _NOBODY, self._court_text(e, item), case, "sms", now
                        ),
                        event,
                        e.item_id,
                        "court",
                    )
                )
            template = PARTY_TEXTS.get((item.workflow, e.action))
            if template and e.actor == me:
                people = self._parties(json.loads(item.data))
                if people:
                    data = json.loads(e.data)
                    text = template.format(
                        title=item.title, court_name=self.node.config.node.name, text=str(data.get("text", ""))
                    )
                    out.append(
                        Pending(
                            Notification(f"wf-{base}-p", tuple(people), _clip(text), case, "sms", now),
                            event,
                            e.item_id,
                            "party",
                        )
                    )
        return out

    @staticmethod
    def _parties(data: dict[str, Any]) -> list[Recipient]:
        people = []
        for p in data.get("notify") or []:
            try:
                people.append(Recipient.parse(p))
            except (InvalidModel, TypeError):
                continue
        return people

    # -- dispatching -----------------------------------------------------------------------------
    async def dispatch(self) -> list[dict[str, Any]]:
        """Notify for every workflow event after the cursor; returns what was recorded."""
        async with self._lock:
            return await self._dispatch()

    async def _dispatch(self) -> list[dict[str, Any]]:
        node = self.node
        now = node.clock.now_ms()

        def read(conn: Connection) -> tuple[int | None, list[Pending], int]:
            raw = conn.execute(select(node_meta.c.value).where(node_meta.c.key == CURSOR_KEY)).scalar()
            if raw is None:
                top = conn.execute(select(func.coalesce(func.max(workflow_events.c.id), 0))).scalar_one()
                return None, [], int(top)
            cursor = int(raw)
            evs = conn.execute(
                select(workflow_events).where(workflow_events.c.id > cursor).order_by(workflow_events.c.id).limit(BATCH)
            ).all()
            if not evs:
                return cursor, [], cursor
            items = {
                (r.item_id, r.party): r
                for r in conn.execute(
                    select(workflow_items).where(workflow_items.c.item_id.in_({e.item_id for e in evs}))
                ).all()
            }
            pairs = [(e, items[(e.item_id, e.party)]) for e in evs if (e.item_id, e.party) in items]
            return cursor, self.build(conn, pairs, now), int(evs[-1].id)

        cursor, pending, last = await node.store.read(read)
        if cursor is None:
            # First start: begin after what already happened (no flood of old news).
            await node.store.write(lambda c: _set_cursor(c, last))
            return []
        retry: list[dict[str, Any]] = await node.store.read(lambda c: _get_json(c, RETRY_KEY) or [])
        due = [r for r in retry if int(r["next_at_ms"]) <= now]
        if last == cursor and not due:
            return []
        entries: list[tuple[str, dict[str, Any]]] = []
        records = []
        keep = [r for r in retry if int(r["next_at_ms"]) > now]
        for p in pending:
            outcomes = await self._offer(p)
            rec = self._record(p, outcomes)
            records.append(rec)
            entries.append(("notification", rec))
            if rec["failed"]:
                keep.append(_retry_entry(p, 1, now))
        for r in due:
            p = Pending(Notification.from_dict(r["notification"]), r["event"], r["item_id"], r["audience"])
            outcomes = await self._offer(p)
            rec = {**self._record(p, outcomes), "attempt": int(r["attempts"]) + 1}
            if not rec["failed"]:
                entries.append(("notification.retried", rec))
            elif rec["attempt"] >= MAX_ATTEMPTS:
                entries.append(("notification.failed", rec))
            else:
                entries.append(("notification.retried", rec))
                keep.append(_retry_entry(p, rec["attempt"], now))

        def write(conn: Connection) -> None:
            entry = AuditLog(conn)
            for action, rec in entries:
                entry.append(action, now, detail=rec)
            entry.flush()
            _set_cursor(conn, last)
            _put_json(conn, RETRY_KEY, keep)

        await node.store.write(write)
        for action, rec in entries:
            log.info(
                "通知 %s %s (%s) → %s: %s%s",
                action,
                rec["id"],
                rec["event"],
                ", ".join(f"{r['name']} {r['phone']}" for r in rec["recipients"]) or "nobody (log only)",
                rec["text"],
                f" [failed: {', '.join(rec['failed'])}]" if rec["failed"] else "",
            )
        return records

    async def _offer(self, p: Pending) -> list[CallOutcome[None]]:
        if p.notification.recipients == _NOBODY:
            return []
        host = getattr(getattr(self.node, "agency", None), "host", None)
        if host is None:
            return []
        outcomes: list[CallOutcome[None]] = await host.notify(p.notification)
        return outcomes

    def _record(self, p: Pending, outcomes: list[CallOutcome[None]]) -> dict[str, Any]:
        n = p.notification
        recipients = [] if n.recipients == _NOBODY else n.recipients
        return {
            "id": n.notification_id,
            "event": p.event,
            "item_id": p.item_id,
            "audience": p.audience,
            "text": n.text,
            "case_number": n.case_number,
            "recipients": [{"name": r.name, "phone": _masked(r.phone), "role": r.role} for r in recipients],
            "channels": ["log", *(o.plugin for o in outcomes if o.failure is None)],
            "failed": {o.plugin: str(o.failure) for o in outcomes if o.failure is not None},
        }

    async def run(self) -> None:
        while True:
            try:
                await self.dispatch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep notifying: one bad pass must not end notifications
                log.warning("notification dispatch failed: %s", exc)
            await asyncio.sleep(POLL_S)


# A placeholder so that a Notification (which needs one recipient) can be built when the court
# has no number on file: such notifications are only logged.
_NOBODY: tuple[Recipient, ...] = (Recipient("（无）", "000000", "other"),)


def _set_cursor(conn: Connection, value: int) -> None:
    _put(conn, CURSOR_KEY, str(value))


def _put(conn: Connection, key: str, text: str) -> None:
    if conn.execute(update(node_meta).where(node_meta.c.key == key).values(value=text)).rowcount == 0:
        conn.execute(insert(node_meta).values(key=key, value=text))


def _get_json(conn: Connection, key: str) -> Any:
    raw = conn.execute(select(node_meta.c.value).where(node_meta.c.key == key)).scalar()
    return json.loads(raw) if raw else None


def _put_json(conn: Connection, key: str, value: Any) -> None:
    _put(conn, key, json.dumps(value, ensure_ascii=False))


def _retry_entry(p: Pending, attempts: int, now: int) -> dict[str, Any]:
    return {
        "notification": p.notification.to_dict(),
        "event": p.event,
        "item_id": p.item_id,
        "audience": p.audience,
        "attempts": attempts,
        "next_at_ms": now + RETRY_AFTER_MS * attempts,
    }


def recorded(conn: Connection, limit: int = 100, item_id: str | None = None) -> list[dict[str, Any]]:
    """The notifications this node recorded, newest first."""
    rows = conn.execute(
        select(audit.c.seq, audit.c.at_ms, audit.c.action, audit.c.detail)
        .where(audit.c.action.in_(("notification", "notification.retried", "notification.failed")))
        .order_by(audit.c.seq.desc())
        .limit(limit if item_id is None else 5000)
    ).all()
    out = [{"seq": r.seq, "at": iso(r.at_ms), "action": r.action, **json.loads(r.detail)} for r in rows]
    if item_id is not None:
        out = [r for r in out if r.get("item_id") == item_id][:limit]
    return out


_NOTIFIERS: weakref.WeakKeyDictionary[Node, Notifier] = weakref.WeakKeyDictionary()


def notifier(node: Node) -> Notifier:
    found = _NOTIFIERS.get(node)
    if found is None:
        found = _NOTIFIERS[node] = Notifier(node)
    return found


def setup(node: Node) -> None:
    """Start the dispatcher and add the admin operations ``notify.list`` and ``notify.dispatch``."""
    n = notifier(node)
    node.spawn(n.run(), "notify")

    async def op_list(args: dict[str, Any]) -> Any:
        limit = max(1, min(1000, int(args.get("limit", 100))))
        item = str(args["item_id"]) if args.get("item_id") else None
        return await node.store.read(lambda c: recorded(c, limit, item))

    async def op_dispatch(args: dict[str, Any]) -> Any:
        return await n.dispatch()

    node.admin.register("notify.list", op_list)
    node.admin.register("notify.dispatch", op_dispatch)
