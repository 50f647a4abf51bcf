"""事项委托 Entrusted matters: court A asks court B — any other court — to act for one of A's cases.

Items: 查询 inquire, 冻结 freeze, 查封 seal, 调查 investigate, 送达 serve. The matter is not a case at
B (委托执行规定第二条第二款: 受托法院不作为委托执行案件立案办理，但应当积极予以协助); it lives as an
``entrust`` workflow item at both ends, and its envelopes travel up to the two courts' common
ancestor and down again (DESIGN.md §2). The rules and time limits (《最高人民法院关于委托执行若干问题
的规定》法释〔2011〕11号, 2020 revision), each in one place below:

* **Renew before handover** (第八条): a freeze or seal whose term has less than one month left when
  it is handed over must be renewed (续冻/续封) by A first — creation is refused, naming the rule.
* **Register within 7 days** (第九条): B registers the matter within 7 days of receiving it; overdue
  → an automatic reminder (催办) from A.
* **Material: 30 days** (第十条): B may ask for missing material; A has 30 days to supply it, which
  puts the matter back where it was (registered or in progress). Not supplied in time → the
  request lapses (逾期未补充), and B may return the matter.
* **Return: approval, then 15 days** (第十一条: 受托法院退回委托的，应当层报所在辖区高级人民法院审批。
  高级人民法院同意退回后，受托法院应当在15日内将有关委托手续和案卷材料退回委托法院，并作出书面
  说明). B returns the matter with a reason and the sealed approval of its province's high court
  (an ``approval`` item, action ``entrust_return``, :mod:`hub.workflows.approvals`); from then B
  has 15 days to hand the papers back with a written explanation. Overdue → reminder (催退) from A
  with 5 more days; still overdue → escalation.
* **Six months → the common superior** (第十一条 of the same rules' practice: 受托法院未能在6个月内
  办结的 … 上一级人民法院): unfinished six calendar months after submission, A escalates the matter
  automatically. The escalation opens a linked ``entrust_escalation`` item at the two courts'
  common superior court, in the same transaction; both ends record where it went. The superior
  decides (督办 / 提级 / 指定), which opens a supervision letter (督办函) to B.

When B holds an agency capability for the item (``bank.control`` for a freeze, ``land.control`` for
a seal, ``<agency>.inquiry`` for an inquiry), ``entrust.execute`` runs it through B's own plugins:
the request id is recorded with a ``progress`` step first, the job goes to B's work queue, and a
background check completes the matter with the agency's answer attached (or records the failure),
resubmitting after a crash — so the result is neither lost nor applied twice.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import contextlib
import hashlib
import json
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from hub.agency.routing import INQUIRY
from hub.agency.service import DOCUMENTS
from hub.codes import CaseNumber, CourtCode, CourtLevel
from hub.errors import AuthorityError, InvalidCode, InvalidInput, NotFound, TrustError
from hub.plugins.models import ControlAction, ControlRequest, CourtInfo, IdType, InquiryRequest, Subject
from hub.proto.courthub.v1 import workflow_pb2 as wpb
from hub.workflows.approvals import merge_data, resolve, token_for, verify_decision
from hub.workflows.engine import (
    DAY_MS,
    Data,
    Overdue,
    Relation,
    Step,
    WorkflowSpec,
    WorkflowTx,
    clear,
    days,
    make_attachment,
)
from hub.workflows.schema import workflow_events, workflow_items

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)

ITEMS = {"inquire": "查询", "freeze": "冻结", "seal": "查封", "investigate": "调查", "serve": "送达"}
MEASURE_ITEMS = ("freeze", "seal")
AGENCY_ITEMS = ("inquire", "freeze", "seal")
AGENCIES = ("bank", "land", "public_security", "telecom")
DEFAULT_AGENCY = {"freeze": "bank", "seal": "land", "inquire": "bank"}

REGISTER_DAYS = 7  # 第九条
MATERIAL_DAYS = 30  # 第十条
RETURN_DAYS = 15  # 第十一条
RETURN_REMINDER_DAYS = 5
ESCALATE_MONTHS = 6
TICKED = ("entrust",)  # the superior's entrust_escalation item has no deadline
HANDOVER_MIN_MONTHS = 1  # 第八条

RULE_REASONS = ("renew_before_handover", "too_early", "wrong_state")
RULE_RENEW = "委托执行规定第八条（移交时有效期不足1个月的，应当先行续封或者续冻，再移交）"
RULE_RETURN = "委托执行规定第十一条（退回委托应当层报所在辖区高级人民法院审批）"

_CST = timezone(timedelta(hours=8))  # dates in court papers are China Standard Time


def add_months(ms: int, months: int) -> int:
    """``ms`` plus calendar months in China time (the 31st + 1 month → the last day of the month)."""
    seconds, rest = divmod(ms, 1000)
    t = datetime.fromtimestamp(seconds, _CST)
    years, month0 = divmod(t.month - 1 + months, 12)
    year, month = t.year + years, month0 + 1
    day = min(t.day, calendar.monthrange(year, month)[1])
    return int(t.replace(year=year, month=month, day=day).timestamp()) * 1000 + rest


def parse_when(text: str) -> int:
    """A date (``2025-03-01``: 00:00 China time that day) or ISO-8601 instant → epoch ms."""
    text = text.strip()
    try:
        if len(text) == 10:
            return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=_CST).timestamp() * 1000)
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{text!r} is not a date (YYYY-MM-DD) or an ISO-8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_CST)
    return int(t.timestamp() * 1000)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, _CST).strftime("%Y-%m-%d")


def _text(data: Data, key: str, what: str, *, required: bool = False, limit: int = 20_000) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise InvalidInput(f"{what}: {key} must be text")
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{what}: {key} is required")
    if len(value) > limit:
        raise InvalidInput(f"{what}: {key} is longer than {limit:,} characters")
    return value


def _int(data: Data, key: str, what: str, lo: int, hi: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{what}: {key} must be a whole number {lo}–{hi}")
    return value


# -- checks (pure: both ends run them on the same input) -------------------------------------------


def check_handover(item: str, submitted_ms: int, measure_expiry_ms: int | None) -> None:
    """第八条: a measure with under one month of term left is renewed before it is handed over."""
    if measure_expiry_ms is None:
        return
    if item not in MEASURE_ITEMS:
        raise InvalidInput(f"entrust {item}: measure_expiry is for a freeze or a seal being handed over")
    limit = add_months(submitted_ms, HANDOVER_MIN_MONTHS)
    if measure_expiry_ms <= submitted_ms:
        raise InvalidInput(
            f"{RULE_RENEW}: the {ITEMS[item]} measure expired on {_day(measure_expiry_ms)}; a lapsed measure "
            "cannot be handed over — entrust a new one instead",
            reason="renew_before_handover",
        )
    if measure_expiry_ms < limit:
        left = (measure_expiry_ms - submitted_ms) // DAY_MS
        action = "续冻" if item == "freeze" else "续封"
        raise InvalidInput(
            f"{RULE_RENEW}: the {ITEMS[item]} measure expires on {_day(measure_expiry_ms)}, {left} days after "
            f"handover ({_day(submitted_ms)}) — under one month; renew it first ({action}), then entrust it with "
            "the new expiry",
            reason="renew_before_handover",
        )


def _create(data: Data) -> Data:
    what = "entrust"
    item = data.get("item")
    if item not in ITEMS:
        raise InvalidInput(f"{what}: item must be one of {', '.join(ITEMS)} ({'/'.join(ITEMS.values())})")
    submitted = data.get("submitted_ms")
    if isinstance(submitted, bool) or not isinstance(submitted, int) or submitted <= 0:
        raise InvalidInput(
            f"{what}: submitted_ms is missing — open entrusted matters with `court-hub entrust create` "
            "(admin operation entrust.create)"
        )
    out: Data = {"item": item, "submitted_ms": submitted}
    out["limit_ms"] = add_months(submitted, ESCALATE_MONTHS)
    out["text"] = _text(data, "text", what)
    subject = data.get("subject")
    if subject is not None:
        if not isinstance(subject, dict):
            raise InvalidInput(f"{what}: subject must be an object with name and id_number")
        name = _text(subject, "name", f"{what} subject", required=True, limit=100)
        id_number = _text(subject, "id_number", f"{what} subject", required=True, limit=64).upper()
        out["subject"] = {"name": name, "id_number": id_number, "id_type": str(subject.get("id_type") or "resident_id")}
    elif item in AGENCY_ITEMS:
        raise InvalidInput(f"{what} {item}: the subject (被执行人: name and ID number) is required")
    if item in AGENCY_ITEMS:
        agency = data.get("agency") or DEFAULT_AGENCY[str(item)]
        if agency not in AGENCIES:
            raise InvalidInput(f"{what}: agency must be one of {', '.join(AGENCIES)}")
        out["agency"] = agency
    asset = _text(data, "asset", what, limit=100)
    if asset:
        out["asset"] = asset
    for key, hi in (("amount_fen", 10**15), ("term_days", 3 * 365)):
        value = _int(data, key, what, 1 if key == "term_days" else 0, hi)
        if value is not None:
            out[key] = value
    expiry = data.get("measure_expiry_ms")
    if expiry is not None:
        if isinstance(expiry, bool) or not isinstance(expiry, int):
            raise InvalidInput(f"{what}: measure_expiry_ms must be epoch milliseconds")
        out["measure_expiry_ms"] = expiry
    check_handover(str(item), submitted, out.get("measure_expiry_ms"))
    return out


def _register(data: Data) -> Data:
    out: Data = {}
    for key in ("handler", "phone", "note"):
        value = _text(data, key, "entrust register", limit=200)
        if value:
            out[key] = value
    return out


def _request_material(data: Data) -> Data:
    return {"material_request": _text(data, "text", "entrust request-material", required=True)}


def _supply(data: Data) -> Data:
    return {"material_supplied": _text(data, "text", "entrust supply", required=True)}


def _progress(data: Data) -> Data:
    out: Data = {}
    note = _text(data, "note", "entrust progress", limit=4000)
    if note:
        out["progress_note"] = note
    for key in ("agency_request_id", "capability", "plugin", "agency_status", "agency_settled", "agency_message"):
        if data.get(key) is not None:
            out[key] = str(data[key])[:4000]
    requested = _int(data, "agency_requested_ms", "entrust progress", 0, 2**62)
    if requested is not None:
        out["agency_requested_ms"] = requested
    return out


def _complete(data: Data) -> Data:
    out: Data = {"result": _text(data, "result", "entrust complete", required=True)}
    agency = data.get("agency_result")
    if agency is not None:
        if not isinstance(agency, dict):
            raise InvalidInput("entrust complete: agency_result must be an object")
        out["agency_result"] = agency
    for key in ("agency_request_id", "agency_settled"):
        if data.get(key) is not None:
            out[key] = str(data[key])[:64]
    return out


def _return(data: Data) -> Data:
    out: Data = {"return_reason": _text(data, "reason", "entrust return", required=True, limit=4000)}
    token = data.get("approval")
    if token is not None:
        if not isinstance(token, str) or len(token) > 8000:
            raise InvalidInput("entrust return: approval must be a sealed decision token")
        out["return_approval"] = token
    return out


def _hand_back(data: Data) -> Data:
    return {"return_explanation": _text(data, "text", "entrust hand-back (书面说明)", required=True)}


def _withdraw(data: Data) -> Data:
    return {"withdraw_reason": _text(data, "reason", "entrust withdraw", required=True, limit=4000)}


def _note(data: Data) -> Data:
    return {k: v for k, v in data.items() if k in ("auto", "overdue_since_ms")}


def _limit(_now: int, data: Data) -> int:
    """The deadline that returns once the matter is in B's hands: six months after submission."""
    return int(data["limit_ms"])


