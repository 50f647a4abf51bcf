"""Bank connector (银行): the pluggy plugin behind ``bank.inquiry`` and ``bank.control``.

Speaks the bank endpoint protocol through :class:`~plugins.bank.client.BankClient` (the reference
simulator, or a bank's adapter offering the same protocol). Inquiry (账户查询) answers every
account of the subject as a ``deposit`` asset (balance, frozen and available amounts, current
measures); with ``params`` ``{"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}`` each account also carries
its transaction detail (交易明细) for that range, and ``account_no`` limits that to one account.
Control uses the bank control codes 01 冻结, 02 续冻, 03 轮候冻结, 04 解冻, 05 解除轮候, 06 扣划,
08 冻结并扣划; a freeze must name ``amount_fen`` (the bank freezes what is free of earlier freezes,
answering ``partial`` with the reason), and deposits are frozen for at most one year.

Configuration ``[plugins.bank]``: see :func:`plugins.agency.connector.parse_settings`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

from hub.plugins.models import AgencyKind, Asset, ControlAction, InquiryRequest
from plugins.agency import model as wire
from plugins.agency.connector import MAX_LINES_PER_ASSET, LedgerConnector
from plugins.bank.client import BankAccount, BankClient, Transaction

__all__ = ["BankConnector", "plugin"]


class BankConnector(LedgerConnector[BankClient]):
    default_name: ClassVar[str] = "bank"
    agency_kind: ClassVar[AgencyKind] = AgencyKind.BANK
    description: ClassVar[str] = "Bank (银行): accounts, balances, transaction detail; freeze, renew, deduct."
    client_class = BankClient
    inquiry_params: ClassVar[frozenset[str]] = frozenset({"from", "to", "account_no"})
    ledger_codes: ClassVar[dict[ControlAction, wire.ControlCode]] = {
        ControlAction.FREEZE: wire.ControlCode.FREEZE,
        ControlAction.RENEW: wire.ControlCode.RENEW,
        ControlAction.WAITING: wire.ControlCode.WAITING,
        ControlAction.RELEASE: wire.ControlCode.RELEASE,
        ControlAction.RELEASE_WAITING: wire.ControlCode.RELEASE_WAITING,
        ControlAction.DEDUCT: wire.ControlCode.DEDUCT,
        ControlAction.FREEZE_AND_DEDUCT: wire.ControlCode.FREEZE_DEDUCT,
    }

    async def inquire_assets(
        self, client: BankClient, request: InquiryRequest, court: wire.CourtInfo, subject: wire.Subject
    ) -> Sequence[Asset]:
        found = await client.inquire(court, subject, request_id=request.request_id)
        window = self.date_range(request.params)
        only = request.params.get("account_no")
        lines: dict[str, tuple[Transaction, ...]] = {}
        if window is not None:
            wanted = [a.account_no for a in found.accounts if only is None or a.account_no == only]
            details = await asyncio.gather(
                *(client.transactions(court, subject, no, *window, request_id=request.request_id) for no in wanted)
            )
            lines = dict(zip(wanted, details, strict=True))
        return [self._asset(a, subject, lines.get(a.account_no)) for a in found.accounts]

    def _asset(self, a: BankAccount, subject: wire.Subject, lines: tuple[Transaction, ...] | None) -> Asset:
        attributes: dict[str, Any] = {
            "bank_name": a.bank_name,
            "account_type": a.account_type,
            "status": a.status,
            "opened_on": a.opened_on,
            "balance_fen": a.balance_fen,
            "frozen_fen": a.frozen_fen,  # held by measures of any court
            "available_fen": a.available_fen,  # what a new freeze can still get
            "measures": self.measures_json(a.measures),
        }
        if lines is not None:
            attributes["transactions"] = [
                {
                    "at_ms": t.at_ms,
                    "amount_fen": t.amount_fen,
                    "balance_after_fen": t.balance_after_fen,
                    "counterparty_name": t.counterparty_name,
                    "counterparty_account": t.counterparty_account,
                    "summary": t.summary,
                    "channel": t.channel,
                }
                for t in lines[-MAX_LINES_PER_ASSET:]
            ]
            attributes["transactions_total"] = len(lines)
        return Asset(
            kind="deposit",
            asset_id=a.account_no,
            institution=a.branch,
            holder_name=subject.name,
            amount_fen=max(a.balance_fen, 0),
            currency=a.currency if len(a.currency) == 3 and a.currency.isupper() else "CNY",
            attributes=attributes,
        )


#: A ready instance for embedding; the entry point names the class (one fresh instance per host).
plugin = BankConnector()
