"""事项请求 requests for instructions (lower → upper) and 信访 petitions handed down (upper → lower).

Seed 001 (a basic court's command-center duties): "就办案过程中出现的问题，向上级法院发出事项请求"
and "对最高院信访案件平台交办的信访案件 … 开展化解工作". Both are items of the workflow engine:

**request** (事项请求, upward): the lower court asks (with an answer deadline, default 10 days);
the upper court answers (答复) — the answer comes back to the asking court; the asker may withdraw.
Rule: **answer deadline** — unanswered when it passes → an automatic reminder (催办) to the upper
court.

**petition** (信访交办, downward): an upper court hands a petition case down with a reply deadline
(default 30 days) and the petitioner's contact; the lower court signs for it (签收) and replies
(办理答复) — the petitioner is told by SMS (:mod:`hub.notify`); the upper court closes it (结案) or
sends it back to be redone (退回重办, new deadline, default 15 days). Rule: **petition deadline** —
no reply when it passes → an automatic reminder (催办) with 5 more days; still none → marked
overdue-escalated (超期督办) for the upper court's command center.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from hub.clock import iso
from hub.codes import CaseNumber, CourtCode
from hub.errors import InvalidInput, NotFound
from hub.plugins.models import InvalidModel, Recipient
from hub.workflows.engine import DAY_MS, Data, Overdue, Relation, Step, WorkflowSpec, clear, days
from hub.workflows.schema import workflow_items
from hub.workflows.txsteps import events, item_rows, one_row, plain_row, refusals_audited

if TYPE_CHECKING:
    from hub.node import Node

MAX_TEXT = 20_000
REQUEST_TOPICS = {
    "law": "法律适用",
    "coordination": "执行协调",
    "measure": "强制措施",
    "other": "其他",
}


def _text(data: Data, what: str, key: str = "text", *, required: bool = True) -> str:
    text = str(data.get(key) or "").strip()
    if required and not text:
        raise InvalidInput(f"{what}: {key} is required")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"{what}: {key} is {len(text)} characters; the limit is {MAX_TEXT}")
    return text


def _whole_days(data: Data, key: str, default: int, low: int, high: int, what: str) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f"{what}: {key} must be a whole number of days, {low}–{high}")
    return value


def _auto(data: Data) -> Data:
    out: Data = {"text": _text(data, "reminder", required=False)}
    if isinstance(data.get("overdue_since_ms"), int):
        out["overdue_since_ms"] = data["overdue_since_ms"]
    return out


# -- 事项请求 --------------------------------------------------------------------------------------------


def _request_create(data: Data) -> Data:
    topic = str(data.get("topic") or "other")
    if topic not in REQUEST_TOPICS:
        raise InvalidInput(f"request topic {topic!r} must be one of {', '.join(REQUEST_TOPICS)}")
    return {
        "topic": topic,
        "text": _text(data, "request"),
        "answer_days": _whole_days(data, "answer_days", 10, 1, 60, "request"),
    }


REQUEST = WorkflowSpec(
    name="request",
    label="事项请求",
    relation=Relation.UPWARD,
    initial="requested",
    create_check=_request_create,
    create_deadline=lambda now, d: now + int(d["answer_days"]) * DAY_MS,
    steps=(
        Step(
            "answer",
            frozenset({"requested", "reminded"}),
            "answered",
            "party",
            clear(),
            lambda d: {"text": _text(d, "request answer")},
            "答复",
        ),
        Step("remind", frozenset({"requested"}), "reminded", "issuer", None, _auto, "催办"),
        Step(
            "withdraw",
            frozenset({"requested", "reminded"}),
            "withdrawn",
            "issuer",
            clear(),
            lambda d: {"text": _text(d, "request withdrawal", required=False)},
            "撤回",
        ),
    ),
    overdue=(Overdue("requested", "remind"),),
)


# -- 信访 -------------------------------------------------------------------------------------------------


def _petition_create(data: Data) -> Data:
    out: Data = {
        "text": _text(data, "petition"),
        "reply_days": _whole_days(data, "reply_days", 30, 1, 90, "petition"),
    }
    petitioner = str(data.get("petitioner") or "").strip()
    if not petitioner or len(petitioner) > 100:
        raise InvalidInput("petition: the petitioner's name (信访人, 1–100 characters) is required")
    out["petitioner"] = petitioner
    notify = []
    for p in data.get("notify") or []:
        try:
            notify.append(Recipient.parse(p).to_dict())
        except InvalidModel as exc:
            raise InvalidInput(f"petition: petitioner contact: {exc}") from None
    out["notify"] = notify
    return out


def _petition_return(data: Data) -> Data:
    return {
        "reason": _text(data, "petition return", "reason"),
        "redo_days": _whole_days(data, "redo_days", 15, 1, 90, "petition return"),
    }


PETITION = WorkflowSpec(
    name="petition",
    label="信访交办",
    relation=Relation.DOWNWARD,
    initial="handed_down",
    create_check=_petition_create,
    create_deadline=lambda now, d: now + int(d["reply_days"]) * DAY_MS,
    steps=(
        Step(
            "accept",
            frozenset({"handed_down"}),
            "accepted",
            "party",
            None,
            lambda d: {"by": str(d.get("by") or "")[:50]},
            "签收",
        ),
        Step(
            "reply",
            frozenset({"handed_down", "accepted", "reminded", "returned", "escalated"}),
            "replied",
            "party",
            clear(),
            lambda d: {"text": _text(d, "petition reply")},
            "办理答复",
        ),
        Step(
            "remind", frozenset({"handed_down", "accepted", "returned"}), "reminded", "issuer", days(5), _auto, "催办"
        ),
        Step("escalate", frozenset({"reminded"}), "escalated", "issuer", clear(), _auto, "超期督办"),
        Step(
            "return",
            frozenset({"replied"}),
            "returned",
            "issuer",
            lambda now, d: now + int(d["redo_days"]) * DAY_MS,
            _petition_return,
            "退回重办",
        ),
        Step(
            "close",
            frozenset({"replied"}),
            "closed",
            "issuer",
            clear(),
            lambda d: {"text": _text(d, "petition closing", required=False)},
            "结案",
        ),
    ),
    overdue=(
        Overdue("handed_down", "remind"),
        Overdue("accepted", "remind"),
        Overdue("returned", "remind"),
        Overdue("reminded", "escalate"),
    ),
)

SPECS = [REQUEST, PETITION]


# -- operations ----------------------------------------------------------------------------------------


async def send_request(
    node: Node,
    title: str,
    text: str,
    *,
    topic: str = "other",
    answer_days: int = 10,
    to: str = "",
    case_number: str = "",
) -> dict[str, Any]:
    target = CourtCode.parse(to) if to else node.router.parent
    if target is None:
        raise InvalidInput(f"{node.me} has no court above it to ask")
    case = str(CaseNumber.parse(case_number)) if case_number else ""
    async with refusals_audited(node, "request.send", str(target)):
        item = await node.workflows.create(
            "request", [target], title, {"topic": topic, "text": text, "answer_days": answer_days}, case_number=case
        )
    return {"id": item, "to": str(target)}


async def send_petition(
    node: Node,
    to: str,
    title: str,
    text: str,
    petitioner: str,
    *,
    phone: str = "",
    reply_days: int = 30,
    case_number: str = "",
) -> dict[str, Any]:
    target = CourtCode.parse(to)
    case = str(CaseNumber.parse(case_number)) if case_number else ""
    data: Data = {"text": text, "petitioner": petitioner, "reply_days": reply_days}
    if phone:
        data["notify"] = [{"name": petitioner, "phone": phone, "role": "party"}]
    async with refusals_audited(node, "petition.send", str(target)):
        item = await node.workflows.create("petition", [target], title, data, case_number=case)
    return {"id": item, "to": str(target)}


async def act(node: Node, workflow: str, ident: str, action: str, data: Data, court: str = "") -> dict[str, Any]:
    spec = node.workflows.spec(workflow)
    role = spec.step(action).by
    async with refusals_audited(node, f"{workflow}.{action}", court):
        rows = await node.store.read(lambda c: item_rows(c, workflow, ident))
        if court and role == "issuer":
            rows = [r for r in rows if r["party"] == str(CourtCode.parse(court))]
        row = one_row(rows, node.me, workflow, ident, role)
        party = node.me if role == "party" else CourtCode.parse(row["party"])
        return await node.workflows.act(row["item_id"], party, action, data)


async def list_items(node: Node, workflow: str, limit: int = 200) -> list[dict[str, Any]]:
    now = node.clock.now_ms()
    finals = {"answered", "withdrawn", "closed"}

    def read(conn: Connection) -> list[dict[str, Any]]:
        q = (
            select(workflow_items)
            .where(workflow_items.c.workflow == workflow)
            .order_by(workflow_items.c.created_at_ms.desc())
            .limit(limit)
        )
        out = []
        for r in (plain_row(x) for x in conn.execute(q).all()):
            due = r["deadline_ms"]
            out.append(
                {
                    "id": r["item_id"],
                    "title": r["title"],
                    "role": r["role"],
                    "from": r["issuer"],
                    "to": r["party"],
                    "state": r["state"],
                    "case_number": r["case_number"],
                    "deadline": iso(due) if due else None,
                    "overdue": bool(due and due < now and r["state"] not in finals),
                    "created_at": iso(r["created_at_ms"]),
                    "updated_at": iso(r["updated_at_ms"]),
                }
            )
        return out

    return await node.store.read(read)


async def show(node: Node, workflow: str, ident: str) -> dict[str, Any]:
    def read(conn: Connection) -> dict[str, Any]:
        rows = item_rows(conn, workflow, ident)
        if not rows:
            raise NotFound(f"no {workflow} {ident!r} sent or received by {node.me} here")
        row = rows[0]
        hist = events(conn, [row["item_id"]])
        # What was asked or handed down (the row's data also holds later steps' text).
        data = dict(next((e["data"] for e in hist if e["action"] == "create"), row["data"]))
        if "notify" in data:  # contacts are for the SMS gateway, not for display
            data["notify"] = [
                {"name": p.get("name"), "phone": "****" + str(p.get("phone", ""))[-4:]} for p in data["notify"]
            ]
        return {
            "id": row["item_id"],
            "workflow": workflow,
            "title": row["title"],
            "role": row["role"],
            "from": row["issuer"],
            "to": row["party"],
            "state": row["state"],
            "case_number": row["case_number"],
            "data": data,
            "deadline": iso(row["deadline_ms"]) if row["deadline_ms"] else None,
            "history": [{**e, "at": iso(e["at_ms"])} for e in hist],
        }

    async with refusals_audited(node, f"{workflow}.show"):
        return await node.store.read(read)


def setup(node: Node) -> None:
    def s(a: dict[str, Any], key: str) -> str:
        return str(a.get(key) or "")

    async def op_request_send(a: dict[str, Any]) -> Any:
        return await send_request(
            node,
            s(a, "title"),
            s(a, "text"),
            topic=s(a, "topic") or "other",
            answer_days=int(a.get("answer_days") or 10),
            to=s(a, "to"),
            case_number=s(a, "case_number"),
        )

    async def op_petition_send(a: dict[str, Any]) -> Any:
        return await send_petition(
            node,
            s(a, "to"),
            s(a, "title"),
            s(a, "text"),
            s(a, "petitioner"),
            phone=s(a, "phone"),
            reply_days=int(a.get("reply_days") or 30),
            case_number=s(a, "case_number"),
        )

    def op_act(workflow: str, action: str) -> Any:
        async def op(a: dict[str, Any]) -> Any:
            data = {k: v for k, v in a.items() if k not in ("id", "court")}
            return await act(node, workflow, s(a, "id"), action, data, s(a, "court"))

        return op

    def op_list(workflow: str) -> Any:
        async def op(a: dict[str, Any]) -> Any:
            return await list_items(node, workflow, max(1, min(1000, int(a.get("limit", 200)))))

        return op

    def op_show(workflow: str) -> Any:
        async def op(a: dict[str, Any]) -> Any:
            return await show(node, workflow, s(a, "id"))

        return op

    node.admin.register("request.send", op_request_send)
    node.admin.register("petition.send", op_petition_send)
    for workflow, actions in (
        ("request", ("answer", "remind", "withdraw")),
        ("petition", ("accept", "reply", "remind", "return", "close")),
    ):
        for action in actions:
            node.admin.register(f"{workflow}.{action}", op_act(workflow, action))
        node.admin.register(f"{workflow}.list", op_list(workflow))
        node.admin.register(f"{workflow}.show", op_show(workflow))
