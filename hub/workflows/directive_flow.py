"""Directives (指令), completed: per-recipient workflow, feedback, 催报, reconsideration (DESIGN.md §3).

A directive is still one sealed ``directive`` envelope to a court or a whole subtree
(:mod:`hub.workflows.directives`). Each (directive, recipient) pair is also a workflow item of the
``directive`` spec whose id is the directive's envelope id:

* the issuer opens one row per expected recipient **in the transaction that sends the directive**;
* each recipient opens its row **in the transaction that delivers it**, assigning urgent and
  emergency directives to the court's current duty officer (值班, :mod:`hub.workflows.duty`).

From then on the recipient's steps travel as ``workflow`` envelopes and the issuer's table shows,
per court, delivered (signed receipt) → read (签收) → answered (反馈, text and attachments by
digest), overdue, reminders, reconsideration.

Rules (each with a test that names it):

* **feedback deadline** — the directive's own, else by level: routine 10 days, urgent 3 days,
  emergency Ⅰ 2 h, Ⅱ 6 h, Ⅲ 12 h, Ⅳ 24 h after sending;
* **overdue → 催报** — when the deadline passes unanswered the issuer reminds automatically, once
  (further reminders by hand);
* **reconsideration (申请复议) within 5 days of delivery** — refused afterwards, naming the rule; the
  issuer upholds (维持, with a new feedback deadline) or withdraws (撤回) the directive.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from hub.clock import iso
from hub.codes import CourtCode
from hub.errors import AuthorityError, InvalidInput, NotFound
from hub.federation.exchange import Delivery, Handler, Tx
from hub.proto.courthub.v1 import payloads_pb2 as ppb
from hub.proto.courthub.v1 import workflow_pb2 as wpb
from hub.store.schema import deliveries, directives
from hub.workflows import duty
from hub.workflows.directives import LEVEL_NAMES, LEVELS
from hub.workflows.engine import (
    DAY_MS,
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS_BYTES,
    Data,
    Overdue,
    Relation,
    Step,
    WorkflowSpec,
    WorkflowTx,
    clear,
    make_attachment,
)
from hub.workflows.schema import attachments
from hub.workflows.txsteps import (
    RuleError,
    events,
    item_rows,
    one_row,
    open_local,
    refusals_audited,
    row_state,
    tick_workflows,
)

if TYPE_CHECKING:
    from hub.node import Node

HOUR_MS = 3_600_000
#: Feedback window by level when the directive names no deadline.
FEEDBACK_WINDOW_MS = {
    "routine": 10 * DAY_MS,
    "urgent": 3 * DAY_MS,
    "emergency_1": 2 * HOUR_MS,
    "emergency_2": 6 * HOUR_MS,
    "emergency_3": 12 * HOUR_MS,
    "emergency_4": 24 * HOUR_MS,
}
RECONSIDER_WINDOW_MS = 5 * DAY_MS
MAX_FILES = 10
MAX_TEXT = 20_000
OPEN = frozenset({"delivered", "read", "reminded", "upheld"})
FINAL = frozenset({"answered", "withdrawn"})


def feedback_due(created_at_ms: int, level: str, explicit_ms: int = 0) -> int:
    return explicit_ms or created_at_ms + FEEDBACK_WINDOW_MS.get(level, FEEDBACK_WINDOW_MS["routine"])


# -- checks (run identically at both ends) -----------------------------------------------------------


def _text(data: Data, key: str, what: str, *, required: bool = True) -> str:
    text = str(data.get(key) or "").strip()
    if required and not text:
        raise InvalidInput(f"directive {what}: {key} is required")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"directive {what}: {key} is {len(text)} characters; the limit is {MAX_TEXT}")
    return text


def _by(data: Data) -> dict[str, Any]:
    by = str(data.get("by") or "").strip()
    if len(by) > 50:
        raise InvalidInput("directive: 'by' (the officer) is at most 50 characters")
    return {"by": by} if by else {}


def _read(data: Data) -> Data:
    return _by(data)


def _answer(data: Data) -> Data:
    files = data.get("files") or []
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise InvalidInput(f"directive feedback: at most {MAX_FILES} attachments")
    listed = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("sha256"), str) or len(f["sha256"]) != 64:
            raise InvalidInput("directive feedback: each attachment is listed by name, sha256 and size")
        listed.append({"name": str(f.get("name", ""))[:120], "sha256": f["sha256"], "size": int(f.get("size", 0))})
    return {"text": _text(data, "text", "feedback"), "files": listed, **_by(data)}


def _remind(data: Data) -> Data:
    out: Data = {"text": _text(data, "text", "reminder", required=False)}
    if isinstance(data.get("overdue_since_ms"), int):
        out["overdue_since_ms"] = data["overdue_since_ms"]
    return out


def _reconsider(data: Data) -> Data:
    out: Data = {"reason": _text(data, "reason", "reconsideration"), **_by(data)}
    if isinstance(data.get("requested_at_ms"), int):
        out["requested_at_ms"] = data["requested_at_ms"]
    return out


def _uphold(data: Data) -> Data:
    due = data.get("feedback_due_ms")
    if not isinstance(due, int) or due <= 0:
        raise InvalidInput("directive uphold: feedback_due_ms (the new feedback deadline) is required")
    return {"reason": _text(data, "reason", "decision"), "feedback_due_ms": due}


def _withdraw(data: Data) -> Data:
    return {"reason": _text(data, "reason", "withdrawal")}


def _reconsider_window(w: WorkflowTx) -> None:
    """Rule 复议期限: a reconsideration is requested within 5 days of delivery."""
    row = w.row
    if w.local:  # the recipient: its row was opened when the directive was delivered
        delivered, asked = int(row["created_at_ms"]), w.tx.now_ms
    else:  # the issuer: delivery time from the recipient's signed receipt
        receipt = w.tx.conn.execute(
            select(deliveries.c.receipt_at_ms).where(
                deliveries.c.envelope_id == row["item_id"],
                deliveries.c.recipient == row["party"],
                deliveries.c.state == "delivered",
            )
        ).scalar()
        delivered = int(receipt or row["created_at_ms"])
        claimed = w.data.get("requested_at_ms")
        asked = min(int(claimed), w.tx.now_ms) if isinstance(claimed, int) else w.tx.now_ms
    closes = delivered + RECONSIDER_WINDOW_MS
    if asked > closes:
        raise RuleError(
            f"rule 复议期限 (reconsideration within 5 days of delivery): {row['party']} received directive "
            f"{row['item_id'][:12]} at {iso(delivered)}; the window closed at {iso(closes)}",
            reason="reconsideration_window_closed",
        )


SPEC = WorkflowSpec(
    name="directive",
    label="指令",
    relation=Relation.DOWNWARD,
    initial="delivered",
    steps=(
        Step("read", frozenset({"delivered"}), "read", "party", None, _read, "签收"),
        Step("answer", OPEN, "answered", "party", clear(), _answer, "反馈"),
        Step(
            "remind",
            frozenset({"delivered", "read", "reminded", "upheld"}),
            "reminded",
            "issuer",
            None,
            _remind,
            "催报",
        ),
        Step(
            "reconsider",
            frozenset({"delivered", "read", "reminded"}),
            "reconsidering",
            "party",
            clear(),
            _reconsider,
            "申请复议",
        ),
        Step(
            "uphold",
            frozenset({"reconsidering"}),
            "upheld",
            "issuer",
            lambda _n, d: int(d["feedback_due_ms"]),
            _uphold,
            "维持原指令",
        ),
        Step("withdraw", OPEN | {"reconsidering"}, "withdrawn", "issuer", clear(), _withdraw, "撤回指令"),
    ),
    overdue=(Overdue("delivered", "remind"), Overdue("read", "remind"), Overdue("upheld", "remind")),
    effects={"reconsider": _reconsider_window},
)


# -- opening the rows with the directive -------------------------------------------------------------


def _on_sent(node: Node) -> Callable[[Tx, str, ppb.DirectivePayload, list[str]], None]:
    def opened(tx: Tx, eid: str, payload: ppb.DirectivePayload, recipients: list[str]) -> None:
        due = feedback_due(tx.now_ms, payload.level, payload.feedback_due_ms)
        data = {"level": payload.level, "feedback_due_ms": due}
        for court in recipients:
            open_local(
                tx,
                node.workflows,
                SPEC,
                eid,
                CourtCode.parse(court),
                "issuer",
                payload.title,
                data,
                due,
                eid,
                str(node.me),
            )

    return opened


def _on_delivered(node: Node, deliver: Handler) -> Handler:
    def handle(delivery: Delivery) -> None:
        deliver(delivery)
        p = delivery.payload
        assert isinstance(p, ppb.DirectivePayload)
        header = delivery.opened.header
        if delivery.opened.origin == node.me:
            return
        due = feedback_due(header.created_at_ms, p.level, p.feedback_due_ms)
        data: Data = {"level": p.level, "feedback_due_ms": due}
        if p.level != "routine":
            officer = duty.current(delivery.conn, delivery.now_ms)
            if officer is not None:
                # The default recipient of an urgent directive: the court's duty officer now.
                data["assignee"] = {"officer": officer["officer"], "phone": officer["phone"], "source": "duty"}
        open_local(
            delivery.tx,
            node.workflows,
            SPEC,
            header.id,
            node.me,
            "party",
            p.title,
            data,
            due,
            header.id,
            header.origin,
            local=False,
        )

    return handle


def _late_recipient(node: Node, deliver: Handler) -> Handler:
    """A court that joined a subtree after a directive was sent to it still gets an issuer row the
    first time it acts on the directive (the broadcast reached it; the sender did not know it)."""

    def handle(delivery: Delivery) -> None:
        p = delivery.payload
        if (
            isinstance(p, wpb.WorkflowPayload)
            and p.workflow == SPEC.name
            and p.action != "create"
            and p.issuer == str(node.me)
            and row_state(delivery.conn, p.item_id, p.party) is None
        ):
            _open_for_late_recipient(node, delivery, p.item_id)
        deliver(delivery)

    return handle


def _open_for_late_recipient(node: Node, delivery: Delivery, item_id: str) -> None:
    sent = delivery.conn.execute(
        select(directives).where(directives.c.envelope_id == item_id, directives.c.direction == "sent")
    ).first()
    origin = delivery.opened.origin
    if sent is None:
        return
    top = CourtCode.parse(sent.target)
    if origin == top or (sent.subtree and origin.is_within(top)):
        due = feedback_due(sent.created_at_ms, sent.level, sent.feedback_due_ms or 0)
        data = {"level": sent.level, "feedback_due_ms": due}
        open_local(
            delivery.tx, node.workflows, SPEC, item_id, origin, "issuer", sent.title, data, due, item_id, str(node.me)
        )


# -- operations ----------------------------------------------------------------------------------------


async def issue(
    node: Node,
    to: CourtCode,
    title: str,
    body: str,
    *,
    subtree: bool = False,
    level: str = "routine",
    feedback_days: float = 0,
) -> dict[str, Any]:
    """Send a directive with a feedback deadline (``feedback_days`` from now; 0: by level)."""
    if level not in LEVELS:
        raise InvalidInput(f"directive level {level!r} must be one of {', '.join(LEVELS)}")
    if not 0 <= feedback_days <= 365:
        raise InvalidInput("directive feedback deadline: 0–365 days (0: the default for the level)")
    explicit = node.clock.now_ms() + int(feedback_days * DAY_MS) if feedback_days else 0
    async with refusals_audited(node, "directive.issue", str(to)):
        eid, recipients = await node.directives.send(to, subtree, title, body, level, explicit)
    return {
        "id": eid,
        "to": str(to),
        "subtree": subtree,
        "level": level,
        "recipients": recipients,
        "feedback_due": iso(feedback_due(node.clock.now_ms(), level, explicit)),
    }


async def _mine(node: Node, ident: str, role: str) -> dict[str, Any]:
    rows = await node.store.read(lambda c: item_rows(c, SPEC.name, ident))
    return one_row(rows, node.me, "directive", ident, role)


async def read(node: Node, ident: str, by: str = "") -> dict[str, Any]:
    async with refusals_audited(node, "directive.read"):
        row = await _mine(node, ident, "party")
        if not by:
            by = str((row["data"].get("assignee") or {}).get("officer", ""))
        return await node.workflows.act(row["item_id"], node.me, "read", {"by": by} if by else {})


async def feedback(
    node: Node, ident: str, text: str, files: Sequence[tuple[str, bytes]] = (), by: str = ""
) -> dict[str, Any]:
    """Answer a directive (反馈) with text and attachments (stored by digest, sent with the step)."""
    if len(files) > MAX_FILES:
        raise InvalidInput(f"directive feedback: {len(files)} attachments; the limit is {MAX_FILES}")
    total = sum(len(content) for _, content in files)
    if total > MAX_ATTACHMENTS_BYTES:
        raise InvalidInput(
            f"directive feedback: attachments total {total} bytes; the limit is {MAX_ATTACHMENTS_BYTES} "
            f"({MAX_ATTACHMENT_BYTES} per file)"
        )
    atts = [make_attachment(name, content) for name, content in files]
    listed = [{"name": a.name, "sha256": a.sha256, "size": len(a.content)} for a in atts]
    async with refusals_audited(node, "directive.feedback"):
        row = await _mine(node, ident, "party")
        data: Data = {"text": text, "files": listed}
        if by:
            data["by"] = by
        return await node.workflows.act(row["item_id"], node.me, "answer", data, files=atts)


async def reconsider(node: Node, ident: str, reason: str, by: str = "") -> dict[str, Any]:
    async with refusals_audited(node, "directive.reconsider"):
        row = await _mine(node, ident, "party")
        data: Data = {"reason": reason, "requested_at_ms": node.clock.now_ms()}
        if by:
            data["by"] = by
        return await node.workflows.act(row["item_id"], node.me, "reconsider", data)


async def _issuer_row(node: Node, ident: str, court: str) -> dict[str, Any]:
    rows = await node.store.read(lambda c: item_rows(c, SPEC.name, ident, "issuer"))
    if court:
        rows = [r for r in rows if r["party"] == str(CourtCode.parse(court))]
    if not rows:
        raise AuthorityError(
            f"{node.me} did not issue directive {ident!r} to {court or 'any court'}: only its issuer may do this",
            reason="not_a_party",
        )
    if len(rows) > 1:
        raise InvalidInput(f"directive {ident!r} has {len(rows)} recipients; name one with --court", reason="ambiguous")
    return rows[0]


async def decide(
    node: Node, ident: str, court: str, decision: str, reason: str, feedback_days: float = 0
) -> dict[str, Any]:
    """The issuer's decision on a reconsideration: ``uphold`` (维持) or ``withdraw`` (撤回)."""
    if decision not in ("uphold", "withdraw"):
        raise InvalidInput("directive decision must be uphold (维持) or withdraw (撤回)")
    async with refusals_audited(node, f"directive.{decision}", court):
        row = await _issuer_row(node, ident, court)
        party = CourtCode.parse(row["party"])
        if decision == "withdraw":
            return await node.workflows.act(row["item_id"], party, "withdraw", {"reason": reason})
        days = feedback_days or FEEDBACK_WINDOW_MS.get(row["data"].get("level", "routine"), 10 * DAY_MS) / DAY_MS
        if not 0 < days <= 365:
            raise InvalidInput("directive uphold: the new feedback deadline is 0–365 days away")
        due = node.clock.now_ms() + int(days * DAY_MS)
        return await node.workflows.act(row["item_id"], party, "uphold", {"reason": reason, "feedback_due_ms": due})


