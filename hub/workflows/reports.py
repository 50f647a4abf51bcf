"""执行要情 Important-case reports: reported upward level by level, instructions flow back down.

A lower court reports a major, sensitive or sudden event (暴力抗拒执行, 群体性事件, 负面舆情 …) to
the court above it, with a category and an urgency (seed 000: 执行要情系统, 逐级报送和反馈). Each hop
is one ``report`` item between two adjacent levels; every level therefore keeps the report and its
history, may comment on it (批注) and forwards it upward (转报) — by hand, or by rule:

* **auto-forward rule** — a report whose urgency is at least :attr:`ReportRules.auto_forward_from`
  (default ``urgent``) is forwarded by each receiving court, in the transaction that received it,
  until it reaches the level :attr:`ReportRules.up_to` (default the high court, 省高院).

Back down: an upper court's instruction (批示) or comment is relayed by every court in between, in
the transaction that brought it, to the reporter; the reporter's follow-up (续报) and closing
(办结) are relayed up the same way. A forwarded hop's id is derived from the hop below and the
forwarding court, so relays find their counterpart without lookups and a forward happens once.

The rules are code defaults until the node configuration has a ``[workflows.reports]`` section.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, or_, select

from hub.clock import iso
from hub.codes import CaseNumber, CourtCode, CourtLevel
from hub.errors import InvalidInput, NotFound
from hub.workflows.engine import Data, Relation, Step, WorkflowSpec, WorkflowTx, clear
from hub.workflows.schema import workflow_items
from hub.workflows.txsteps import (
    act_in_tx,
    create_in_tx,
    events,
    item_rows,
    one_row,
    plain_row,
    refusals_audited,
    row_state,
)

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)

CATEGORIES = {
    "violence": "暴力抗拒执行",
    "mass_incident": "群体性事件",
    "public_opinion": "负面舆情",
    "major_case": "重大敏感案件",
    "emergency": "突发事件",
    "other": "其他要情",
}
URGENCIES = {"routine": "一般", "urgent": "紧急", "critical": "特急"}
_RANK = {u: i for i, u in enumerate(URGENCIES)}
MAX_TEXT = 20_000
OPEN = frozenset({"reported", "updated", "commented", "forwarded", "instructed"})


@dataclass(frozen=True)
class ReportRules:
    auto_forward_from: str = "urgent"  # this urgency or higher is forwarded by rule
    up_to: CourtLevel = CourtLevel.HIGH  # … until a court of this level has it

    def auto_forward(self, urgency: str, here: CourtCode) -> bool:
        return _RANK.get(urgency, 0) >= _RANK[self.auto_forward_from] and here.level.depth > self.up_to.depth


RULES = ReportRules()


def forwarded_id(item_id: str, court: CourtCode) -> str:
    """The id of the hop ``court`` opens when it forwards hop ``item_id`` (deterministic)."""
    return hashlib.sha256(f"report-forward|{item_id}|{court}".encode()).hexdigest()[:32]


# -- checks ------------------------------------------------------------------------------------------


def _text(data: Data, what: str, *, required: bool = True) -> str:
    text = str(data.get("text") or "").strip()
    if required and not text:
        raise InvalidInput(f"report {what}: text is required")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"report {what}: text is {len(text)} characters; the limit is {MAX_TEXT}")
    return text


def _relay(data: Data) -> Data:
    """Who said it, when a court in between passes it on."""
    out: Data = {}
    if data.get("by"):
        out["by"] = str(CourtCode.parse(str(data["by"])))
    if data.get("relayed"):
        out["relayed"] = True
    return out


def _create(data: Data) -> Data:
    category = str(data.get("category", ""))
    if category not in CATEGORIES:
        raise InvalidInput(f"report category {category!r} must be one of {', '.join(CATEGORIES)}")
    urgency = str(data.get("urgency", "routine"))
    if urgency not in URGENCIES:
        raise InvalidInput(f"report urgency {urgency!r} must be one of {', '.join(URGENCIES)}")
    out: Data = {"category": category, "urgency": urgency, "text": _text(data, "")}
    for key in ("report_id", "source_item"):
        if data.get(key):
            value = str(data[key])
            if len(value) > 64:
                raise InvalidInput(f"report: {key} is too long")
            out[key] = value
    if data.get("reporter"):
        out["reporter"] = str(CourtCode.parse(str(data["reporter"])))
    chain = data.get("chain") or []
    if not isinstance(chain, list) or len(chain) > 8:
        raise InvalidInput("report: chain must list at most 8 courts")
    out["chain"] = [str(CourtCode.parse(str(c))) for c in chain]
    for key in ("forward_note",):
        if data.get(key):
            out[key] = str(data[key])[:MAX_TEXT]
    below = data.get("comments_below") or []
    if not isinstance(below, list) or len(below) > 50:
        raise InvalidInput("report: at most 50 comments are carried upward")
    out["comments_below"] = [
        {"by": str(c.get("by", ""))[:16], "text": str(c.get("text", ""))[:MAX_TEXT]}
        for c in below
        if isinstance(c, dict)
    ]
    return out


def _update(data: Data) -> Data:
    return {"text": _text(data, "follow-up"), **_relay(data)}


def _comment(data: Data) -> Data:
    return {"text": _text(data, "comment"), **_relay(data)}


def _instruct(data: Data) -> Data:
    return {"text": _text(data, "instruction"), **_relay(data)}


def _forward(data: Data) -> Data:
    out: Data = {"to": str(CourtCode.parse(str(data.get("to", ""))))}
    note = str(data.get("note") or "").strip()
    if note:
        out["note"] = note[:MAX_TEXT]
    return out


def _close(data: Data) -> Data:
    return {"text": _text(data, "closing", required=False), **_relay(data)}


# -- effects: forwarding and relaying ----------------------------------------------------------------


def _on_create(w: WorkflowTx) -> None:
    """At the receiving court: forward by rule, in this same transaction."""
    row = w.row
    if w.local or row["role"] != "party":
        return
    node = w.engine.node
    parent = node.router.parent
    if parent is not None and RULES.auto_forward(str(row["data"].get("urgency")), node.me):
        act_in_tx(w.tx, w.engine, row["item_id"], node.me, "forward", {"to": str(parent), "auto": True})


def _on_forward(w: WorkflowTx) -> None:
    """The forwarding court opens the next hop up, with what it knows of the report."""
    if not w.local:
        return
    row, node = w.row, w.engine.node
    to = CourtCode.parse(str(w.data["to"]))
    if node.router.parent is None or to != node.router.parent:
        raise InvalidInput(f"report forward: {node.me} forwards to the court above it ({node.router.parent}), not {to}")
    nxt = forwarded_id(row["item_id"], node.me)
    if row_state(w.tx.conn, nxt, str(to)) is not None:
        raise InvalidInput(f"report {row['item_id'][:12]} was already forwarded to {to}", reason="wrong_state")
    hist = events(w.tx.conn, [row["item_id"]])
    d = _created(hist, row)  # the report as received (a row's data also holds later steps' text)
    comments = [
        {"by": str(e["data"].get("by") or e["actor"]), "text": str(e["data"].get("text", ""))}
        for e in hist
        if e["action"] == "comment"
    ]
    data = {
        "category": d["category"],
        "urgency": d["urgency"],
        "text": d.get("text", ""),
        "report_id": d.get("report_id") or row["item_id"],
        "reporter": d.get("reporter") or row["issuer"],
        "chain": [*(d.get("chain") or [row["issuer"]]), str(node.me)],
        "source_item": row["item_id"],
        "forward_note": str(w.data.get("note", "")),
        "comments_below": [*(d.get("comments_below") or []), *comments],
    }
    create_in_tx(w.tx, w.engine, "report", to, row["title"], data, item_id=nxt, case_number=row["case_number"] or "")


def _created(hist: list[dict[str, Any]], row: dict[str, Any]) -> Data:
    first = next((e for e in hist if e["item_id"] == row["item_id"] and e["action"] == "create"), None)
    return dict(first["data"]) if first else dict(row["data"])


def _relay_up(action: str) -> Any:
    def effect(w: WorkflowTx) -> None:
        """A follow-up or closing from below reaches a court that forwarded the report: pass it up."""
        row, node = w.row, w.engine.node
        if w.local or row["role"] != "party" or node.router.parent is None:
            return
        nxt = forwarded_id(row["item_id"], node.me)
        state = row_state(w.tx.conn, nxt, str(node.router.parent))
        if state is None:
            return
        if state not in OPEN:
            log.info("report %s: %s not relayed up, the hop above is %s", row["item_id"], action, state)
            return
        data = {"text": w.data.get("text", ""), "by": w.data.get("by") or row["issuer"], "relayed": True}
        act_in_tx(w.tx, w.engine, nxt, node.router.parent, action, data)

    return effect


def _relay_down(action: str) -> Any:
    def effect(w: WorkflowTx) -> None:
        """An instruction or comment from above reaches a court in between: pass it down."""
        row, node = w.row, w.engine.node
        source = row["data"].get("source_item")
        if w.local or row["role"] != "issuer" or not source:
            return
        state = row_state(w.tx.conn, str(source), str(node.me))
        if state not in OPEN:
            log.info("report %s: %s not relayed down, the hop below is %s", source, action, state)
            return
        data = {"text": w.data.get("text", ""), "by": w.data.get("by") or row["party"], "relayed": True}
        act_in_tx(w.tx, w.engine, str(source), node.me, action, data)

    return effect


SPEC = WorkflowSpec(
    name="report",
    label="执行要情",
    relation=Relation.UPWARD,
    initial="reported",
    create_check=_create,
    steps=(
        Step("update", OPEN, "updated", "issuer", None, _update, "续报"),
        Step("comment", OPEN, "commented", "party", None, _comment, "批注"),
        Step("forward", OPEN, "forwarded", "party", None, _forward, "转报上级"),
        Step("instruct", OPEN, "instructed", "party", None, _instruct, "批示"),
        Step("close", OPEN, "closed", "issuer", clear(), _close, "办结"),
    ),
    effects={
        "create": _on_create,
        "forward": _on_forward,
        "update": _relay_up("update"),
        "close": _relay_up("close"),
        "comment": _relay_down("comment"),
        "instruct": _relay_down("instruct"),
    },
)


# -- operations ----------------------------------------------------------------------------------------


async def send(
    node: Node,
    title: str,
    text: str,
    category: str,
    urgency: str = "routine",
    *,
    to: str = "",
    case_number: str = "",
) -> dict[str, Any]:
    """Report upward (to the court above, or ``to``: any court above this one)."""
    target = CourtCode.parse(to) if to else node.router.parent
    if target is None:
        raise InvalidInput(f"{node.me} has no court above it to report to")
    case = str(CaseNumber.parse(case_number)) if case_number else ""
    async with refusals_audited(node, "report.send", str(target)):
        item = await node.workflows.create(
            "report",
            [target],
            title,
            {"category": category, "urgency": urgency, "text": text, "chain": [str(node.me)]},
            case_number=case,
        )
    return {"id": item, "to": str(target), "category": category, "urgency": urgency}


def chain_rows(conn: Connection, ident: str) -> list[dict[str, Any]]:
    """Every hop of one report held here, found by any hop's id or the report id (or a prefix)."""
    rows = item_rows(conn, "report", ident)
    if not rows:
        return []
    rid = str(rows[0]["data"].get("report_id") or rows[0]["item_id"])
    q = select(workflow_items).where(
        workflow_items.c.workflow == "report",
        or_(workflow_items.c.item_id == rid, workflow_items.c.data.like(f'%"report_id": "{rid}"%')),
    )
    return sorted((plain_row(r) for r in conn.execute(q).all()), key=lambda r: r["created_at_ms"])


