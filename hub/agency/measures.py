"""Control measures (财产控制措施) a court requested, their expiry and renewal reminders.

One ``measures`` row per control request. Requests that create a measure (冻结, 轮候冻结, 查封,
边控 …) carry its life afterwards in ``state``: ``active`` (in force, with ``expires_at_ms``),
``waiting`` (轮候, with ``queue_position``), then ``released``, ``lapsed`` (not renewed before
expiry) or ``ended``. Requests acting on an earlier measure (续冻, 解冻, 解除轮候, 扣划) name it by
the agency's measure id (``target_measure_id``) and, once done, update that measure's row: a
renewal moves its expiry (and re-arms the reminders), a release ends it.

Waiting measures take effect by themselves at the agency when the earlier measure ends. The hub
learns it from the agency: a control result or an inquiry answer that reports measures (the
``measures`` list in a result's or an asset's ``attributes``: ``measure_id``, ``status``,
``expires_at_ms``, ``queue_position`` …) updates the rows of this court's measures it names.

Reminders (续冻提醒). :func:`check_reminders` runs periodically with the node's clock: a measure in
force whose expiry is within ``lead_days`` gets a first reminder, within ``final_days`` a final
one; a measure past its expiry without renewal has lapsed (民诉法解释 art. 485: renewal must be
requested before expiry). Each stage is raised once per expiry; a renewal re-arms them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from hub.agency.routing import Outcome, agency_of
from hub.agency.schema import ANSWERED, PENDING, TIMED_OUT, measure_reminders, measures
from hub.clock import iso
from hub.errors import InvalidInput, NotFound
from hub.plugins.models import ControlAction, ControlResult, ControlStatus, InvalidModel

DAY_MS = 86_400_000

# Measure states.
ACTIVE = "active"
WAITING = "waiting"
RELEASED = "released"
LAPSED = "lapsed"
ENDED = "ended"

#: Actions whose request creates a measure the hub then tracks.
CREATING = (
    ControlAction.FREEZE,
    ControlAction.WAITING,
    ControlAction.SEAL,
    ControlAction.BORDER_CONTROL,
)
_CREATING_NAMES = tuple(a.value for a in CREATING)
#: Actions that act on an earlier measure named by its agency id.
ON_MEASURE = (ControlAction.RENEW, ControlAction.RELEASE, ControlAction.RELEASE_WAITING)

#: Legal maximum terms (民诉法解释 2022 art. 485) used when a request names none.
DEFAULT_TERM_DAYS = {"bank": 365, "land": 3 * 365, "public_security": 2 * 365}

#: Agency measure statuses (as agencies report them) → our measure states.
_AGENCY_STATES = {
    "active": ACTIVE,
    "waiting": WAITING,
    "released": RELEASED,
    "cancelled": RELEASED,
    "lapsed": LAPSED,
    "deducted": ENDED,
}


def default_term_days(agency: str) -> int | None:
    return DEFAULT_TERM_DAYS.get(agency)


def add_request(
    conn: Connection,
    *,
    request: dict[str, Any],
    request_id: str,
    case_number: str,
    capability: str,
    action: ControlAction,
    asset_id: str | None,
    target_measure_id: str | None,
    amount_fen: int | None,
    term_days: int | None,
    route: str,
    now_ms: int,
    deadline_at_ms: int,
    plugin: str | None = None,
    served_by: str | None = None,
    envelope_id: str | None = None,
) -> None:
    conn.execute(
        insert(measures).values(
            request_id=request_id,
            request=json.dumps(request, ensure_ascii=False),
            case_number=case_number,
            agency=agency_of(capability),
            capability=capability,
            action=action.value,
            asset_id=asset_id,
            target_measure_id=target_measure_id,
            route=route,
            served_by=served_by,
            plugin=plugin,
            envelope_id=envelope_id,
            status=PENDING,
            requested_amount_fen=amount_fen,
            term_days=term_days,
            requested_at_ms=now_ms,
            deadline_at_ms=deadline_at_ms,
            reminder_stage=0,
        )
    )


def find_measure(conn: Connection, case_number: str, agency: str, asset_id: str, action: ControlAction) -> Any:
    """The measure of this case an action on ``asset_id`` refers to when no measure id is given:
    the newest one in force (waiting ones for 解除轮候)."""
    wanted = (WAITING,) if action is ControlAction.RELEASE_WAITING else (ACTIVE, WAITING)
    row = conn.execute(
        select(measures)
        .where(
            measures.c.case_number == case_number,
            measures.c.agency == agency,
            measures.c.asset_id == asset_id,
            measures.c.state.in_(wanted),
            measures.c.measure_id.is_not(None),
        )
        .order_by(measures.c.requested_at_ms.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound(
            f"case {case_number} has no {'/'.join(wanted)} {agency} measure on {asset_id}: "
            "name it with --measure (the agency's measure id)"
        )
    return row


def _state_after(action: ControlAction, status: ControlStatus) -> str | None:
    if action not in CREATING:
        return None
    if status in (ControlStatus.DONE, ControlStatus.PARTIAL):
        return ACTIVE
    if status is ControlStatus.QUEUED:
        return WAITING
    return None


def _reported_measures(result: Any) -> Iterator[dict[str, Any]]:
    """Measures an agency reports in a result: ``attributes.measures`` of the result and of each
    asset (tolerant: anything not shaped like a measure is skipped)."""
    if not isinstance(result, dict):
        return
    holders: list[Any] = [result.get("attributes")]
    holders += [a.get("attributes") for a in result.get("assets") or [] if isinstance(a, dict)]
    for attrs in holders:
        if not isinstance(attrs, dict):
            continue
        for key in ("measures", "promoted"):
            items = attrs.get(key)
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("measure_id"), str):
                    yield item


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sync_reported(conn: Connection, agency: str, result: Any, now_ms: int) -> list[dict[str, Any]]:
    """Update this court's measures that an agency answer reports on (e.g. a waiting freeze that
    took effect when the earlier one was released). Returns the changes made."""
    changes = []
    for item in _reported_measures(result):
        state = _AGENCY_STATES.get(str(item.get("status")))
        if state is None:
            continue
        row = conn.execute(
            select(measures).where(
                measures.c.measure_id == item["measure_id"],
                measures.c.agency == agency,
                measures.c.action.in_(_CREATING_NAMES),
            )
        ).first()
        if row is None or (row.state == state and _int(item.get("expires_at_ms")) in (None, row.expires_at_ms)):
            continue
        values: dict[str, Any] = {"state": state}
        for key in ("expires_at_ms", "effective_at_ms", "controlled_amount_fen"):
            if _int(item.get(key)) is not None:
                values[key] = item[key]
        values["queue_position"] = _int(item.get("queue_position")) if state == WAITING else None
        if values.get("expires_at_ms") not in (None, row.expires_at_ms):
            values["reminder_stage"] = 0
        conn.execute(update(measures).where(measures.c.request_id == row.request_id).values(**values))
        changes.append(
            {
                "case_number": row.case_number,
                "request_id": row.request_id,
                "measure_id": row.measure_id,
                "from": row.state,
                "to": state,
                "at_ms": now_ms,
            }
        )
    return changes


def apply_control_outcome(conn: Connection, outcome: Outcome, now_ms: int) -> tuple[str, list[dict[str, Any]]] | None:
    """Record how a control request ended; returns (case number, measure changes) or None."""
    row = conn.execute(select(measures).where(measures.c.request_id == outcome.request_id)).first()
    if row is None or row.status not in (PENDING, TIMED_OUT):
        return None
    if row.status == TIMED_OUT and outcome.status != ANSWERED:
        return None
    values: dict[str, Any] = {
        "status": outcome.status,
        "served_by": outcome.served_by,
        "plugin": outcome.plugin or None,
        "answered_at_ms": now_ms,
        "attempts": outcome.attempts,
        "result": json.dumps(outcome.result, ensure_ascii=False) if outcome.result is not None else None,
        "reason": outcome.message if outcome.status != ANSWERED else None,
    }
    changes: list[dict[str, Any]] = []
    action = ControlAction(row.action)
    if outcome.status == ANSWERED:
        try:
            result = ControlResult.from_dict(outcome.result)
        except InvalidModel as exc:
            values.update(status="failed", reason=f"invalid control result: {exc}")
            result = None
        if result is not None:
            values.update(
                outcome=result.status.value,
                measure_id=result.measure_id or row.target_measure_id,
                controlled_amount_fen=result.controlled_amount_fen,
                effective_at_ms=result.effective_at_ms,
                expires_at_ms=result.expires_at_ms,
                queue_position=result.queue_position,
                reason=result.reason,
                state=_state_after(action, result.status),
            )
            if result.requested_amount_fen is not None:
                values["requested_amount_fen"] = result.requested_amount_fen
            if result.status in (ControlStatus.DONE, ControlStatus.PARTIAL) and action in ON_MEASURE:
                changes += _act_on_target(conn, row, action, result, now_ms)
    conn.execute(update(measures).where(measures.c.request_id == outcome.request_id).values(**values))
    changes += sync_reported(conn, row.agency, outcome.result, now_ms)
    return str(row.case_number), changes


def _act_on_target(
    conn: Connection, row: Any, action: ControlAction, result: ControlResult, now_ms: int
) -> list[dict[str, Any]]:
    target = row.target_measure_id or result.measure_id
    if not target:
        return []
    old = conn.execute(
        select(measures).where(
            measures.c.measure_id == target,
            measures.c.case_number == row.case_number,
            measures.c.action.in_(_CREATING_NAMES),
        )
    ).first()
    if old is None:
        return []
    if action is ControlAction.RENEW:
        values: dict[str, Any] = {"reminder_stage": 0, "state": ACTIVE}
        if result.expires_at_ms is not None:
            values["expires_at_ms"] = result.expires_at_ms
        new_state = ACTIVE
    else:
        values = {"state": RELEASED, "queue_position": None}
        new_state = RELEASED
    conn.execute(update(measures).where(measures.c.request_id == old.request_id).values(**values))
    return [
        {
            "case_number": old.case_number,
            "request_id": old.request_id,
            "measure_id": target,
            "from": old.state,
            "to": new_state,
            "expires_at_ms": values.get("expires_at_ms", old.expires_at_ms),
            "at_ms": now_ms,
        }
    ]


def time_out_requests(conn: Connection, now_ms: int) -> list[tuple[str, str]]:
    rows = conn.execute(
        select(measures.c.request_id, measures.c.case_number).where(
            measures.c.status == PENDING, measures.c.deadline_at_ms.is_not(None), measures.c.deadline_at_ms <= now_ms
        )
    ).all()
    for r in rows:
        conn.execute(
            update(measures)
            .where(measures.c.request_id == r.request_id, measures.c.status == PENDING)
            .values(status=TIMED_OUT, answered_at_ms=now_ms, reason="no answer from the agency before the deadline")
        )
    return [(r.case_number, r.request_id) for r in rows]


def pending_local_requests(conn: Connection) -> list[tuple[str, str, dict[str, Any], int | None]]:
    """(request id, plugin, request, deadline) of local control requests still pending."""
    rows = conn.execute(
        select(measures.c.request_id, measures.c.plugin, measures.c.request, measures.c.deadline_at_ms).where(
            measures.c.status == PENDING, measures.c.route == "local"
        )
    ).all()
    return [(r.request_id, r.plugin, json.loads(r.request), r.deadline_at_ms) for r in rows]


# -- reminders -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reminder:
    request_id: str
    case_number: str
    measure_id: str | None
    agency: str
    plugin: str | None
    route: str
    action: str
    asset_id: str | None
    kind: str  # renewal_due | lapsed
    stage: int
    expires_at_ms: int
    days_left: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "case_number": self.case_number,
            "measure_id": self.measure_id,
            "agency": self.agency,
            "action": self.action,
            "asset_id": self.asset_id,
            "kind": self.kind,
            "stage": self.stage,
            "expires_at_ms": self.expires_at_ms,
            "expires_at": iso(self.expires_at_ms),
            "days_left": self.days_left,
        }


def check_reminders(conn: Connection, now_ms: int, lead_days: int, final_days: int) -> list[Reminder]:
    """Raise the reminders due at ``now_ms`` (and lapse measures past expiry); see module doc."""
    if final_days >= lead_days:
        final_days = 0
    horizon = now_ms + lead_days * DAY_MS
    rows = conn.execute(
        select(measures).where(
            measures.c.state == ACTIVE,
            measures.c.expires_at_ms.is_not(None),
            measures.c.expires_at_ms <= horizon,
            or_(measures.c.reminder_stage < 2, measures.c.expires_at_ms <= now_ms),
        )
    ).all()
    raised: list[Reminder] = []
    for r in rows:
        days_left = math.ceil((r.expires_at_ms - now_ms) / DAY_MS)
        if r.expires_at_ms <= now_ms:
            kind, stage = "lapsed", 3
            conn.execute(update(measures).where(measures.c.request_id == r.request_id).values(state=LAPSED))
        elif final_days and days_left <= final_days and r.reminder_stage < 2:
            kind, stage = "renewal_due", 2
        elif r.reminder_stage < 1:
            kind, stage = "renewal_due", 1
        else:
            continue
        if stage <= 2:
            conn.execute(update(measures).where(measures.c.request_id == r.request_id).values(reminder_stage=stage))
        reminder = Reminder(
            request_id=r.request_id,
            case_number=r.case_number,
            measure_id=r.measure_id,
            agency=r.agency,
            plugin=r.plugin,
            route=r.route,
            action=r.action,
            asset_id=r.asset_id,
            kind=kind,
            stage=stage,
            expires_at_ms=r.expires_at_ms,
            days_left=days_left,
        )
        conn.execute(
            insert(measure_reminders).values(
                request_id=r.request_id,
                case_number=r.case_number,
                measure_id=r.measure_id,
                agency=r.agency,
                asset_id=r.asset_id,
                kind=kind,
                stage=stage,
                expires_at_ms=r.expires_at_ms,
                days_left=days_left,
                raised_at_ms=now_ms,
            )
        )
        raised.append(reminder)
    return raised


# -- reading ---------------------------------------------------------------------------------


def measure_rows(conn: Connection, case_number: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(measures).where(measures.c.case_number == case_number).order_by(measures.c.requested_at_ms)
    ).all()
    return [
        {
            "request_id": r.request_id,
            "agency": r.agency,
            "action": r.action,
            "asset_id": r.asset_id,
            "target_measure_id": r.target_measure_id,
            "route": r.route,
            "served_by": r.served_by,
            "plugin": r.plugin,
            "status": r.status,
            "outcome": r.outcome,
            "state": r.state,
            "measure_id": r.measure_id,
            "requested_amount_fen": r.requested_amount_fen,
            "controlled_amount_fen": r.controlled_amount_fen,
            "term_days": r.term_days,
            "effective_at_ms": r.effective_at_ms,
            "expires_at_ms": r.expires_at_ms,
            "expires_at": iso(r.expires_at_ms) if r.expires_at_ms else None,
            "queue_position": r.queue_position,
            "reason": r.reason,
            "requested_at_ms": r.requested_at_ms,
            "answered_at_ms": r.answered_at_ms,
            "elapsed_ms": (r.answered_at_ms - r.requested_at_ms) if r.answered_at_ms else None,
            "reminder_stage": r.reminder_stage,
            "result": json.loads(r.result) if r.result else None,
        }
        for r in rows
    ]


def reminder_rows(conn: Connection, case_number: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    q = select(measure_reminders).order_by(measure_reminders.c.id.desc()).limit(limit)
    if case_number is not None:
        q = q.where(measure_reminders.c.case_number == case_number)
    return [
        {
            "case_number": r.case_number,
            "request_id": r.request_id,
            "measure_id": r.measure_id,
            "agency": r.agency,
            "asset_id": r.asset_id,
            "kind": r.kind,
            "stage": r.stage,
            "expires_at_ms": r.expires_at_ms,
            "expires_at": iso(r.expires_at_ms),
            "days_left": r.days_left,
            "raised_at_ms": r.raised_at_ms,
            "raised_at": iso(r.raised_at_ms),
        }
        for r in conn.execute(q).all()
    ]


def parse_action(text: str) -> ControlAction:
    """CLI action names (freeze, renew, wait, release, release-waiting, deduct, freeze-deduct,
    seal, border-control, location) → ControlAction."""
    names = {
        "freeze": ControlAction.FREEZE,
        "renew": ControlAction.RENEW,
        "wait": ControlAction.WAITING,
        "waiting": ControlAction.WAITING,
        "release": ControlAction.RELEASE,
        "release-waiting": ControlAction.RELEASE_WAITING,
        "release_waiting": ControlAction.RELEASE_WAITING,
        "deduct": ControlAction.DEDUCT,
        "freeze-deduct": ControlAction.FREEZE_AND_DEDUCT,
        "freeze_and_deduct": ControlAction.FREEZE_AND_DEDUCT,
        "seal": ControlAction.SEAL,
        "border-control": ControlAction.BORDER_CONTROL,
        "border_control": ControlAction.BORDER_CONTROL,
        "location": ControlAction.LOCATION,
    }
    action = names.get(text.strip().lower())
    if action is None:
        raise InvalidInput(f"control action {text!r} must be one of {', '.join(sorted(set(names) - {'waiting'}))}")
    return action
