"""Reference real-estate registry simulator (不动产登记中心模拟服务).

Endpoints (besides the common ones in :mod:`plugins.agency.server`):

* ``POST /v1/inquiry`` — registrations of a subject as owner (不动产权属查询), with the current
  measures on each.
* ``POST /v1/control`` — 01 查封, 02 续封, 03 轮候查封, 04 解封, 05 解除轮候查封 of a whole
  registration (``asset_id`` = certificate no.); terms at most 3 years.
* ``GET /v1/measures/{measure_id}``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from plugins.agency.ledger import Asset, Ledger, LedgerPolicy, Vocabulary
from plugins.agency.server import Agency, Call, Operation
from plugins.land.data import generate

MAX_TERM_DAYS = 1095  # 不动产查封期限不得超过三年

SCHEMA = """
CREATE TABLE IF NOT EXISTS properties (
    cert_no TEXT PRIMARY KEY,
    unit_no TEXT NOT NULL,
    owner_id_no TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    address TEXT NOT NULL,
    area_m2 REAL NOT NULL,
    usage TEXT NOT NULL,
    ownership TEXT NOT NULL,
    share_percent INTEGER NOT NULL,
    registered_on TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS properties_owner ON properties (owner_id_no);
"""

SEAL_WORDS = Vocabulary(
    freeze="查封",
    renew="续封",
    waiting="轮候查封",
    release="解封",
    release_waiting="解除轮候查封",
    asset="不动产",
)


class PropertyBook:
    def asset(self, conn: sqlite3.Connection, asset_id: str) -> Asset | None:
        row = conn.execute("SELECT owner_id_no FROM properties WHERE cert_no = ?", (asset_id,)).fetchone()
        return None if row is None else Asset(asset_id, row[0], None)

    def debit(self, conn: sqlite3.Connection, asset_id: str, amount_fen: int, at_ms: int, memo: str) -> None:
        raise AssertionError("real estate is not amount-based")


class LandAgency(Agency):
    kind: ClassVar[str] = "land"
    display_name: ClassVar[str] = "不动产登记中心（模拟）"
    capabilities: ClassVar[tuple[str, ...]] = ("land.inquiry", "land.control")

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(
            LedgerPolicy(
                id_prefix="BDC",
                amount_based=False,
                max_term_days=MAX_TERM_DAYS,
                term_rule="民诉法解释第485条：查封不动产的期限不得超过三年",
                words=SEAL_WORDS,
            ),
            PropertyBook(),
        )

    def create_schema(self, conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)
        Ledger.create_schema(conn)

    def populate(self, conn: sqlite3.Connection, seed: int, genesis_ms: int) -> None:
        assert self.ledger is not None
        data = generate(seed)
        genesis_day = datetime.fromtimestamp(genesis_ms / 1000, tz=UTC).date()
        conn.executemany(
            "INSERT INTO properties (cert_no, unit_no, owner_id_no, owner_name, address, area_m2, usage, ownership,"
            " share_percent, registered_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p.cert_no,
                    p.unit_no,
                    p.owner.id_no,
                    p.owner.name,
                    p.address,
                    p.area_m2,
                    p.usage,
                    p.ownership,
                    p.share_percent,
                    (genesis_day + timedelta(days=p.registered_offset_days)).isoformat(),
                )
                for p in data.properties
            ],
        )
        self.ledger.seed(conn, data.seals, genesis_ms)

    def operations(self) -> list[Operation]:
        return [
            Operation("POST", "/v1/inquiry", self._inquiry, summary="registrations by owner (不动产权属查询)"),
            *self.ledger_operations(),
        ]

    def _inquiry(self, call: Call) -> dict[str, Any]:
        assert self.ledger is not None
        subject, _ = call.person_query()
        rows = call.conn.execute(
            "SELECT * FROM properties WHERE owner_id_no = ? ORDER BY cert_no", (subject.id_no,)
        ).fetchall()
        return {
            "request_id": call.body.text("request_id"),
            "subject": subject.to_json(),
            "answered_at_ms": call.now_ms,
            "properties": [
                {
                    "cert_no": r["cert_no"],
                    "unit_no": r["unit_no"],
                    "address": r["address"],
                    "area_m2": r["area_m2"],
                    "usage": r["usage"],
                    "ownership": r["ownership"],
                    "share_percent": r["share_percent"],
                    "registered_on": r["registered_on"],
                    "measures": [m.to_json() for m in self.ledger.on_asset(call.conn, r["cert_no"])],
                }
                for r in rows
            ],
        }
