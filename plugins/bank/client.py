"""Typed client of a bank endpoint (the reference simulator or a real bank's adapter)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import ClassVar

from plugins.agency.client import MeasureClient, check_subject_echo, measures_of
from plugins.agency.fields import Fields
from plugins.agency.model import CourtInfo, MeasureView, Subject


@dataclass(frozen=True)
class BankAccount:
    account_no: str
    bank_name: str
    branch: str
    account_type: str
    currency: str
    status: str
    opened_on: str
    balance_fen: int
    frozen_fen: int  # held by active measures of any court
    available_fen: int  # balance − frozen (what a new freeze can still get)
    measures: tuple[MeasureView, ...]

    @classmethod
    def parse(cls, f: Fields) -> BankAccount:
        acc = cls(
            account_no=f.text("account_no"),
            bank_name=f.text("bank_name"),
            branch=f.text("branch"),
            account_type=f.text("account_type"),
            currency=f.text("currency"),
            status=f.text("status"),
            opened_on=f.text("opened_on"),
            balance_fen=f.integer("balance_fen"),
            frozen_fen=f.integer("frozen_fen", min=0),
            available_fen=f.integer("available_fen", min=0),
            measures=measures_of(f),
        )
        if acc.available_fen > max(acc.balance_fen, 0):
            raise f.fail("available_fen", f"{acc.available_fen} exceeds balance_fen {acc.balance_fen}")
        return acc


@dataclass(frozen=True)
class BankInquiry:
    request_id: str
    answered_at_ms: int
    accounts: tuple[BankAccount, ...]

    @property
    def total_available_fen(self) -> int:
        return sum(a.available_fen for a in self.accounts)


@dataclass(frozen=True)
class Transaction:
    at_ms: int
    date: str
    amount_fen: int  # + credit, − debit
    balance_after_fen: int
    counterparty_name: str
    counterparty_account: str
    summary: str
    channel: str

    @classmethod
    def parse(cls, f: Fields) -> Transaction:
        return cls(
            at_ms=f.integer("at_ms", min=0),
            date=f.text("date", pattern=r"\d{4}-\d{2}-\d{2}"),
            amount_fen=f.integer("amount_fen"),
            balance_after_fen=f.integer("balance_after_fen"),
            counterparty_name=f.text("counterparty_name"),
            counterparty_account=f.text("counterparty_account"),
            summary=f.text("summary"),
            channel=f.text("channel"),
        )


class BankClient(MeasureClient):
    """Accounts, transaction detail and control (codes 01–08) at one bank endpoint."""

    kind: ClassVar[str | None] = "bank"

    async def inquire(self, court: CourtInfo, subject: Subject, *, request_id: str | None = None) -> BankInquiry:
        """Accounts of ``subject`` with balance, frozen and available amounts (账户查询)."""
        body = self.envelope(request_id, court, subject)

        def parse(f: Fields) -> BankInquiry:
            check_subject_echo(f, subject)
            return BankInquiry(
                request_id=f.text("request_id"),
                answered_at_ms=f.integer("answered_at_ms", min=0),
                accounts=tuple(f.objs("accounts", BankAccount.parse)),
            )

        return await self.post("/v1/inquiry", body, parse)

    async def transactions(
        self,
        court: CourtInfo,
        subject: Subject,
        account_no: str,
        start: date,
        end: date,
        *,
        request_id: str | None = None,
    ) -> tuple[Transaction, ...]:
        """Transaction detail of one account from ``start`` to ``end`` inclusive (交易明细)."""
        body = self.envelope(
            request_id, court, subject, account_no=account_no, **{"from": start.isoformat(), "to": end.isoformat()}
        )

        def parse(f: Fields) -> tuple[Transaction, ...]:
            if f.text("account_no") != account_no:
                raise f.fail("account_no", f"is not the account asked about ({account_no})")
            return tuple(f.objs("transactions", Transaction.parse))

        return await self.post("/v1/transactions", body, parse)