# -- effects (run in the step's transaction, at both ends) ------------------------------------------


def _last_from_state(wtx: WorkflowTx) -> str | None:
    row = wtx.row
    result = wtx.tx.conn.execute(
        select(workflow_events.c.from_state)
        .where(workflow_events.c.item_id == row["item_id"], workflow_events.c.party == row["party"])
        .order_by(workflow_events.c.id.desc())
        .limit(1)
    ).scalar()
    return None if result is None else str(result)


def _on_request_material(wtx: WorkflowTx) -> None:
    merge_data(wtx, {"material_from": _last_from_state(wtx)})


def _on_supply(target: str) -> Callable[[WorkflowTx], None]:
    def effect(wtx: WorkflowTx) -> None:
        wanted = "in_progress" if wtx.row["data"].get("material_from") == "in_progress" else "registered"
        if wanted != target:
            action = "supply_resume" if wanted == "in_progress" else "supply"
            raise InvalidInput(f"material was requested while {wanted}: use the step {action!r}", reason="wrong_state")

    return effect


def _on_return(wtx: WorkflowTx) -> None:
    """第十一条: the high court of B's province must have approved the return (sealed decision)."""
    row = wtx.row
    entrusted = CourtCode.parse(row["party"])
    high = _high_court(entrusted)
    if high is None:  # B is a high court or the national root: it approves its own returns
        return
    token = row["data"].get("return_approval")
    if not token:
        raise AuthorityError(
            f"{RULE_RETURN}: {entrusted} may return matter {row['item_id']} only with the sealed approval of "
            f"{high}; request it (court-hub approval request --action entrust_return --subject {row['item_id']} "
            f"--case …) and pass --approval-item",
            reason="approval_required",
        )
    decision = verify_decision(
        str(token),
        wtx.engine.node.trust,
        action="entrust_return",
        subject_id=row["item_id"],
        case_number=str(row["case_number"] or ""),
        requester=entrusted,
        approver=high,
    )
    if not decision.approved:
        raise AuthorityError(f"{RULE_RETURN}: {high} did not approve the return", reason="return_not_approved")
    merge_data(wtx, {"return_approved_by": str(high), "return_decision_id": decision.decision_id})


