"""督办 Supervision: an upper court supervises one case at a lower court.

The letter (督办函) names the case and a reply deadline (default 10 days). The lower court replies;
the upper court closes it. Overdue → an automatic reminder (催报) with 5 more days; still overdue →
escalation recorded as a decision: 调卷 (call for the file), 提级 (take the case up) or 指定 (designate
another court, named in the decision).
"""

from __future__ import annotations

from typing import Any

from hub.codes import CaseNumber, CourtCode
from hub.errors import InvalidInput
from hub.workflows.engine import Data, Overdue, Relation, Step, WorkflowSpec, clear, days

ESCALATIONS = {"调卷": "call_file", "提级": "take_up", "指定": "designate"}


def _create(data: Data) -> Data:
    reply_days = data.get("reply_days", 10)
    if not isinstance(reply_days, int) or not 1 <= reply_days <= 90:
        raise InvalidInput("supervision: reply_days must be a whole number of days, 1–90")
    text = str(data.get("text", ""))
    if len(text) > 20_000:
        raise InvalidInput("supervision: text is longer than 20,000 characters")
    return {"reply_days": reply_days, "text": text}


def _reply(data: Data) -> Data:
    text = str(data.get("text", "")).strip()
    if not text:
        raise InvalidInput("supervision reply: text is required")
    return {"reply": text[:20_000]}


def _escalate(data: Data) -> Data:
    option = data.get("option", "调卷")
    if option not in ESCALATIONS:
        raise InvalidInput(f"supervision escalation must be one of {', '.join(ESCALATIONS)}")
    out: dict[str, Any] = {"escalation": option}
    if option == "指定":
        out["designated_court"] = str(CourtCode.parse(str(data.get("court", ""))))
    return out


SPEC = WorkflowSpec(
    name="supervision",
    label="督办",
    relation=Relation.DOWNWARD,
    initial="issued",
    create_check=_create,
    create_deadline=lambda now, d: now + int(d["reply_days"]) * 86_400_000,
    steps=(
        Step("reply", frozenset({"issued", "reminded"}), "replied", "party", clear(), _reply, "回复"),
        Step("remind", frozenset({"issued"}), "reminded", "issuer", days(5), None, "催报"),
        Step("escalate", frozenset({"issued", "reminded"}), "escalated", "issuer", clear(), _escalate, "升级处理"),
        Step("close", frozenset({"replied"}), "closed", "issuer", clear(), None, "办结"),
    ),
    overdue=(Overdue("issued", "remind"), Overdue("reminded", "escalate")),
)


def parse_case(text: str) -> str:
    return str(CaseNumber.parse(text))
