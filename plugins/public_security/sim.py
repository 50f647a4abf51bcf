"""Reference public-security simulator (公安模拟服务).

Endpoints (besides the common ones in :mod:`plugins.agency.server`):

* ``POST /v1/inquiry`` — household registration (户籍信息) and current border controls.
* ``POST /v1/vehicles`` — motor vehicles registered to the subject (机动车), with measures.
* ``POST /v1/hotel_stays`` — hotel stays in a date range (住宿记录).
* ``POST /v1/control`` — 01 查封 / 02 续封 / 03 轮候查封 / 04 解封 / 05 解除轮候查封 of a vehicle
  (``asset_id`` = plate number); movables at most two years per term.
* ``GET /v1/measures/{measure_id}``.
* ``POST /v1/border_control`` — border exit control (边控). ``"action": "apply"`` needs
  ``approval``: a sealed approval with ``act = "border_control"`` for this subject and case (see
  :mod:`plugins.agency.approval`); ``"action": "lift"`` (撤控) by the court that applied, with
  ``control_id``. Idempotent by ``request_id``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from plugins.agency.errors import Refused
from plugins.agency.ledger import DAY_MS, Asset, Ledger, LedgerPolicy, Vocabulary
from plugins.agency.server import Agency, Call, Operation
from plugins.agency.synth import population
from plugins.public_security.data import generate, police_station

MAX_VEHICLE_TERM_DAYS = 730  # 动产查封期限不得超过二年
MAX_BORDER_TERM_DAYS = 365  # simulator policy: one border-control term at a time is at most a year

SCHEMA = """
CREATE TABLE IF NOT EXISTS vehicles (
    plate_no TEXT PRIMARY KEY,
    plate_type TEXT NOT NULL,
    owner_id_no TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    brand TEXT NOT NULL,
    model TEXT NOT NULL,
    vin TEXT NOT NULL,
    color TEXT NOT NULL,
    registered_on TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT '正常'
);
CREATE INDEX IF NOT EXISTS vehicles_owner ON vehicles (owner_id_no);
CREATE TABLE IF NOT EXISTS hotel_stays (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    id_no TEXT NOT NULL,
    name TEXT NOT NULL,
    hotel TEXT NOT NULL,
    address TEXT NOT NULL,
    city TEXT NOT NULL,
    check_in INTEGER NOT NULL,
    check_out INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS hotel_stays_person ON hotel_stays (id_no, check_in);
CREATE TABLE IF NOT EXISTS households (
    id_no TEXT PRIMARY KEY,
    police_station TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS border_controls (
    control_id TEXT PRIMARY KEY,
    id_no TEXT NOT NULL,
    name TEXT NOT NULL,
    court_code TEXT NOT NULL,
    court_name TEXT NOT NULL,
    case_no TEXT NOT NULL,
    request_id TEXT NOT NULL,
    approval_iss TEXT NOT NULL,
    approval_jti TEXT NOT NULL,
    status TEXT NOT NULL,
    term_days INTEGER NOT NULL,
    effective_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    lifted_at INTEGER
);
CREATE INDEX IF NOT EXISTS border_controls_person ON border_controls (id_no);
"""

VEHICLE_WORDS = Vocabulary(
    freeze="查封", renew="续封", waiting="轮候查封", release="解封", release_waiting="解除轮候查封", asset="车辆"
)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


def _day_start_ms(day: Any) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


class VehicleBook:
    def asset(self, conn: sqlite3.Connection, asset_id: str) -> Asset | None:
        row = conn.execute("SELECT owner_id_no FROM vehicles WHERE plate_no = ?", (asset_id,)).fetchone()
        return None if row is None else Asset(asset_id, row[0], None)

    def debit(self, conn: sqlite3.Connection, asset_id: str, amount_fen: int, at_ms: int, memo: str) -> None:
        raise AssertionError("vehicles are not amount-based")


def _border_view(row: sqlite3.Row, now_ms: int) -> dict[str, Any]:
    status = row["status"]
    if status == "active" and row["expires_at"] <= now_ms:
        status = "expired"
    return {
        "answered_at_ms": now_ms,
        "control_id": row["control_id"],
        "id_no": row["id_no"],
        "court_code": row["court_code"],
        "court_name": row["court_name"],
        "case_no": row["case_no"],
        "status": status,
        "term_days": row["term_days"],
        "effective_at_ms": row["effective_at"],
        "expires_at_ms": row["expires_at"],
        "lifted_at_ms": row["lifted_at"],
        "approval_iss": row["approval_iss"],
    }


class PublicSecurityAgency(Agency):
    kind: ClassVar[str] = "public_security"
    display_name: ClassVar[str] = "公安机关（模拟）"
    capabilities: ClassVar[tuple[str, ...]] = (
        "public_security.household",
        "public_security.vehicles",
        "public_security.vehicle_control",
        "public_security.hotel_stays",
        "public_security.border_control",
    )

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(
            LedgerPolicy(
                id_prefix="CL",
                amount_based=False,
                max_term_days=MAX_VEHICLE_TERM_DAYS,
                term_rule="民诉法解释第485条：查封动产的期限不得超过二年",
                words=VEHICLE_WORDS,
            ),
            VehicleBook(),
        )

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["max_border_term_days"] = MAX_BORDER_TERM_DAYS
        out["approval_actions"] = {"/v1/border_control": "border_control"}
        return out

    def create_schema(self, conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)
        Ledger.create_schema(conn)

    def populate(self, conn: sqlite3.Connection, seed: int, genesis_ms: int) -> None:
        assert self.ledger is not None
        data = generate(seed)
        genesis_day = datetime.fromtimestamp(genesis_ms / 1000, tz=UTC).date()
        conn.executemany(
            "INSERT INTO households (id_no, police_station) VALUES (?, ?)",
            [(p.id_no, police_station(p)) for p in population(seed)],
        )
        conn.executemany(
            "INSERT INTO vehicles (plate_no, plate_type, owner_id_no, owner_name, brand, model, vin, color,"
            " registered_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    v.plate_no,
                    v.plate_type,
                    v.owner.id_no,
                    v.owner.name,
                    v.brand,
                    v.model,
                    v.vin,
                    v.color,
                    (genesis_day + timedelta(days=v.registered_offset_days)).isoformat(),
                )
                for v in data.vehicles
            ],
        )
        conn.executemany(
            "INSERT INTO hotel_stays (id_no, name, hotel, address, city, check_in, check_out)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    s.person.id_no,
                    s.person.name,
                    s.hotel,
                    s.address,
                    s.city,
                    genesis_ms + s.check_in_offset_min * 60_000,
                    genesis_ms + s.check_in_offset_min * 60_000 + s.nights * DAY_MS - 4 * 3_600_000,
                )
                for s in data.stays
            ],
        )
        self.ledger.seed(conn, data.seals, genesis_ms)

    def operations(self) -> list[Operation]:
        return [
            Operation("POST", "/v1/inquiry", self._household, summary="household registration (户籍信息)"),
            Operation("POST", "/v1/vehicles", self._vehicles, summary="motor vehicles (机动车)"),
            Operation("POST", "/v1/hotel_stays", self._stays, summary="hotel stays (住宿记录)"),
            *self.ledger_operations(),
            Operation("POST", "/v1/border_control", self._border, effectful=True, summary="border exit control (边控)"),
        ]

    def _household(self, call: Call) -> dict[str, Any]:
        subject, person = call.person_query()
        household = None
        controls: list[dict[str, Any]] = []
        if person is not None:
            station = call.conn.execute(
                "SELECT police_station FROM households WHERE id_no = ?", (subject.id_no,)
            ).fetchone()
            household = {
                "name": person["name"],
                "id_no": person["id_no"],
                "gender": person["gender"],
                "ethnicity": person["ethnicity"],
                "birth_date": person["birth"],
                "address": person["address"],
                "police_station": station[0] if station else "",
                "status": "正常",
            }
            rows = call.conn.execute(
                "SELECT * FROM border_controls WHERE id_no = ? ORDER BY effective_at", (subject.id_no,)
            ).fetchall()
            controls = [_border_view(r, call.now_ms) for r in rows]
        return {
            "request_id": call.body.text("request_id"),
            "subject": subject.to_json(),
            "answered_at_ms": call.now_ms,
            "household": household,
            "border_controls": controls,
        }

    def _vehicles(self, call: Call) -> dict[str, Any]:
        assert self.ledger is not None
        subject, _ = call.person_query()
        rows = call.conn.execute(
            "SELECT * FROM vehicles WHERE owner_id_no = ? ORDER BY plate_no", (subject.id_no,)
        ).fetchall()
        return {
            "request_id": call.body.text("request_id"),
            "subject": subject.to_json(),
            "answered_at_ms": call.now_ms,
            "vehicles": [
                {
                    "plate_no": r["plate_no"],
                    "plate_type": r["plate_type"],
                    "brand": r["brand"],
                    "model": r["model"],
                    "vin": r["vin"],
                    "color": r["color"],
                    "registered_on": r["registered_on"],
                    "status": r["status"],
                    "measures": [m.to_json() for m in self.ledger.on_asset(call.conn, r["plate_no"])],
                }
                for r in rows
            ],
        }

    def _stays(self, call: Call) -> dict[str, Any]:
        call.court()
        subject = call.subject()
        start = call.body.day("from")
        end = call.body.day("to")
        call.body.reject_unknown()
        if end < start:
            raise call.body.fail("to", f"must not be before 'from' ({start.isoformat()})")
        call.ctx.check_subject(subject)
        lo = _day_start_ms(start)
        hi = _day_start_ms(end) + DAY_MS
        rows = call.conn.execute(
            "SELECT * FROM hotel_stays WHERE id_no = ? AND check_in >= ? AND check_in < ? ORDER BY check_in",
            (subject.id_no, lo, hi),
        ).fetchall()
        return {
            "request_id": call.body.text("request_id"),
            "subject": subject.to_json(),
            "from": start.isoformat(),
            "to": end.isoformat(),
            "answered_at_ms": call.now_ms,
            "stays": [
                {
                    "hotel": r["hotel"],
                    "address": r["address"],
                    "city": r["city"],
                    "check_in_ms": r["check_in"],
                    "check_out_ms": r["check_out"],
                }
                for r in rows
            ],
        }

    def _border(self, call: Call) -> dict[str, Any]:
        body = call.body
        request_id = body.text("request_id")
        court = call.court()
        subject = call.subject()
        action = body.text("action", choices=("apply", "lift"))
        approval = body.opt_text("approval", max_len=8000)
        term_days = body.opt_integer("term_days", min=1)
        control_id = body.opt_text("control_id", max_len=64)
        body.reject_unknown()
        person = call.ctx.check_subject(subject)
        if action == "lift":
            if control_id is None:
                raise body.fail("control_id", "is required to lift a border control")
            if term_days is not None:
                raise body.fail("term_days", "is only used with action 'apply'")
            row = call.conn.execute("SELECT * FROM border_controls WHERE control_id = ?", (control_id,)).fetchone()
            if row is None or row["id_no"] != subject.id_no:
                raise Refused(
                    "control_not_found", f"未找到该人员的边控措施{control_id}", status=404, field="control_id"
                )
            if row["court_code"] != court.court_code:
                raise Refused(
                    "not_measure_owner", f"边控{control_id}由{row['court_name']}申请，本院无权撤控", status=403
                )
            if row["status"] != "active" or row["expires_at"] <= call.now_ms:
                raise Refused("measure_not_active", f"边控{control_id}已不在有效期内，无需撤控", field="control_id")
            call.conn.execute(
                "UPDATE border_controls SET status = 'lifted', lifted_at = ? WHERE control_id = ?",
                (call.now_ms, control_id),
            )
            row = call.conn.execute("SELECT * FROM border_controls WHERE control_id = ?", (control_id,)).fetchone()
            return {"request_id": request_id, "outcome": "lifted", **_border_view(row, call.now_ms)}
        if term_days is None:
            raise body.fail("term_days", "is required to apply a border control")
        if term_days > MAX_BORDER_TERM_DAYS:
            raise Refused(
                "term_exceeds_limit",
                f"边控期限{term_days}天超过本机构单次最长期限{MAX_BORDER_TERM_DAYS}天，期满可续控",
                field="term_days",
            )
        if control_id is not None:
            raise body.fail("control_id", "is only used with action 'lift'")
        if person is None:
            raise Refused(
                "subject_not_found", f"未找到证件号码为{subject.id_no}的户籍人员", status=404, field="subject.id_no"
            )
        claims = call.ctx.require_approval(approval, "border_control", subject.id_no, court, request_id)
        seq = int(call.conn.execute("SELECT COUNT(*) FROM border_controls").fetchone()[0]) + 1
        new_id = f"BKZ-{seq:06d}"
        call.conn.execute(
            "INSERT INTO border_controls (control_id, id_no, name, court_code, court_name, case_no, request_id,"
            " approval_iss, approval_jti, status, term_days, effective_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
            (
                new_id,
                subject.id_no,
                subject.name,
                court.court_code,
                court.court_name,
                court.case_no,
                request_id,
                claims.iss,
                claims.jti,
                term_days,
                call.now_ms,
                call.now_ms + term_days * DAY_MS,
            ),
        )
        row = call.conn.execute("SELECT * FROM border_controls WHERE control_id = ?", (new_id,)).fetchone()
        return {"request_id": request_id, "outcome": "applied", **_border_view(row, call.now_ms)}