def _high_court(court: CourtCode) -> CourtCode | None:
    if court.level.depth <= CourtLevel.HIGH.depth:
        return None
    for up in court.ancestors():
        if up.level == CourtLevel.HIGH:
            return up
    return None


def escalation_target(entrusting: CourtCode, entrusted: CourtCode) -> tuple[str, CourtCode] | None:
    """Where an overdue matter goes: (workflow, court).

    The common superior court of the two, which opens an ``entrust_escalation`` item; when the
    entrusting court is itself above the entrusted one, it supervises directly (督办函); when the
    entrusted court is above the entrusting one, its own superior; none above the root.
    """
    common = entrusting.common_ancestor(entrusted)
    if common == entrusting:
        return "supervision", entrusted
    if common == entrusted:
        parent = entrusted.parent
        return ("entrust_escalation", parent) if parent is not None else None
    return "entrust_escalation", common


def linked_id(item_id: str, what: str) -> str:
    """The id of an item opened by an effect: the same at both ends, and once per cause."""
    return hashlib.sha256(f"{item_id}/{what}".encode()).hexdigest()[:32]


def open_linked(
    wtx: WorkflowTx, workflow: str, party: CourtCode, item_id: str, title: str, data: Data, case_number: str = ""
) -> None:
    """Open a workflow item from inside another item's step: the same rows and envelope as
    :meth:`WorkflowEngine.create`, but in the step's transaction, so both happen or neither."""
    wtx.engine.create_in(wtx.tx, workflow, party, title, data, item_id=item_id, case_number=case_number)