async def remind(node: Node, ident: str, court: str = "", text: str = "") -> list[dict[str, Any]]:
    """催报 by hand: to one recipient, or to every recipient that has not answered."""
    async with refusals_audited(node, "directive.remind", court):
        rows = await node.store.read(lambda c: item_rows(c, SPEC.name, ident, "issuer"))
        if court:
            rows = [r for r in rows if r["party"] == str(CourtCode.parse(court))]
        if not rows:
            raise AuthorityError(
                f"{node.me} did not issue directive {ident!r}: only the issuer reminds", reason="not_a_party"
            )
        done = []
        for r in rows:
            if r["state"] in SPEC.step("remind").frm:
                done.append(
                    await node.workflows.act(r["item_id"], CourtCode.parse(r["party"]), "remind", {"text": text})
                )
        return done


def _table(conn: Connection, node: Node, rows: list[dict[str, Any]], now: int) -> dict[str, Any]:
    item_id = rows[0]["item_id"]
    record = conn.execute(select(directives).where(directives.c.envelope_id == item_id)).first()
    receipts = {
        d.recipient: d for d in conn.execute(select(deliveries).where(deliveries.c.envelope_id == item_id)).all()
    }
    history = events(conn, [item_id])
    out: dict[str, Any] = {
        "id": item_id,
        "title": rows[0]["title"],
        "level": rows[0]["data"].get("level", ""),
        "level_name": LEVEL_NAMES.get(rows[0]["data"].get("level", ""), ""),
        "origin": rows[0]["issuer"],
    }
    if record is not None:
        out.update(
            to=record.target,
            subtree=bool(record.subtree),
            body=record.body,
            sent_at=iso(record.created_at_ms),
            received_at=iso(record.received_at_ms) if record.received_at_ms else None,
        )
    table = []
    for r in sorted(rows, key=lambda x: x["party"]):
        mine = [e for e in history if e["party"] == r["party"]]

        def first(action: str, mine: list[dict[str, Any]] = mine) -> dict[str, Any] | None:
            return next((e for e in mine if e["action"] == action), None)

        def last(action: str, mine: list[dict[str, Any]] = mine) -> dict[str, Any] | None:
            return next((e for e in reversed(mine) if e["action"] == action), None)

        receipt = receipts.get(r["party"])
        read_ev, answer_ev = first("read"), last("answer")
        due = r["deadline_ms"] if r["state"] not in FINAL and r["state"] != "reconsidering" else None
        feedback_due_ms = int(r["data"].get("feedback_due_ms") or 0)
        entry: dict[str, Any] = {
            "court": r["party"],
            "state": r["state"],
            "delivered": r["role"] == "party" or bool(receipt is not None and receipt.state == "delivered"),
            "delivered_at": iso(receipt.receipt_at_ms)
            if receipt is not None and receipt.receipt_at_ms
            else (iso(r["created_at_ms"]) if r["role"] == "party" else None),
            "read": read_ev is not None or answer_ev is not None,
            "read_at": iso(read_ev["at_ms"]) if read_ev else None,
            "read_by": read_ev["data"].get("by") if read_ev else None,
            "answered": r["state"] == "answered",
            "answered_at": iso(answer_ev["at_ms"]) if answer_ev else None,
            "on_time": (answer_ev["at_ms"] < feedback_due_ms) if answer_ev and feedback_due_ms else None,
            "feedback_due": iso(feedback_due_ms) if feedback_due_ms else None,
            "overdue": bool(due and now >= due),  # due at the deadline, as the engine's tick
            "reminders": sum(1 for e in mine if e["action"] == "remind"),
            "feedback": {k: answer_ev["data"].get(k) for k in ("text", "by", "files")} if answer_ev else None,
        }
        if r["role"] == "issuer" and receipt is not None and receipt.state == "rejected":
            entry["rejected"] = receipt.reason
        rec = last("reconsider")
        if rec:
            decision = next((e for e in reversed(mine) if e["action"] in ("uphold", "withdraw")), None)
            entry["reconsideration"] = {
                "reason": rec["data"].get("reason"),
                "requested_at": iso(rec["at_ms"]),
                "decision": decision["action"] if decision else None,
                "decision_reason": decision["data"].get("reason") if decision else None,
            }
        if "assignee" in r["data"]:
            entry["assignee"] = r["data"]["assignee"]
        table.append(entry)
    out["recipients"] = table
    out["summary"] = {
        "recipients": len(table),
        "delivered": sum(1 for t in table if t["delivered"]),
        "read": sum(1 for t in table if t["read"]),
        "answered": sum(1 for t in table if t["answered"]),
        "answered_on_time": sum(1 for t in table if t["on_time"]),
        "overdue": sum(1 for t in table if t["overdue"]),
        "reminded": sum(1 for t in table if t["reminders"]),
    }
    return out


