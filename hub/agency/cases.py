"""Enforcement cases (执行案件) and their 立案即查 inquiries: the rows and how they change.

Everything here runs inside a store transaction handed in by :mod:`hub.agency.service`; the
orchestration (bus event, job queue, envelopes) lives there. A case belongs to the court of its
案号; filing stores it once (the same filing again is a no-op, a different party under the same
案号 is refused). Inquiry rows are written in the transaction that marks the case's inquiries as
started, so a crash either starts all of them or none, and recovery finishes the job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hub.agency.routing import Outcome, agency_of
from hub.agency.schema import ANSWERED, FAILED, PENDING, TIMED_OUT, case_inquiries, cases
from hub.clock import iso
from hub.errors import InvalidInput
from hub.plugins.models import CourtInfo, Subject


@dataclass(frozen=True)
class CaseRecord:
    case_number: str
    court: str
    party: Subject
    amount_fen: int | None
    judge_name: str
    judge_phone: str | None
    officer_ids: tuple[str, ...]
    filed_at_ms: int
    inquiries_started_at_ms: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> CaseRecord:
        return cls(
            case_number=row.case_number,
            court=row.court,
            party=Subject(row.party_name, row.id_no, row.id_type),
            amount_fen=row.amount_fen,
            judge_name=row.judge_name,
            judge_phone=row.judge_phone,
            officer_ids=tuple(json.loads(row.officer_ids or "[]")),
            filed_at_ms=row.filed_at_ms,
            inquiries_started_at_ms=row.inquiries_started_at_ms,
        )

    def court_info(
        self, court_name: str, document_name: str | None = None, document_no: str | None = None
    ) -> CourtInfo:
        return CourtInfo(
            court_code=self.court,
            court_name=court_name,
            judge_name=self.judge_name,
            judge_phone=self.judge_phone or None,
            officer_ids=self.officer_ids,
            document_name=document_name,
            document_no=document_no,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "case_number": self.case_number,
            "court": self.court,
            "party": self.party.to_dict(),
            "amount_fen": self.amount_fen,
            "judge_name": self.judge_name,
            "filed_at_ms": self.filed_at_ms,
            "filed_at": iso(self.filed_at_ms),
        }


def load_case(conn: Connection, case_number: str) -> CaseRecord | None:
    row = conn.execute(select(cases).where(cases.c.case_number == case_number)).first()
    return CaseRecord.from_row(row) if row is not None else None


_INSERT_CASE: dict[str, Any] = {}  # dialect name → INSERT … ON CONFLICT DO NOTHING (built once)


def _insert_case_statement(conn: Connection) -> Any:
    name = conn.dialect.name
    statement = _INSERT_CASE.get(name)
    if statement is None:
        if name == "postgresql":
            statement = postgresql.insert(cases).on_conflict_do_nothing(index_elements=[cases.c.case_number])
        elif name == "sqlite":
            statement = sqlite.insert(cases).on_conflict_do_nothing(index_elements=[cases.c.case_number])
        else:
            statement = None
        _INSERT_CASE[name] = statement
    return statement


def insert_case(conn: Connection, record: CaseRecord) -> bool:
    """Store a filed case; False when the same filing is already stored. A different party under
    the same 案号 is refused. One statement when the case is new (the usual filing)."""
    values = {
        "case_number": record.case_number,
        "court": record.court,
        "party_name": record.party.name,
        "id_type": record.party.id_type.value,
        "id_no": record.party.id_no,
        "amount_fen": record.amount_fen,
        "judge_name": record.judge_name,
        "judge_phone": record.judge_phone,
        "officer_ids": json.dumps(list(record.officer_ids), ensure_ascii=False),
        "filed_at_ms": record.filed_at_ms,
    }
    statement = _insert_case_statement(conn)
    if statement is not None and conn.execute(statement, values).rowcount == 1:
        return True
    existing = load_case(conn, record.case_number)
    if existing is not None:
        if existing.party != record.party:
            raise InvalidInput(
                f"case {record.case_number} is already filed with 被执行人 {existing.party.name} "
                f"({existing.party.id_no}); a 案号 names one case",
                reason="case_exists",
            )
        return False
    conn.execute(insert(cases).values(**values))
    return True


def load_cases(conn: Connection, case_numbers: list[str]) -> list[CaseRecord]:
    rows = conn.execute(select(cases).where(cases.c.case_number.in_(case_numbers))).all()
    return [CaseRecord.from_row(r) for r in rows]


def claim_inquiry_start(conn: Connection, case_numbers: list[str], now_ms: int) -> set[str]:
    """Mark the cases' inquiries as started; returns those not started before (start them once)."""
    fresh = set(
        conn.execute(
            select(cases.c.case_number).where(
                cases.c.case_number.in_(case_numbers), cases.c.inquiries_started_at_ms.is_(None)
            )
        ).scalars()
    )
    if fresh:
        conn.execute(
            update(cases)
            .where(cases.c.case_number.in_(fresh), cases.c.inquiries_started_at_ms.is_(None))
            .values(inquiries_started_at_ms=now_ms)
        )
    return fresh


