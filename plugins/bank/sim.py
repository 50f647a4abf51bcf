"""Reference bank simulator (银行模拟服务).

Endpoints (besides the common ones in :mod:`plugins.agency.server`):

* ``POST /v1/inquiry`` — accounts of a subject (账户查询): balance, frozen and available amounts and
  the current measures on each account.
* ``POST /v1/transactions`` — transaction detail of one account for a date range (交易明细).
* ``POST /v1/control`` — control orders with bank codes 01 冻结, 02 续冻, 03 轮候冻结, 04 解冻,
  05 解除轮候, 06 扣划, 08 冻结并扣划 (rules in :mod:`plugins.agency.ledger`).
* ``GET /v1/measures/{measure_id}`` — one measure and its history.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from plugins.agency.errors import Refused
from plugins.agency.ledger import DAY_MS, Asset, Ledger, LedgerPolicy, Vocabulary
from plugins.agency.server import Agency, Call, Operation
from plugins.bank.data import generate

MAX_TERM_DAYS = 365  # 存款冻结期限不得超过一年

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_no TEXT PRIMARY KEY,
    owner_id_no TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    bank_name TEXT NOT NULL,
    branch TEXT NOT NULL,
    account_type TEXT NOT NULL,
    currency TEXT NOT NULL DEFAULT 'CNY',
    balance INTEGER NOT NULL,
    opened_on TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT '正常'
);
CREATE INDEX IF NOT EXISTS accounts_owner ON accounts (owner_id_no);
CREATE TABLE IF NOT EXISTS transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_no TEXT NOT NULL,
    at INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    counterparty_name TEXT NOT NULL,
    counterparty_account TEXT NOT NULL,
    summary TEXT NOT NULL,
    channel TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_account ON transactions (account_no, at);
"""


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


class BankBook:
    """:class:`~plugins.agency.ledger.AssetBook` over the accounts table."""

    def asset(self, conn: sqlite3.Connection, asset_id: str) -> Asset | None:
        row = conn.execute("SELECT owner_id_no, balance FROM accounts WHERE account_no = ?", (asset_id,)).fetchone()
        return None if row is None else Asset(asset_id, row["owner_id_no"], int(row["balance"]))

    def debit(self, conn: sqlite3.Connection, asset_id: str, amount_fen: int, at_ms: int, memo: str) -> None:
        conn.execute("UPDATE accounts SET balance = balance - ? WHERE account_no = ?", (amount_fen, asset_id))
        balance = conn.execute("SELECT balance FROM accounts WHERE account_no = ?", (asset_id,)).fetchone()[0]
        conn.execute(
            "INSERT INTO transactions (account_no, at, amount, balance_after, counterparty_name, counterparty_account,"
            " summary, channel) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (asset_id, at_ms, -amount_fen, balance, memo, "法院执行款专户", "法院扣划", "协助执行"),
        )