async def show(node: Node, ident: str) -> dict[str, Any]:
    """The per-recipient status table (issuer), or this court's own row (recipient)."""
    now = node.clock.now_ms()

    def read_(conn: Connection) -> dict[str, Any]:
        rows = item_rows(conn, SPEC.name, ident)
        if not rows:
            raise AuthorityError(f"no directive {ident!r} sent or received by {node.me} here", reason="not_a_party")
        issued = [r for r in rows if r["role"] == "issuer"]
        out = _table(conn, node, issued or rows, now)
        out["role"] = "issuer" if issued else "recipient"
        out["history"] = [{**e, "at": iso(e["at_ms"])} for e in events(conn, [rows[0]["item_id"]])]
        return out

    async with refusals_audited(node, "directive.show"):
        return await node.store.read(read_)


async def attachment(node: Node, sha256: str) -> dict[str, Any]:
    """An attachment stored here (received with a step, or sent), by its SHA-256 (or a prefix)."""
    digest = sha256.strip().lower()
    if len(digest) < 8 or any(c not in "0123456789abcdef" for c in digest):
        raise InvalidInput("an attachment is named by its SHA-256 (at least 8 hex digits)")

    def read_(conn: Connection) -> list[Any]:
        return list(conn.execute(select(attachments).where(attachments.c.sha256.like(f"{digest}%")).limit(2)).all())

    found = await node.store.read(read_)
    if not found:
        raise NotFound(f"no attachment {digest} stored at {node.me}")
    if len(found) > 1:
        raise InvalidInput(f"{digest} names more than one attachment; give more digits", reason="ambiguous")
    a = found[0]
    return {
        "sha256": a.sha256,
        "name": a.name,
        "media_type": a.media_type,
        "size": a.size,
        "content_b64": base64.b64encode(a.content).decode(),
    }