def _check_escalation_time(wtx: WorkflowTx) -> None:
    """By hand, a matter is escalated after six months, or once a reminder went unanswered."""
    row = wtx.row
    if wtx.data.get("auto") or _last_from_state(wtx) in ("register_overdue", "return_overdue"):
        return
    if wtx.tx.now_ms < int(row["data"]["limit_ms"]):
        raise InvalidInput(
            f"matter {row['item_id']} can be escalated to the common superior after {ESCALATE_MONTHS} months "
            f"({_day(int(row['data']['limit_ms']))}) or after an unanswered reminder",
            reason="too_early",
        )


def _on_escalate(wtx: WorkflowTx) -> None:
    row = wtx.row
    entrusting, entrusted = CourtCode.parse(row["issuer"]), CourtCode.parse(row["party"])
    target = escalation_target(entrusting, entrusted)
    facts: Data = {"escalated_at_ms": wtx.tx.now_ms}
    if wtx.local:
        _check_escalation_time(wtx)
    if target is not None:
        workflow, court = target
        link = linked_id(row["item_id"], "escalation")
        facts.update(escalated_to=str(court), escalation_workflow=workflow, escalation_item=link)
        if wtx.local:  # the entrusting court opens the linked item; the other end records it
            case = str(row["case_number"] or "")
            what = ITEMS.get(str(row["data"].get("item")), "")
            text = (
                f"{entrusting}委托{entrusted}办理的{what}事项（{case}）自{_day(int(row['data']['submitted_ms']))}"
                f"提交，至今未办结，报请{court}督促。"
            )
            if workflow == "supervision":
                open_linked(wtx, workflow, court, link, f"关于委托{what}事项的督办函：{case}", {"text": text}, case)
            else:
                data = {
                    "entrust_item": row["item_id"],
                    "entrusting": str(entrusting),
                    "entrusted": str(entrusted),
                    "item": row["data"].get("item"),
                    "state_before": _last_from_state(wtx),
                    "text": text,
                }
                open_linked(wtx, workflow, court, link, f"委托事项逾期报请督办：{case}", data, case)
    merge_data(wtx, facts)