def inquiry_row(
    *,
    request: dict[str, Any],
    request_id: str,
    case_number: str,
    capability: str,
    route: str,
    now_ms: int,
    deadline_at_ms: int,
    plugin: str | None = None,
    served_by: str | None = None,
    envelope_id: str | None = None,
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "request": json.dumps(request, ensure_ascii=False),
        "case_number": case_number,
        "capability": capability,
        "agency": agency_of(capability),
        "route": route,
        "served_by": served_by,
        "plugin": plugin,
        "envelope_id": envelope_id,
        "status": PENDING,
        "requested_at_ms": now_ms,
        "deadline_at_ms": deadline_at_ms,
    }


def insert_inquiries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(case_inquiries), rows)


def apply_inquiry_outcome(conn: Connection, outcome: Outcome, now_ms: int) -> tuple[str, str] | None:
    """Record how an inquiry ended; returns its (case number, agency), or None if no pending row
    matched.

    A late answer still replaces a ``timed_out`` state: the agency's data is worth having."""
    row = conn.execute(
        select(case_inquiries.c.case_number, case_inquiries.c.status, case_inquiries.c.agency).where(
            case_inquiries.c.request_id == outcome.request_id
        )
    ).first()
    if row is None or row.status not in (PENDING, TIMED_OUT):
        return None
    if row.status == TIMED_OUT and outcome.status != ANSWERED:
        return None
    conn.execute(
        update(case_inquiries)
        .where(case_inquiries.c.request_id == outcome.request_id)
        .values(
            status=outcome.status,
            served_by=outcome.served_by,
            plugin=outcome.plugin or None,
            answered_at_ms=now_ms,
            attempts=outcome.attempts,
            result=json.dumps(outcome.result, ensure_ascii=False) if outcome.result is not None else None,
            reason=outcome.reason,
            message=outcome.message,
        )
    )
    return str(row.case_number), str(row.agency)


def apply_inquiry_outcomes(
    conn: Connection, outcomes: list[Outcome], now_ms: int, found: set[str] | None = None
) -> list[tuple[Outcome, str, str]]:
    """:func:`apply_inquiry_outcome` for many at once (one select, one executemany update);
    returns (outcome, case number, agency) of those applied. Outcomes of other requests are
    ignored. ``found`` receives the request ids that are inquiries, applied or not."""
    if not outcomes:
        return []
    rows = {
        r.request_id: r
        for r in conn.execute(
            select(
                case_inquiries.c.request_id,
                case_inquiries.c.case_number,
                case_inquiries.c.status,
                case_inquiries.c.agency,
            ).where(case_inquiries.c.request_id.in_([o.request_id for o in outcomes]))
        )
    }
    if found is not None:
        found.update(rows)
    applied: list[tuple[Outcome, str, str]] = []
    params: list[dict[str, Any]] = []
    for o in outcomes:
        row = rows.get(o.request_id)
        if row is None or row.status not in (PENDING, TIMED_OUT) or (row.status == TIMED_OUT and o.status != ANSWERED):
            continue
        applied.append((o, str(row.case_number), str(row.agency)))
        params.append(
            {
                "rid": o.request_id,
                "status": o.status,
                "served_by": o.served_by,
                "plugin": o.plugin or None,
                "answered_at_ms": now_ms,
                "attempts": o.attempts,
                "result": json.dumps(o.result, ensure_ascii=False) if o.result is not None else None,
                "reason": o.reason,
                "message": o.message,
            }
        )
    if params:
        conn.execute(
            update(case_inquiries)
            .where(case_inquiries.c.request_id == bindparam("rid"))
            .values(
                status=bindparam("status"),
                served_by=bindparam("served_by"),
                plugin=bindparam("plugin"),
                answered_at_ms=bindparam("answered_at_ms"),
                attempts=bindparam("attempts"),
                result=bindparam("result"),
                reason=bindparam("reason"),
                message=bindparam("message"),
            ),
            params,
        )
    return applied