def _files(args: dict[str, Any]) -> list[tuple[str, bytes]]:
    out = []
    for f in args.get("files") or []:
        if not isinstance(f, dict):
            raise InvalidInput("files: a list of {name, content_b64}")
        try:
            content = base64.b64decode(str(f.get("content_b64", "")), validate=True)
        except ValueError:
            raise InvalidInput(f"file {f.get('name')!r}: content_b64 is not base64") from None
        out.append((str(f.get("name", "")), content))
    return out


def setup(node: Node) -> None:
    node.directives.on_sent = _on_sent(node)
    node.exchange.handle("directive", _on_delivered(node, node.exchange.handlers["directive"]))
    node.exchange.handle("workflow", _late_recipient(node, node.exchange.handlers["workflow"]))
    tick_workflows(node, [SPEC.name])

    async def op_issue(a: dict[str, Any]) -> Any:
        return await issue(
            node,
            CourtCode.parse(str(a.get("to", ""))),
            str(a.get("title", "")),
            str(a.get("body", "")),
            subtree=bool(a.get("subtree")),
            level=str(a.get("level") or "routine"),
            feedback_days=float(a.get("feedback_days") or 0),
        )

    async def op_read(a: dict[str, Any]) -> Any:
        return await read(node, str(a.get("id", "")), str(a.get("by", "")))

    async def op_feedback(a: dict[str, Any]) -> Any:
        return await feedback(node, str(a.get("id", "")), str(a.get("text", "")), _files(a), str(a.get("by", "")))

    async def op_reconsider(a: dict[str, Any]) -> Any:
        return await reconsider(node, str(a.get("id", "")), str(a.get("reason", "")), str(a.get("by", "")))

    async def op_decide(a: dict[str, Any]) -> Any:
        return await decide(
            node,
            str(a.get("id", "")),
            str(a.get("court", "")),
            str(a.get("decision", "")),
            str(a.get("reason", "")),
            float(a.get("feedback_days") or 0),
        )

    async def op_remind(a: dict[str, Any]) -> Any:
        return await remind(node, str(a.get("id", "")), str(a.get("court", "")), str(a.get("text", "")))

    async def op_show(a: dict[str, Any]) -> Any:
        return await show(node, str(a.get("id", "")))

    async def op_attachment(a: dict[str, Any]) -> Any:
        return await attachment(node, str(a.get("sha256", "")))

    for name, op in {
        "directive.issue": op_issue,
        "directive.read": op_read,
        "directive.feedback": op_feedback,
        "directive.reconsider": op_reconsider,
        "directive.decide": op_decide,
        "directive.remind": op_remind,
        "directive.show": op_show,
        "attachment.get": op_attachment,
    }.items():
        node.admin.register(name, op)