async def _row(node: Node, ident: str, role: str) -> dict[str, Any]:
    """The hop of the report where this court has ``role`` (a court receives a report once)."""
    rows = await node.store.read(lambda c: chain_rows(c, ident))
    return one_row(rows, node.me, "report", ident, role)


async def act(node: Node, ident: str, action: str, text: str = "", note: str = "") -> dict[str, Any]:
    """comment / forward / instruct (a receiving court) or update / close (the reporter)."""
    role = "issuer" if action in ("update", "close") else "party"
    async with refusals_audited(node, f"report.{action}"):
        row = await _row(node, ident, role)
        if action == "forward":
            if node.router.parent is None:
                raise InvalidInput(f"{node.me} has no court above it to forward to")
            data: Data = {"to": str(node.router.parent), "note": note}
        else:
            data = {"text": text}
        party = node.me if role == "party" else CourtCode.parse(row["party"])
        return await node.workflows.act(row["item_id"], party, action, data)


def _summary(rows: list[dict[str, Any]], history: list[dict[str, Any]]) -> dict[str, Any]:
    first = rows[0]
    d = first["data"]
    seen: set[tuple[str, str]] = set()
    instructions = []
    for e in history:
        if e["action"] != "instruct":
            continue
        by, text = str(e["data"].get("by") or e["actor"]), str(e["data"].get("text", ""))
        if (by, text) not in seen:  # relayed copies of one instruction are shown once
            seen.add((by, text))
            instructions.append({"by": by, "text": text, "at": iso(e["at_ms"])})
    return {
        "report_id": d.get("report_id") or first["item_id"],
        "title": first["title"],
        "category": d.get("category"),
        "category_name": CATEGORIES.get(str(d.get("category")), ""),
        "urgency": d.get("urgency"),
        "urgency_name": URGENCIES.get(str(d.get("urgency")), ""),
        "reporter": d.get("reporter") or first["issuer"],
        "case_number": first["case_number"],
        "hops": [
            {"item_id": r["item_id"], "from": r["issuer"], "to": r["party"], "role": r["role"], "state": r["state"]}
            for r in rows
        ],
        "state": max(rows, key=lambda r: r["updated_at_ms"])["state"],
        "instructions": instructions,
        "reported_at": iso(first["created_at_ms"]),
        "updated_at": iso(max(r["updated_at_ms"] for r in rows)),
    }