SPEC = WorkflowSpec(
    name="entrust",
    label="事项委托",
    relation=Relation.ANY,
    initial="submitted",
    create_check=_create,
    create_deadline=lambda _now, d: int(d["submitted_ms"]) + REGISTER_DAYS * DAY_MS,
    steps=(
        Step(
            "register", frozenset({"submitted", "register_overdue"}), "registered", "party", _limit, _register, "登记"
        ),
        Step("remind_register", frozenset({"submitted"}), "register_overdue", "issuer", _limit, _note, "催办登记"),
        Step(
            "request_material",
            frozenset({"registered", "in_progress"}),
            "material_requested",
            "party",
            days(MATERIAL_DAYS),
            _request_material,
            "要求补充材料",
        ),
        Step(
            "supply",
            frozenset({"material_requested", "material_lapsed"}),
            "registered",
            "issuer",
            _limit,
            _supply,
            "补充材料",
        ),
        Step(
            "supply_resume",
            frozenset({"material_requested", "material_lapsed"}),
            "in_progress",
            "issuer",
            _limit,
            _supply,
            "补充材料",
        ),
        Step(
            "material_lapsed", frozenset({"material_requested"}), "material_lapsed", "party", _limit, _note, "逾期未补"
        ),
        Step("progress", frozenset({"registered", "in_progress"}), "in_progress", "party", None, _progress, "办理中"),
        Step(
            "complete",
            frozenset({"registered", "in_progress", "escalated"}),
            "completed",
            "party",
            clear(),
            _complete,
            "办结",
        ),
        Step(
            "return",
            frozenset({"submitted", "register_overdue", "registered", "in_progress", "material_lapsed"}),
            "returning",
            "party",
            days(RETURN_DAYS),
            _return,
            "退回",
        ),
        Step(
            "remind_return",
            frozenset({"returning"}),
            "return_overdue",
            "issuer",
            days(RETURN_REMINDER_DAYS),
            _note,
            "催退",
        ),
        Step(
            "hand_back",
            frozenset({"returning", "return_overdue", "escalated"}),
            "returned",
            "party",
            clear(),
            _hand_back,
            "退回材料",
        ),
        Step(
            "escalate",
            frozenset({"register_overdue", "registered", "in_progress", "material_lapsed", "return_overdue"}),
            "escalated",
            "issuer",
            clear(),
            _note,
            "报请共同上级",
        ),
        Step(
            "withdraw",
            frozenset({"submitted", "register_overdue", "registered", "material_requested", "material_lapsed"}),
            "withdrawn",
            "issuer",
            clear(),
            _withdraw,
            "撤回委托",
        ),
    ),
    overdue=(
        Overdue("submitted", "remind_register"),
        Overdue("register_overdue", "escalate"),
        Overdue("registered", "escalate"),
        Overdue("in_progress", "escalate"),
        Overdue("material_requested", "material_lapsed"),
        Overdue("material_lapsed", "escalate"),
        Overdue("returning", "remind_return"),
        Overdue("return_overdue", "escalate"),
    ),
    effects={
        "request_material": _on_request_material,
        "supply": _on_supply("registered"),
        "supply_resume": _on_supply("in_progress"),
        "return": _on_return,
        "escalate": _on_escalate,
    },
)


# -- the common superior's item ---------------------------------------------------------------------

DECISIONS = {"督办": "supervise", "提级": "take_up", "指定": "designate"}


def _esc_create(data: Data) -> Data:
    out: Data = {}
    for key in ("entrust_item", "entrusting", "entrusted", "item", "state_before", "text"):
        if data.get(key) is not None:
            out[key] = str(data[key])[:20_000]
    for key in ("entrusting", "entrusted"):
        try:
            CourtCode.parse(str(out.get(key, "")))
        except InvalidCode as exc:
            raise InvalidInput(f"entrust escalation: {key}: {exc}") from None
    return out


def _esc_decide(data: Data) -> Data:
    decision = data.get("decision", "督办")
    if decision not in DECISIONS:
        raise InvalidInput(f"escalation decision must be one of {', '.join(DECISIONS)}")
    out: Data = {"decision": decision, "decision_text": _text(data, "text", "escalation decision", limit=20_000)}
    if decision == "指定":
        out["designated_court"] = str(CourtCode.parse(str(data.get("court", ""))))
    return out


def _on_esc_decide(wtx: WorkflowTx) -> None:
    """The superior's decision reaches the entrusted court as a supervision letter (督办函)."""
    if not wtx.local:
        return
    row = wtx.row
    entrusted = CourtCode.parse(str(row["data"]["entrusted"]))
    decision = str(row["data"]["decision"])
    text = f"{row['data'].get('text', '')}\n决定：{decision}"
    if row["data"].get("designated_court"):
        text += f"（指定{row['data']['designated_court']}办理）"
    if row["data"].get("decision_text"):
        text += f"\n{row['data']['decision_text']}"
    link = linked_id(row["item_id"], "supervision")
    case = str(row["case_number"] or "")
    open_linked(wtx, "supervision", entrusted, link, f"关于委托事项的督办函：{case}", {"text": text[:20_000]}, case)
    merge_data(wtx, {"supervision_item": link})


ESCALATION = WorkflowSpec(
    name="entrust_escalation",
    label="委托事项报请督办",
    relation=Relation.UPWARD,
    initial="reported",
    create_check=_esc_create,
    steps=(Step("decide", frozenset({"reported"}), "decided", "party", clear(), _esc_decide, "作出决定"),),
    effects={"decide": _on_esc_decide},
)

