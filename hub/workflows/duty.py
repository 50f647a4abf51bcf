"""值班 Duty roster and sign-in of a court's command center (seed 001: 全天值班制度, 值班签到).

Each court keeps a roster — one duty officer per (Beijing) calendar day, with a phone number for
notifications — and a sign-in: the officer who actually took the shift today, possibly a stand-in
(替班). The **current duty officer** is today's signed-in officer, else today's rostered one (shown
as not yet signed in), else nobody. ``court-hub status`` shows them; an urgent or emergency
directive delivered to the court is assigned to them by default (see
:mod:`hub.workflows.directive_flow`); notifications for the court go to their phone.

The roster and the latest sign-in are small documents in ``node_meta``; every change and every
sign-in is also an audit entry (全程留痕), which is where the sign-in history is read from.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from hub.audit import AuditLog
from hub.clock import iso
from hub.errors import InvalidInput
from hub.store.schema import audit, node_meta

if TYPE_CHECKING:
    from hub.node import Node

COURT_TZ = timezone(timedelta(hours=8), "CST")  # court days are Beijing calendar days
ROSTER_KEY = "duty.roster"
SIGNIN_KEY = "duty.signin"
KEEP_DAYS = 90  # roster days kept after they pass
PLAN_AHEAD_DAYS = 366
PHONE = re.compile(r"^[0-9+\- ]{6,20}$")
_NAME = re.compile(r"^[^\x00-\x1f]{1,50}$")


def court_date(ms: int) -> str:
    """The Beijing calendar date (YYYY-MM-DD) of an instant."""
    return datetime.fromtimestamp(ms / 1000, tz=COURT_TZ).date().isoformat()


def _officer(officer: str, phone: str) -> tuple[str, str]:
    officer = officer.strip()
    if not _NAME.match(officer):
        raise InvalidInput("duty officer: a name of 1–50 characters is needed")
    phone = phone.strip()
    if phone and not PHONE.match(phone):
        raise InvalidInput(f"duty officer phone {phone!r}: 6–20 digits, spaces, '+' or '-'")
    return officer, phone


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"date {text!r} must be YYYY-MM-DD") from None


def _get(conn: Connection, key: str) -> Any:
    value = conn.execute(select(node_meta.c.value).where(node_meta.c.key == key)).scalar()
    return json.loads(value) if value else None


def _put(conn: Connection, key: str, value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if conn.execute(update(node_meta).where(node_meta.c.key == key).values(value=text)).rowcount == 0:
        conn.execute(insert(node_meta).values(key=key, value=text))


def current(conn: Connection, now_ms: int) -> dict[str, Any] | None:
    """Today's duty officer: signed in, else rostered (not yet signed in), else None."""
    today = court_date(now_ms)
    roster: dict[str, Any] = _get(conn, ROSTER_KEY) or {}
    planned = roster.get(today)
    signin = _get(conn, SIGNIN_KEY)
    if signin and signin.get("date") == today:
        return {
            "officer": signin["officer"],
            "phone": signin.get("phone", ""),
            "date": today,
            "signed_in": True,
            "signed_in_at": iso(int(signin["at_ms"])),
            "rostered": planned["officer"] if planned else None,
            "stand_in": bool(planned and planned["officer"] != signin["officer"]),
        }
    if planned:
        return {
            "officer": planned["officer"],
            "phone": planned.get("phone", ""),
            "date": today,
            "signed_in": False,
            "signed_in_at": None,
            "rostered": planned["officer"],
            "stand_in": False,
        }
    return None


async def current_duty(node: Node) -> dict[str, Any] | None:
    now = node.clock.now_ms()
    return await node.store.read(lambda c: current(c, now))


