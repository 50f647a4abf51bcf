"""Reference telecom-operator simulator (通信运营商模拟服务).

Endpoints (besides the common ones in :mod:`plugins.agency.server`):

* ``POST /v1/inquiry`` — subscriber numbers registered to an ID number (实名登记号码).
* ``POST /v1/location`` — locate one number (定位); needs ``approval``: a sealed approval with
  ``act = "location"`` for this subject and case. Idempotent by ``request_id`` (the same request id
  returns the first fix). A suspended number (停机) answers ``outcome = "unavailable"``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from plugins.agency.errors import Refused
from plugins.agency.server import Agency, Call, Operation
from plugins.agency.synth import AREAS
from plugins.telecom.data import generate

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscribers (
    msisdn TEXT PRIMARY KEY,
    owner_id_no TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    operator TEXT NOT NULL,
    plan TEXT NOT NULL,
    status TEXT NOT NULL,
    activated_on TEXT NOT NULL,
    home_area TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscribers_owner ON subscribers (owner_id_no);
"""


class TelecomAgency(Agency):
    kind: ClassVar[str] = "telecom"
    display_name: ClassVar[str] = "通信运营商（模拟）"
    capabilities: ClassVar[tuple[str, ...]] = ("telecom.subscribers", "telecom.location")

    def info(self) -> dict[str, Any]:
        return {"approval_actions": {"/v1/location": "location"}}

    def create_schema(self, conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)

    def populate(self, conn: sqlite3.Connection, seed: int, genesis_ms: int) -> None:
        genesis_day = datetime.fromtimestamp(genesis_ms / 1000, tz=UTC).date()
        conn.executemany(
            "INSERT INTO subscribers (msisdn, owner_id_no, owner_name, operator, plan, status, activated_on,"
            " home_area) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    n.msisdn,
                    n.owner.id_no,
                    n.owner.name,
                    n.operator,
                    n.plan,
                    n.status,
                    (genesis_day + timedelta(days=n.activated_offset_days)).isoformat(),
                    n.owner.area.code,
                )
                for n in generate(seed)
            ],
        )

    def operations(self) -> list[Operation]:
        return [
            Operation("POST", "/v1/inquiry", self._inquiry, summary="subscriber numbers by ID (实名号码查询)"),
            Operation("POST", "/v1/location", self._locate, effectful=True, summary="locate a number (定位)"),
        ]

    def _inquiry(self, call: Call) -> dict[str, Any]:
        subject, _ = call.person_query()
        rows = call.conn.execute(
            "SELECT * FROM subscribers WHERE owner_id_no = ? ORDER BY msisdn", (subject.id_no,)
        ).fetchall()
        return {
            "request_id": call.body.text("request_id"),
            "subject": subject.to_json(),
            "answered_at_ms": call.now_ms,
            "numbers": [
                {
                    "msisdn": r["msisdn"],
                    "operator": r["operator"],
                    "plan": r["plan"],
                    "status": r["status"],
                    "activated_on": r["activated_on"],
                }
                for r in rows
            ],
        }

    def _locate(self, call: Call) -> dict[str, Any]:
        body = call.body
        request_id = body.text("request_id")
        court = call.court()
        subject = call.subject()
        msisdn = body.text("msisdn", pattern=r"1\d{10}")
        approval = body.opt_text("approval", max_len=8000)
        body.reject_unknown()
        call.ctx.check_subject(subject)
        row = call.conn.execute("SELECT * FROM subscribers WHERE msisdn = ?", (msisdn,)).fetchone()
        if row is None:
            raise Refused("asset_not_found", f"未找到号码{msisdn}", status=404, field="msisdn")
        if row["owner_id_no"] != subject.id_no:
            raise Refused("asset_not_owned", f"号码{msisdn}未登记在证件号码{subject.id_no}名下", field="msisdn")
        claims = call.ctx.require_approval(approval, "location", subject.id_no, court, request_id)
        base = {
            "request_id": request_id,
            "msisdn": msisdn,
            "answered_at_ms": call.now_ms,
            "approval_iss": claims.iss,
        }
        if row["status"] != "正常":
            return {**base, "outcome": "unavailable", "reason": f"号码已{row['status']}，无法定位"}
        # A deterministic fix near the subscriber's home area, varying by hour.
        digest = hashlib.sha256(f"{call.ctx.seed}:{msisdn}:{call.now_ms // 3_600_000}".encode()).digest()
        area = next((a for a in AREAS if a.code == row["home_area"]), AREAS[0])
        if digest[0] < 40:  # sometimes the person is elsewhere
            area = AREAS[digest[1] % len(AREAS)]
        lat = area.lat + (digest[2] - 128) / 128 * 0.05
        lon = area.lon + (digest[3] - 128) / 128 * 0.05
        return {
            **base,
            "outcome": "located",
            "located_at_ms": call.now_ms,
            "lat": round(lat, 5),
            "lon": round(lon, 5),
            "accuracy_m": 100 + digest[4] * 4,
            "cell_id": f"{area.code}-{int.from_bytes(digest[5:8], 'big') % 100000:05d}",
            "area": f"{area.province}{area.city}{area.district}",
        }
