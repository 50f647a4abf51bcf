"""Wire model shared by every agency: who asks (:class:`CourtInfo`), about whom (:class:`Subject`),
control orders (:class:`ControlOrder`) and their answers (:class:`ControlResult`,
:class:`MeasureView`).

Each type parses itself from a :class:`~plugins.agency.fields.Fields` (the simulator uses that for
requests, the client for replies, so both sides agree on one definition) and renders itself with
``to_json()``. Amounts are integers in fen (分, 1/100 yuan); instants are epoch milliseconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from plugins.agency.fields import Fields
from plugins.agency.synth import resident_id_problem

REQUEST_ID_PATTERN = r"[A-Za-z0-9._:\-]{1,64}"
# Court code (法院代字): province abbreviation, optionally + 2 (intermediate) or 4 (basic) digits.
COURT_CODE_PATTERN = r"[\u4e00-\u9fff]{1,3}(\d{2}|\d{4})?"
# Case number (案号): （2024）豫1402执123号 — ASCII or full-width brackets, enforcement case types.
CASE_NO_PATTERN = r"[（(]\d{4}[）)][\u4e00-\u9fff]{1,3}(\d{2}|\d{4})?执[恢保异复监协他]?\d{1,6}号"
PHONE_PATTERN = r"[0-9+\- ]{6,20}"


class IdType(StrEnum):
    RESIDENT_ID = "resident_id"  # 居民身份证
    USCC = "uscc"  # 统一社会信用代码 (legal persons)
    PASSPORT = "passport"  # 护照


class ControlCode(StrEnum):
    """Control codes (控制类型代码) as used in bank practice; land and vehicles reuse 01–05."""

    FREEZE = "01"  # 冻结 / 查封
    RENEW = "02"  # 续冻 / 续封
    WAITING = "03"  # 轮候冻结 / 轮候查封
    RELEASE = "04"  # 解冻 / 解封
    RELEASE_WAITING = "05"  # 解除轮候冻结 / 解除轮候查封
    DEDUCT = "06"  # 扣划
    FREEZE_DEDUCT = "08"  # 冻结并扣划


class MeasureStatus(StrEnum):
    WAITING = "waiting"  # 轮候中
    ACTIVE = "active"  # 生效中
    RELEASED = "released"  # 已解除
    LAPSED = "lapsed"  # 已到期失效
    DEDUCTED = "deducted"  # 已扣划完毕
    CANCELLED = "cancelled"  # 已解除轮候


class Outcome(StrEnum):
    CONTROLLED = "controlled"  # 全额控制
    PARTIALLY_CONTROLLED = "partially_controlled"  # 部分控制
    NOT_CONTROLLED = "not_controlled"  # 未控制
    QUEUED = "queued"  # 已轮候
    RENEWED = "renewed"
    RELEASED = "released"
    CANCELLED = "cancelled"
    TRANSFERRED = "transferred"  # 全额扣划
    PARTIALLY_TRANSFERRED = "partially_transferred"
    NOT_TRANSFERRED = "not_transferred"


@dataclass(frozen=True)
class Subject:
    """The person or organisation asked about (被执行人)."""

    name: str
    id_no: str
    id_type: IdType = IdType.RESIDENT_ID

    @classmethod
    def parse(cls, f: Fields) -> Subject:
        name = f.text("name", max_len=60)
        id_type = IdType(f.opt_text("id_type", choices=[t.value for t in IdType]) or IdType.RESIDENT_ID)
        id_no = f.text("id_no", max_len=30).upper()
        if id_type is IdType.RESIDENT_ID:
            problem = resident_id_problem(id_no)
            if problem:
                raise f.fail("id_no", f"not a valid resident ID number: {problem}")
        elif id_type is IdType.USCC:
            f.text("id_no", pattern=r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")
        else:
            f.text("id_no", pattern=r"[A-Z0-9]{5,17}")
        f.reject_unknown()
        return cls(name=name, id_no=id_no, id_type=id_type)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "id_type": self.id_type.value, "id_no": self.id_no}


@dataclass(frozen=True)
class CourtInfo:
    """The requesting court and the officers acting (协助执行请求要素)."""

    court_code: str
    court_name: str
    case_no: str  # 案号
    judge_name: str  # 承办法官
    judge_phone: str
    officer_ids: tuple[str, str]  # 执行公务证号 ×2
    document_name: str | None = None  # e.g. 协助冻结存款通知书
    document_no: str | None = None  # e.g. （2025）豫1402执123号之一

    @classmethod
    def parse(cls, f: Fields) -> CourtInfo:
        officers = f.texts("officer_ids", count=2, max_len=40)
        info = cls(
            court_code=f.text("court_code", pattern=COURT_CODE_PATTERN),
            court_name=f.text("court_name", max_len=60),
            case_no=f.text("case_no", pattern=CASE_NO_PATTERN, max_len=60),
            judge_name=f.text("judge_name", max_len=30),
            judge_phone=f.text("judge_phone", pattern=PHONE_PATTERN),
            officer_ids=(officers[0], officers[1]),
            document_name=f.opt_text("document_name", max_len=60),
            document_no=f.opt_text("document_no", max_len=80),
        )
        f.reject_unknown()
        return info

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "court_code": self.court_code,
            "court_name": self.court_name,
            "case_no": self.case_no,
            "judge_name": self.judge_name,
            "judge_phone": self.judge_phone,
            "officer_ids": list(self.officer_ids),
        }
        if self.document_name is not None:
            out["document_name"] = self.document_name
        if self.document_no is not None:
            out["document_no"] = self.document_no
        return out


@dataclass(frozen=True)
class ControlOrder:
    """One control request (协助冻结/查封/续冻/解冻/扣划 …). Which fields are needed depends on the
    code: 01/03/08 name ``asset_id``; 02/04/05 name ``measure_id``; 06 names either."""

    request_id: str
    control_code: ControlCode
    court: CourtInfo
    subject: Subject
    asset_id: str | None = None  # account no. / 不动产权证号 / 号牌号码
    measure_id: str | None = None  # the agency's id of an earlier measure
    amount_fen: int | None = None
    term_days: int | None = None
    payee_account: str | None = None  # the court's account for 06/08 (执行款专户)

    @classmethod
    def parse(cls, f: Fields) -> ControlOrder:
        order = cls(
            request_id=f.text("request_id", pattern=REQUEST_ID_PATTERN),
            control_code=ControlCode(f.text("control_code", choices=[c.value for c in ControlCode])),
            court=CourtInfo.parse(f.obj("court")),
            subject=Subject.parse(f.obj("subject")),
            asset_id=f.opt_text("asset_id", max_len=64),
            measure_id=f.opt_text("measure_id", max_len=64),
            amount_fen=f.opt_integer("amount_fen", min=1, max=10**15),
            term_days=f.opt_integer("term_days", min=1, max=36_500),
            payee_account=f.opt_text("payee_account", max_len=64),
        )
        f.reject_unknown()
        return order

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "control_code": self.control_code.value,
            "court": self.court.to_json(),
            "subject": self.subject.to_json(),
        }
        for key in ("asset_id", "measure_id", "amount_fen", "term_days", "payee_account"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class MeasureView:
    """One control measure as the agency records it."""

    measure_id: str
    asset_id: str
    owner_id_no: str
    court_code: str
    court_name: str
    case_no: str
    status: MeasureStatus
    term_days: int
    queued_at_ms: int
    requested_amount_fen: int | None = None
    controlled_amount_fen: int | None = None
    effective_at_ms: int | None = None
    expires_at_ms: int | None = None
    ended_at_ms: int | None = None
    queue_position: int | None = None  # 1-based, waiting measures only
    renewals: int = 0
    note: str | None = None

    @classmethod
    def parse(cls, f: Fields) -> MeasureView:
        return cls(
            measure_id=f.text("measure_id"),
            asset_id=f.text("asset_id"),
            owner_id_no=f.text("owner_id_no"),
            court_code=f.text("court_code"),
            court_name=f.text("court_name"),
            case_no=f.text("case_no"),
            status=MeasureStatus(f.text("status", choices=[s.value for s in MeasureStatus])),
            term_days=f.integer("term_days", min=0),
            queued_at_ms=f.integer("queued_at_ms", min=0),
            requested_amount_fen=f.opt_integer("requested_amount_fen", min=0),
            controlled_amount_fen=f.opt_integer("controlled_amount_fen", min=0),
            effective_at_ms=f.opt_integer("effective_at_ms", min=0),
            expires_at_ms=f.opt_integer("expires_at_ms", min=0),
            ended_at_ms=f.opt_integer("ended_at_ms", min=0),
            queue_position=f.opt_integer("queue_position", min=1),
            renewals=f.integer("renewals", min=0),
            note=f.opt_text("note", strip=False, max_len=2000),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "measure_id": self.measure_id,
            "asset_id": self.asset_id,
            "owner_id_no": self.owner_id_no,
            "court_code": self.court_code,
            "court_name": self.court_name,
            "case_no": self.case_no,
            "status": self.status.value,
            "term_days": self.term_days,
            "queued_at_ms": self.queued_at_ms,
            "requested_amount_fen": self.requested_amount_fen,
            "controlled_amount_fen": self.controlled_amount_fen,
            "effective_at_ms": self.effective_at_ms,
            "expires_at_ms": self.expires_at_ms,
            "ended_at_ms": self.ended_at_ms,
            "queue_position": self.queue_position,
            "renewals": self.renewals,
            "note": self.note,
        }


@dataclass(frozen=True)
class ControlResult:
    """The agency's answer to a :class:`ControlOrder` (协助执行回执)."""

    request_id: str
    control_code: ControlCode
    outcome: Outcome
    answered_at_ms: int
    measure: MeasureView | None = None
    requested_amount_fen: int | None = None
    controlled_amount_fen: int | None = None
    transferred_amount_fen: int | None = None
    reason: str | None = None  # why less than requested was controlled (余额不足, 已被他案冻结 …)
    events: tuple[str, ...] = field(default=())  # side effects, e.g. a waiting measure promoted

    @property
    def complete(self) -> bool:
        """True when the agency did all that was asked."""
        return self.outcome not in (
            Outcome.PARTIALLY_CONTROLLED,
            Outcome.NOT_CONTROLLED,
            Outcome.PARTIALLY_TRANSFERRED,
            Outcome.NOT_TRANSFERRED,
        )

    @classmethod
    def parse(cls, f: Fields) -> ControlResult:
        measure = f.opt_obj("measure")
        return cls(
            request_id=f.text("request_id"),
            control_code=ControlCode(f.text("control_code", choices=[c.value for c in ControlCode])),
            outcome=Outcome(f.text("outcome", choices=[o.value for o in Outcome])),
            answered_at_ms=f.integer("answered_at_ms", min=0),
            measure=MeasureView.parse(measure) if measure is not None else None,
            requested_amount_fen=f.opt_integer("requested_amount_fen", min=0),
            controlled_amount_fen=f.opt_integer("controlled_amount_fen", min=0),
            transferred_amount_fen=f.opt_integer("transferred_amount_fen", min=0),
            reason=f.opt_text("reason", strip=False, max_len=2000),
            events=tuple(f.texts("events", max_len=2000)) if f.has("events") else (),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "control_code": self.control_code.value,
            "outcome": self.outcome.value,
            "answered_at_ms": self.answered_at_ms,
            "measure": self.measure.to_json() if self.measure is not None else None,
            "requested_amount_fen": self.requested_amount_fen,
            "controlled_amount_fen": self.controlled_amount_fen,
            "transferred_amount_fen": self.transferred_amount_fen,
            "reason": self.reason,
            "events": list(self.events),
        }


def yuan(fen: int) -> str:
    """Render an amount in fen as yuan for Chinese reasons: 12345 → '123.45元'."""
    return f"{fen // 100:,}.{fen % 100:02d}元"