async def set_duty(node: Node, day: str, officer: str, phone: str = "", days: int = 1) -> dict[str, Any]:
    """Roster ``officer`` for ``day`` (and the ``days - 1`` days after it)."""
    officer, phone = _officer(officer, phone)
    first = _date(day)
    if not 1 <= days <= 31:
        raise InvalidInput("duty set: --days must be 1–31")
    now = node.clock.now_ms()
    today = date.fromisoformat(court_date(now))
    if first < today:
        raise InvalidInput(f"duty set: {first} has passed (today is {today} in court time); roster today or later")
    if first > today + timedelta(days=PLAN_AHEAD_DAYS):
        raise InvalidInput(f"duty set: {first} is more than {PLAN_AHEAD_DAYS} days ahead")
    dates = [(first + timedelta(days=i)).isoformat() for i in range(days)]

    def write(conn: Connection) -> dict[str, Any]:
        roster: dict[str, Any] = _get(conn, ROSTER_KEY) or {}
        oldest = (today - timedelta(days=KEEP_DAYS)).isoformat()
        roster = {d: v for d, v in roster.items() if d >= oldest}
        for d in dates:
            roster[d] = {"officer": officer, "phone": phone}
        _put(conn, ROSTER_KEY, roster)
        log = AuditLog(conn)
        log.append("duty.roster", now, detail={"dates": dates, "officer": officer, "phone": _masked(phone)})
        log.flush()
        return {"dates": dates, "officer": officer, "phone": phone}

    return await node.store.write(write)


async def sign_in(node: Node, officer: str, phone: str = "") -> dict[str, Any]:
    """The officer takes today's shift (the rostered one, or a stand-in)."""
    officer, phone = _officer(officer, phone)
    now = node.clock.now_ms()
    today = court_date(now)

    def write(conn: Connection) -> dict[str, Any]:
        planned = (_get(conn, ROSTER_KEY) or {}).get(today)
        number = phone or (planned.get("phone", "") if planned and planned["officer"] == officer else "")
        _put(conn, SIGNIN_KEY, {"officer": officer, "phone": number, "date": today, "at_ms": now})
        stand_in = bool(planned and planned["officer"] != officer)
        log = AuditLog(conn)
        log.append(
            "duty.signin",
            now,
            detail={
                "officer": officer,
                "date": today,
                "rostered": planned["officer"] if planned else None,
                "stand_in": stand_in,
            },
        )
        log.flush()
        duty = current(conn, now)
        assert duty is not None
        return duty

    return await node.store.write(write)


async def show(node: Node, days: int = 7) -> dict[str, Any]:
    now = node.clock.now_ms()
    today = date.fromisoformat(court_date(now))

    def read(conn: Connection) -> dict[str, Any]:
        roster: dict[str, Any] = _get(conn, ROSTER_KEY) or {}
        upcoming = [
            {"date": d, **roster[d]}
            for d in sorted(roster)
            if today.isoformat() <= d <= (today + timedelta(days=days - 1)).isoformat()
        ]
        signins = [
            {"at": iso(r.at_ms), **json.loads(r.detail)}
            for r in conn.execute(
                select(audit.c.at_ms, audit.c.detail)
                .where(audit.c.action == "duty.signin")
                .order_by(audit.c.seq.desc())
                .limit(20)
            ).all()
        ]
        return {
            "court": str(node.me),
            "today": today.isoformat(),
            "current": current(conn, now),
            "roster": upcoming,
            "signins": signins,
        }

    return await node.store.read(read)


def _masked(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else ("*" * len(phone))


def setup(node: Node) -> None:
    async def op_set(args: dict[str, Any]) -> Any:
        day = str(args.get("date") or court_date(node.clock.now_ms()))
        return await set_duty(
            node, day, str(args.get("officer", "")), str(args.get("phone", "")), int(args.get("days", 1))
        )

    async def op_signin(args: dict[str, Any]) -> Any:
        return await sign_in(node, str(args.get("officer", "")), str(args.get("phone", "")))

    async def op_show(args: dict[str, Any]) -> Any:
        return await show(node, max(1, min(62, int(args.get("days", 7)))))

    async def op_current(args: dict[str, Any]) -> Any:
        return await current_duty(node)

    node.admin.register("duty.set", op_set)
    node.admin.register("duty.signin", op_signin)
    node.admin.register("duty.show", op_show)
    node.admin.register("duty.current", op_current)


__all__ = ["court_date", "current", "current_duty", "set_duty", "setup", "show", "sign_in"]