def time_out_inquiries(conn: Connection, now_ms: int) -> list[tuple[str, str]]:
    """Pending inquiries past their deadline become ``timed_out``; returns (case, request id)."""
    rows = conn.execute(
        select(case_inquiries.c.request_id, case_inquiries.c.case_number).where(
            case_inquiries.c.status == PENDING,
            case_inquiries.c.deadline_at_ms.is_not(None),
            case_inquiries.c.deadline_at_ms <= now_ms,
        )
    ).all()
    for r in rows:
        conn.execute(
            update(case_inquiries)
            .where(case_inquiries.c.request_id == r.request_id, case_inquiries.c.status == PENDING)
            .values(
                status=TIMED_OUT,
                answered_at_ms=now_ms,
                reason="deadline",
                message="no answer from the agency before the deadline",
            )
        )
    return [(r.case_number, r.request_id) for r in rows]


def cases_to_start(conn: Connection, older_than_ms: int) -> list[str]:
    return list(
        conn.execute(
            select(cases.c.case_number).where(
                cases.c.inquiries_started_at_ms.is_(None), cases.c.filed_at_ms <= older_than_ms
            )
        ).scalars()
    )


def pending_local_inquiries(conn: Connection) -> list[tuple[str, str, dict[str, Any], int | None]]:
    """(request id, plugin, request, deadline) of local inquiries still pending (to resubmit or
    settle after a crash)."""
    rows = conn.execute(
        select(
            case_inquiries.c.request_id,
            case_inquiries.c.plugin,
            case_inquiries.c.request,
            case_inquiries.c.deadline_at_ms,
        ).where(case_inquiries.c.status == PENDING, case_inquiries.c.route == "local")
    ).all()
    return [(r.request_id, r.plugin, json.loads(r.request), r.deadline_at_ms) for r in rows]


# -- reading ---------------------------------------------------------------------------------


def _assets_summary(result: dict[str, Any] | None) -> dict[str, Any]:
    if not result:
        return {"count": 0, "total_amount_fen": 0, "kinds": {}}
    assets = result.get("assets") or []
    kinds: dict[str, int] = {}
    total = 0
    for a in assets:
        if not isinstance(a, dict):
            continue
        kinds[str(a.get("kind"))] = kinds.get(str(a.get("kind")), 0) + 1
        amount = a.get("amount_fen")
        if isinstance(amount, int) and not isinstance(amount, bool):
            total += amount
    return {"count": len(assets), "total_amount_fen": total, "kinds": kinds}


def inquiry_rows(conn: Connection, case_number: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(case_inquiries)
        .where(case_inquiries.c.case_number == case_number)
        .order_by(case_inquiries.c.agency, case_inquiries.c.requested_at_ms)
    ).all()
    out = []
    for r in rows:
        result = json.loads(r.result) if r.result else None
        out.append(
            {
                "request_id": r.request_id,
                "agency": r.agency,
                "capability": r.capability,
                "route": r.route,
                "served_by": r.served_by,
                "plugin": r.plugin,
                "status": r.status,
                "answer": (result or {}).get("status"),
                "requested_at_ms": r.requested_at_ms,
                "answered_at_ms": r.answered_at_ms,
                "elapsed_ms": (r.answered_at_ms - r.requested_at_ms) if r.answered_at_ms else None,
                "attempts": r.attempts,
                "reason": r.reason,
                "message": r.message,
                "assets": _assets_summary(result),
                "result": result,
            }
        )
    return out


def case_overview(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Cases newest first, with per-state inquiry counts and the time of the last answer."""
    rows = conn.execute(select(cases).order_by(cases.c.filed_at_ms.desc()).limit(limit)).all()
    numbers = [r.case_number for r in rows]
    counts: dict[str, dict[str, int]] = {}
    last: dict[str, int | None] = {}
    if numbers:
        for case_number, status, n, latest in conn.execute(
            select(
                case_inquiries.c.case_number,
                case_inquiries.c.status,
                func.count(),
                func.max(case_inquiries.c.answered_at_ms),
            )
            .where(case_inquiries.c.case_number.in_(numbers))
            .group_by(case_inquiries.c.case_number, case_inquiries.c.status)
        ):
            counts.setdefault(case_number, dict.fromkeys((PENDING, ANSWERED, FAILED, TIMED_OUT), 0))[status] = n
            if latest is not None:
                last[case_number] = max(last.get(case_number) or 0, int(latest))
    out = []
    for r in rows:
        c = counts.get(r.case_number, dict.fromkeys((PENDING, ANSWERED, FAILED, TIMED_OUT), 0))
        out.append(
            {
                "case_number": r.case_number,
                "party_name": r.party_name,
                "filed_at_ms": r.filed_at_ms,
                "inquiries_started_at_ms": r.inquiries_started_at_ms,
                "inquiries": c,
                "last_answer_at_ms": last.get(r.case_number),
            }
        )
    return out