SPECS = [ESCALATION]


# -- admin operations ------------------------------------------------------------------------------

STEP_ARGS: dict[str, Callable[[Mapping[str, Any]], Data]] = {
    "register": lambda a: {k: a[k] for k in ("handler", "phone", "note") if a.get(k)},
    "request_material": lambda a: {"text": a.get("text", "")},
    "supply": lambda a: {"text": a.get("text", "")},
    "progress": lambda a: {"note": a.get("note", "")},
    "complete": lambda a: {"result": a.get("result", "")},
    "return": lambda a: {"reason": a.get("reason", ""), **({"approval": a["approval"]} if a.get("approval") else {})},
    "hand_back": lambda a: {"text": a.get("text", "")},
    "escalate": lambda a: {},
    "withdraw": lambda a: {"reason": a.get("reason", "")},
}


class Entrust:
    """The node side: admin operations and the agency hand-off."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.wake = asyncio.Event()

    async def _audited(self, what: str, op: Awaitable[Any]) -> Any:
        """Run an operation; a refusal (authority, trust or a named rule) is audited here first."""
        try:
            return await op
        except (AuthorityError, TrustError, InvalidInput) as exc:
            if not isinstance(exc, InvalidInput) or exc.reason in RULE_REASONS:
                await self.node.audit_event("refused", str(self.node.me), exc.reason, f"{what}: {exc.message}")
            raise

    async def _row(self, text: str) -> dict[str, Any]:
        try:
            item_id = await resolve(self.node, "entrust", text)
            history = await self.node.workflows.history(item_id)
        except NotFound:
            item_id, history = text, {"items": []}
        rows = [r for r in history["items"] if r["workflow"] == "entrust"]
        if not rows:
            raise AuthorityError(
                f"no entrusted matter {item_id} at {self.node.me}: only the entrusting and the entrusted court "
                "may act on it",
                reason="not_a_party",
            )
        return dict(rows[0])

    # -- create ----------------------------------------------------------------------------------
    async def create(self, args: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._audited(f"entrust.create to {args.get('to')}", self._create(args))
        return result

    async def _create(self, args: Mapping[str, Any]) -> dict[str, Any]:
        to = CourtCode.parse(str(args.get("to", "")))
        item = str(args.get("item", ""))
        case = str(CaseNumber.parse(str(args.get("case_number", "")).strip()))
        if CaseNumber.parse(case).court != self.node.me:
            raise AuthorityError(
                f"case {case} belongs to {CaseNumber.parse(case).court}; {self.node.me} may entrust only its own cases",
                reason="wrong_court",
            )
        data: Data = {"item": item, "submitted_ms": self.node.clock.now_ms(), "text": str(args.get("text", ""))}
        if args.get("subject_name") or args.get("id_number"):
            data["subject"] = {
                "name": str(args.get("subject_name", "")),
                "id_number": str(args.get("id_number", "")),
                "id_type": str(args.get("id_type") or "resident_id"),
            }
        for key in ("agency", "asset", "amount_fen", "term_days"):
            if args.get(key) is not None:
                data[key] = args[key]
        expiry = args.get("measure_expiry")
        if expiry is not None:
            data["measure_expiry_ms"] = expiry if isinstance(expiry, int) else parse_when(str(expiry))
        files = _files(args)
        title = str(args.get("title") or f"{ITEMS.get(item, item)}事项委托：{case}")
        item_id = await self.node.workflows.create("entrust", [to], title, data, case_number=case, files=files)
        return await self.show({"item_id": item_id})

    # -- steps -------------------------------------------------------------------------------------
    async def step(self, action: str, args: Mapping[str, Any]) -> dict[str, Any]:
        item_id = str(args.get("item_id", ""))

        async def run() -> dict[str, Any]:
            row = await self._row(item_id)
            step = action
            data = STEP_ARGS[action](args) if action in STEP_ARGS else dict(args.get("data") or {})
            if action == "supply" and row["data"].get("material_from") == "in_progress":
                step = "supply_resume"
            if action == "return" and args.get("approval_item"):
                data["approval"] = await token_for(self.node, str(args["approval_item"]))
            item = str(row["item_id"])
            await self.node.workflows.act(item, CourtCode.parse(row["party"]), step, data, files=_files(args))
            return await self.show({"item_id": item})

        result: dict[str, Any] = await self._audited(f"entrust.{action} {item_id}", run())
        return result

    # -- queries -----------------------------------------------------------------------------------
    async def list_items(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = await self.node.workflows.items("entrust", overdue_only=bool(args.get("overdue")))
        state = args.get("state")
        return [_summary(r) for r in rows if not state or r["state"] == state]

    async def show(self, args: Mapping[str, Any]) -> dict[str, Any]:
        row = await self._row(str(args.get("item_id", "")))
        item_id = str(row["item_id"])
        history = await self.node.workflows.history(item_id)
        listed = [r for r in await self.node.workflows.items("entrust") if r["item_id"] == item_id]
        out = _summary(listed[0] if listed else row)
        out["data"] = row["data"]
        out["events"] = history["events"]
        return out

    # -- the agency hand-off -----------------------------------------------------------------------
    async def execute(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """B runs the matter through its own agency plugins (when it holds the capability)."""
        item_id = str(args.get("item_id", ""))

        async def run() -> dict[str, Any]:
            row = await self._row(item_id)
            item_id_full = str(row["item_id"])
            if row["role"] != "party":
                raise AuthorityError(
                    f"only the entrusted court {row['party']} executes matter {item_id}", reason="not_authorized"
                )
            item = str(row["data"]["item"])
            if item not in AGENCY_ITEMS:
                raise InvalidInput(f"a {ITEMS[item]} matter is done by hand: record it with `entrust complete`")
            capability = _capability(row["data"])
            plugin = self.node.agency.local.for_court(capability, self.node.me)
            if plugin is None:
                raise NotFound(
                    f"{self.node.me} has no plugin for {capability}: record the result by hand with `entrust complete`",
                    reason="no_capability",
                )
            data = {
                "note": f"经{plugin}（{capability}）办理",
                "agency_request_id": uuid.uuid4().hex,
                "capability": capability,
                "plugin": plugin,
                "agency_requested_ms": self.node.clock.now_ms(),
            }
            await self.node.workflows.act(item_id_full, self.node.me, "progress", data)
            self.wake.set()
            return await self.show({"item_id": item_id_full})

        result: dict[str, Any] = await self._audited(f"entrust.execute {item_id}", run())
        return result

    def request_for(self, row: Mapping[str, Any]) -> InquiryRequest | ControlRequest:
        """The agency request of a matter (the same every time: resubmission is idempotent)."""
        data = row["data"]
        settings = self.node.config.agency
        try:
            subject = Subject(
                str(data["subject"]["name"]), str(data["subject"]["id_number"]), IdType(data["subject"]["id_type"])
            )
        except ValueError as exc:
            raise InvalidInput(f"entrusted matter {row['item_id']}: subject: {exc}") from None
        item = str(data["item"])
        action = ControlAction.FREEZE if item == "freeze" else ControlAction.SEAL
        rid = str(data["agency_request_id"])
        court = CourtInfo(
            court_code=str(self.node.me),
            court_name=self.node.config.node.name,
            judge_name=settings.judge_name,
            judge_phone=settings.judge_phone or None,
            officer_ids=tuple(settings.officer_ids),
            document_name=DOCUMENTS.get(INQUIRY if item == "inquire" else action),
            document_no=f"{row['case_number']}之委{rid[:6]}",
        )
        if item == "inquire":
            return InquiryRequest(
                request_id=rid,
                capability=str(data["capability"]),
                case_number=str(row["case_number"]),
                court=court,
                subject=subject,
                created_at_ms=int(data["agency_requested_ms"]),
            )
        return ControlRequest(
            request_id=rid,
            capability=str(data["capability"]),
            action=action,
            case_number=str(row["case_number"]),
            court=court,
            subject=subject,
            asset_id=data.get("asset"),
            amount_fen=data.get("amount_fen"),
            term_days=data.get("term_days"),
            created_at_ms=int(data["agency_requested_ms"]),
        )

    async def reconcile(self) -> int:
        """Submit what was recorded but not queued; complete matters whose agency job ended."""

        def read(conn: Connection) -> list[dict[str, Any]]:
            q = select(workflow_items).where(
                workflow_items.c.workflow == "entrust",
                workflow_items.c.state == "in_progress",
                workflow_items.c.role == "party",
            )
            out = []
            for r in conn.execute(q).all():
                data = json.loads(r.data)
                if data.get("agency_request_id") and data.get("agency_settled") != data["agency_request_id"]:
                    out.append({"item_id": r.item_id, "case_number": r.case_number, "data": data})
            return out

        rows = await self.node.store.read(read)
        done = 0
        for row in rows:
            rid = str(row["data"]["agency_request_id"])
            queue = self.node.agency.queue
            if queue is None:
                return done
            job = await queue.get(rid)
            if job is None:
                request = self.request_for(row)
                plugin = str(row["data"]["plugin"])
                if isinstance(request, InquiryRequest):
                    await queue.submit_inquiry(plugin, request)
                else:
                    await queue.submit_control(plugin, request)
                continue
            if not job.final:
                continue
            item_id = row["item_id"]
            if job.status == "answered" and job.result is not None:
                result = job.result
                content = json.dumps(result, ensure_ascii=False, indent=2).encode()
                attachment = make_attachment(f"agency-result-{rid[:8]}.json", content, "application/json")
                await self.node.workflows.act(
                    item_id,
                    self.node.me,
                    "complete",
                    {
                        "result": _describe(str(row["data"]["item"]), result),
                        "agency_result": _compact(result),
                        "agency_request_id": rid,
                        "agency_settled": rid,
                    },
                    files=[attachment],
                )
            else:
                error = job.error or {}
                await self.node.workflows.act(
                    item_id,
                    self.node.me,
                    "progress",
                    {
                        "note": f"机构未能办理（{job.status}）：{error.get('message', '')}"[:4000],
                        "agency_status": job.status,
                        "agency_settled": rid,
                        "agency_message": str(error.get("message", ""))[:4000],
                    },
                )
            done += 1
        return done

    async def tick(self) -> list[dict[str, Any]]:
        """Take the automatic steps of entrusted matters due now that are this court's to take
        (催办登记, 逾期未补, 催退, escalation); one taken meanwhile by a person is skipped. The node's
        workflow tick runs this every 30 s; ``entrust.tick`` runs it on demand."""
        return await self.node.workflows.tick(TICKED)

    async def run(self) -> None:
        """The agency hand-off, woken by ``execute``, else every second. (Automatic steps are the
        node's workflow tick: :func:`hub.maintenance.workflow_tick_loop`.)"""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)
            self.wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round retries
                log.warning("entrust background check failed: %s", exc)


def _capability(data: Mapping[str, Any]) -> str:
    agency = str(data.get("agency") or DEFAULT_AGENCY.get(str(data.get("item")), "bank"))
    return f"{agency}.inquiry" if data.get("item") == "inquire" else f"{agency}.control"


def _compact(result: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("status", "measure_id", "requested_amount_fen", "controlled_amount_fen", "expires_at_ms", "reason")
    out = {k: result[k] for k in keys if result.get(k) is not None}
    if isinstance(result.get("assets"), list):
        out["assets"] = len(result["assets"])
    return out


def _describe(item: str, result: Mapping[str, Any]) -> str:
    if item == "inquire":
        return f"查询完毕：{len(result.get('assets') or [])}项财产（详见附件）"
    status = result.get("status")
    amount = result.get("controlled_amount_fen")
    text = f"{ITEMS[item]}结果：{status}"
    if result.get("measure_id"):
        text += f"，措施编号{result['measure_id']}"
    if amount is not None:
        text += f"，实际控制{int(amount) / 100:.2f}元"
    if result.get("expires_at_ms"):
        text += f"，期限至{_day(int(result['expires_at_ms']))}"
    if result.get("reason"):
        text += f"（{result['reason']}）"
    return text


def _summary(r: Mapping[str, Any]) -> dict[str, Any]:
    data = r["data"]
    return {
        "item_id": r["item_id"],
        "role": "entrusting" if r["role"] == "issuer" else "entrusted",
        "entrusting": r["issuer"],
        "entrusted": r["party"],
        "item": data.get("item"),
        "case_number": r["case_number"],
        "state": r["state"],
        "deadline": r.get("deadline") or (_iso(r["deadline_ms"]) if r.get("deadline_ms") else None),
        "deadline_ms": r.get("deadline_ms"),
        "overdue": bool(r.get("overdue")),
        "escalated_to": data.get("escalated_to"),
        "result": data.get("result"),
        "title": r["title"],
    }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _files(args: Mapping[str, Any]) -> list[wpb.Attachment]:
    files = args.get("files") or []
    if not isinstance(files, list):
        raise InvalidInput("files must be a list of {name, content_b64}")
    return [make_attachment(str(f["name"]), base64.b64decode(str(f["content_b64"]))) for f in files]


_SERVICES: weakref.WeakKeyDictionary[Node, Entrust] = weakref.WeakKeyDictionary()


def service(node: Node) -> Entrust:
    return _SERVICES[node]


def setup(node: Node) -> None:
    svc = _SERVICES[node] = Entrust(node)
    ops: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
        "entrust.create": svc.create,
        "entrust.list": svc.list_items,
        "entrust.show": svc.show,
        "entrust.execute": svc.execute,
        "entrust.tick": lambda args: svc.tick(),
    }
    for action in STEP_ARGS:
        ops[f"entrust.{action}"] = lambda args, action=action: svc.step(action, args)  # type: ignore[misc]
    for name, op in ops.items():
        node.admin.register(name, op)
    node.spawn(svc.run(), "entrust-agency")