class BankAgency(Agency):
    kind: ClassVar[str] = "bank"
    display_name: ClassVar[str] = "银行（模拟）"
    capabilities: ClassVar[tuple[str, ...]] = ("bank.inquiry", "bank.transactions", "bank.control")

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(
            LedgerPolicy(
                id_prefix="BK",
                amount_based=True,
                max_term_days=MAX_TERM_DAYS,
                term_rule="民诉法解释第485条：冻结银行存款的期限不得超过一年",
                words=Vocabulary(),
            ),
            BankBook(),
        )

    def create_schema(self, conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)
        Ledger.create_schema(conn)

    def populate(self, conn: sqlite3.Connection, seed: int, genesis_ms: int) -> None:
        assert self.ledger is not None
        data = generate(seed)
        genesis_day = datetime.fromtimestamp(genesis_ms / 1000, tz=UTC).date()
        for acc in data.accounts:
            conn.execute(
                "INSERT INTO accounts (account_no, owner_id_no, owner_name, bank_name, branch, account_type, balance,"
                " opened_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    acc.account_no,
                    acc.owner.id_no,
                    acc.owner.name,
                    acc.bank_name,
                    acc.branch,
                    acc.account_type,
                    acc.balance_fen,
                    (genesis_day + timedelta(days=acc.opened_offset_days)).isoformat(),
                ),
            )
            conn.executemany(
                "INSERT INTO transactions (account_no, at, amount, balance_after, counterparty_name,"
                " counterparty_account, summary, channel) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        acc.account_no,
                        genesis_ms + t.day_offset * DAY_MS + t.minute * 60_000,
                        t.amount_fen,
                        t.balance_after_fen,
                        t.counterparty_name,
                        t.counterparty_account,
                        t.summary,
                        t.channel,
                    )
                    for t in acc.transactions
                ],
            )
        self.ledger.seed(conn, data.freezes, genesis_ms)

    def operations(self) -> list[Operation]:
        return [
            Operation("POST", "/v1/inquiry", self._inquiry, summary="accounts of a subject (账户查询)"),
            Operation("POST", "/v1/transactions", self._transactions, summary="transaction detail (交易明细)"),
            *self.ledger_operations(),
        ]

    def _inquiry(self, call: Call) -> dict[str, Any]:
        assert self.ledger is not None
        subject, _ = call.person_query()
        rows = call.conn.execute(
            "SELECT * FROM accounts WHERE owner_id_no = ? ORDER BY bank_name, account_no", (subject.id_no,)
        ).fetchall()
        accounts = []
        for r in rows:
            frozen = self.ledger.controlled_total(call.conn, r["account_no"])
            accounts.append(
                {
                    "account_no": r["account_no"],
                    "bank_name": r["bank_name"],
                    "branch": r["branch"],
                    "account_type": r["account_type"],
                    "currency": r["currency"],
                    "status": r["status"],
                    "opened_on": r["opened_on"],
                    "balance_fen": r["balance"],
                    "frozen_fen": frozen,
                    "available_fen": max(r["balance"] - frozen, 0),
                    "measures": [m.to_json() for m in self.ledger.on_asset(call.conn, r["account_no"])],
                }
            )
        return {
            "request_id": call.body.text("request_id"),
            "subject": subject.to_json(),
            "answered_at_ms": call.now_ms,
            "accounts": accounts,
        }

    def _transactions(self, call: Call) -> dict[str, Any]:
        call.court()
        subject = call.subject()
        account_no = call.body.text("account_no", max_len=64)
        start = call.body.day("from")
        end = call.body.day("to")
        call.body.reject_unknown()
        if end < start:
            raise call.body.fail("to", f"must not be before 'from' ({start.isoformat()})")
        if (end - start).days > 5 * 366:
            raise call.body.fail("to", "date range must not exceed five years")
        call.ctx.check_subject(subject)
        owner = call.conn.execute("SELECT owner_id_no FROM accounts WHERE account_no = ?", (account_no,)).fetchone()
        if owner is None:
            raise Refused("asset_not_found", f"未找到账户{account_no}", status=404, field="account_no")
        if owner[0] != subject.id_no:
            raise Refused(
                "asset_not_owned", f"账户{account_no}不属于证件号码为{subject.id_no}的被执行人", field="account_no"
            )
        lo = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1000)
        hi = lo + ((end - start).days + 1) * DAY_MS
        rows = call.conn.execute(
            "SELECT * FROM transactions WHERE account_no = ? AND at >= ? AND at < ? ORDER BY at, id",
            (account_no, lo, hi),
        ).fetchall()
        return {
            "request_id": call.body.text("request_id"),
            "account_no": account_no,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "answered_at_ms": call.now_ms,
            "transactions": [
                {
                    "at_ms": r["at"],
                    "date": _day(r["at"]),
                    "amount_fen": r["amount"],
                    "balance_after_fen": r["balance_after"],
                    "counterparty_name": r["counterparty_name"],
                    "counterparty_account": r["counterparty_account"],
                    "summary": r["summary"],
                    "channel": r["channel"],
                }
                for r in rows
            ],
        }