async def list_reports(node: Node, limit: int = 200) -> list[dict[str, Any]]:
    """One line per report held here (its hops grouped), newest first."""

    def read(conn: Connection) -> list[dict[str, Any]]:
        q = (
            select(workflow_items)
            .where(workflow_items.c.workflow == "report")
            .order_by(workflow_items.c.created_at_ms.desc())
            .limit(limit * 2)
        )
        chains: dict[str, list[dict[str, Any]]] = {}
        for r in (plain_row(x) for x in conn.execute(q).all()):
            chains.setdefault(str(r["data"].get("report_id") or r["item_id"]), []).append(r)
        out = []
        for chain in list(chains.values())[:limit]:
            chain.sort(key=lambda r: r["created_at_ms"])
            out.append(_summary(chain, events(conn, [r["item_id"] for r in chain])))
        return out

    return await node.store.read(read)


async def show(node: Node, ident: str) -> dict[str, Any]:
    def read(conn: Connection) -> dict[str, Any]:
        chain = chain_rows(conn, ident)
        if not chain:
            raise NotFound(f"no report {ident!r} sent, received or forwarded by {node.me} here")
        hist = events(conn, [r["item_id"] for r in chain])
        out = _summary(chain, hist)
        out["text"] = _created(hist, chain[0]).get("text")
        out["comments_below"] = chain[-1]["data"].get("comments_below", [])
        out["history"] = [{**e, "at": iso(e["at_ms"])} for e in hist]
        return out

    async with refusals_audited(node, "report.show"):
        return await node.store.read(read)


def setup(node: Node) -> None:
    async def op_send(a: dict[str, Any]) -> Any:
        return await send(
            node,
            str(a.get("title", "")),
            str(a.get("text", "")),
            str(a.get("category", "")),
            str(a.get("urgency") or "routine"),
            to=str(a.get("to") or ""),
            case_number=str(a.get("case_number") or ""),
        )

    def op_act(action: str) -> Any:
        async def op(a: dict[str, Any]) -> Any:
            return await act(node, str(a.get("id", "")), action, str(a.get("text", "")), str(a.get("note", "")))

        return op

    async def op_list(a: dict[str, Any]) -> Any:
        return await list_reports(node, max(1, min(1000, int(a.get("limit", 200)))))

    async def op_show(a: dict[str, Any]) -> Any:
        return await show(node, str(a.get("id", "")))

    node.admin.register("report.send", op_send)
    for action in ("comment", "forward", "instruct", "update", "close"):
        node.admin.register(f"report.{action}", op_act(action))
    node.admin.register("report.list", op_list)
    node.admin.register("report.show", op_show)
