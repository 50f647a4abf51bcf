"""A minimal court-hub agency plugin and the tiny bank it talks to.

``SampleBank`` stands in for the agency's service (in a real connector: an HTTP/SOAP/MQ client and
a simulator of the agency). It keeps accounts by ID number, applies each request number at most
once (answering a repeat with the first outcome) and "listens" on ``memory://<name>`` endpoints.

``SampleAgencyPlugin`` implements the court-hub hooks: info, configure, inquire, control (freeze
and release), health, and the case-filed event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hub.plugins import (
    PLUGIN_API_VERSION,
    AgencyKind,
    AgencyUnavailable,
    Asset,
    CaseFiled,
    ControlRequest,
    ControlResult,
    ControlStatus,
    HealthResult,
    HealthStatus,
    InquiryRequest,
    InquiryResult,
    InquiryStatus,
    PluginConfigError,
    PluginInfo,
    hookimpl,
)

__version__ = "0.1.0"

DAY_MS = 86_400_000


# -- the agency (in a real connector: the remote service and its simulator) ------------------


@dataclass
class Account:
    account_no: str
    holder: str
    balance_fen: int
    frozen_fen: int = 0


@dataclass
class SampleBank:
    """A tiny bank: accounts by ID number, freezes, and request-number deduplication."""

    accounts: dict[str, list[Account]] = field(default_factory=dict)
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # request no. → first answer
    delay_s: float = 0.0
    _serial: int = 0

    def open_account(self, id_no: str, holder: str, account_no: str, balance_fen: int) -> None:
        self.accounts.setdefault(id_no, []).append(Account(account_no, holder, balance_fen))

    def query(self, id_no: str) -> list[Account] | None:
        return self.accounts.get(id_no)

    def control(self, order: dict[str, Any]) -> dict[str, Any]:
        """Apply a control order once per request number; repeats get the first answer."""
        rid = order["request_id"]
        if rid in self.answers:
            return self.answers[rid]
        answer = self._apply(order)
        self.answers[rid] = answer
        return answer

    def _find(self, account_no: str) -> Account | None:
        for accounts in self.accounts.values():
            for account in accounts:
                if account.account_no == account_no:
                    return account
        return None

    def _apply(self, order: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time() * 1000)
        if order["action"] == "freeze":
            account = self._find(order["asset_id"])
            if account is None:
                return {"status": "rejected", "reason": f"no account {order['asset_id']}"}
            available = account.balance_fen - account.frozen_fen
            wanted = order.get("amount_fen") or available
            frozen = min(wanted, available)
            if frozen <= 0:
                return {"status": "not_controlled", "reason": "余额不足 (no available balance)", "requested": wanted}
            account.frozen_fen += frozen
            self._serial += 1
            measure_id = f"SB-{self._serial:06d}"
            expires = now + order["term_days"] * DAY_MS
            self.measures[measure_id] = {"account_no": account.account_no, "amount_fen": frozen, "active": True}
            return {
                "status": "done" if frozen == wanted else "partial",
                "measure_id": measure_id,
                "requested": wanted,
                "controlled": frozen,
                "effective_at_ms": now,
                "expires_at_ms": expires,
                "reason": None if frozen == wanted else "余额不足 (partial balance)",
            }
        if order["action"] == "release":
            measure = self.measures.get(order["measure_id"])
            if measure is None or not measure["active"]:
                return {"status": "rejected", "reason": f"no active measure {order['measure_id']}"}
            account = self._find(measure["account_no"])
            assert account is not None
            account.frozen_fen -= measure["amount_fen"]
            measure["active"] = False
            return {"status": "done", "measure_id": order["measure_id"], "effective_at_ms": now}
        return {"status": "rejected", "reason": f"action {order['action']} is not supported by this bank"}

    def snapshot(self) -> Any:
        """The bank's state, comparable with ==."""
        accounts = sorted((a.account_no, a.balance_fen, a.frozen_fen) for accs in self.accounts.values() for a in accs)
        measures = sorted((k, v["amount_fen"], v["active"]) for k, v in self.measures.items())
        return accounts, measures


ENDPOINTS: dict[str, SampleBank] = {}  # "memory://<name>" → a running bank


@contextmanager
def serve(bank: SampleBank, name: str) -> Iterator[str]:
    """Make ``bank`` reachable at ``memory://<name>`` (the stand-in for starting a simulator)."""
    endpoint = f"memory://{name}"
    ENDPOINTS[endpoint] = bank
    try:
        yield endpoint
    finally:
        ENDPOINTS.pop(endpoint, None)


# -- the plugin ------------------------------------------------------------------------------


class SampleAgencyPlugin:
    """court-hub plugin for :class:`SampleBank`. Configuration: ``endpoint = "memory://<name>"``."""

    def __init__(self) -> None:
        self.endpoint: str | None = None

    def _bank(self) -> SampleBank:
        bank = ENDPOINTS.get(self.endpoint or "")
        if bank is None:
            raise AgencyUnavailable(f"sample bank at {self.endpoint!r} is not reachable")
        return bank

    @hookimpl
    def courthub_plugin_info(self) -> PluginInfo:
        return PluginInfo(
            name="sample-agency",
            version=__version__,
            api_version=PLUGIN_API_VERSION,
            agency_kind=AgencyKind.BANK,
            capabilities=("bank.inquiry", "bank.control"),
            scope="national",
            description="Sample in-memory bank (template for real connectors)",
        )

    @hookimpl
    def courthub_configure(self, config: Mapping[str, Any]) -> None:
        unknown = set(config) - {"endpoint"}
        if unknown:
            raise PluginConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        endpoint = config.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith("memory://"):
            raise PluginConfigError(f"endpoint: expected 'memory://<name>', got {endpoint!r}")
        self.endpoint = endpoint

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> InquiryResult:
        bank = self._bank()
        await asyncio.sleep(bank.delay_s)
        accounts = bank.query(request.subject.id_no)
        if accounts is None:
            return InquiryResult(request_id=request.request_id, status=InquiryStatus.NOT_FOUND)
        return InquiryResult(
            request_id=request.request_id,
            status=InquiryStatus.ANSWERED,
            assets=tuple(
                Asset(
                    kind="deposit",
                    asset_id=a.account_no,
                    institution="Sample Bank",
                    holder_name=a.holder,
                    amount_fen=a.balance_fen - a.frozen_fen,
                    attributes={"frozen_fen": a.frozen_fen},
                )
                for a in accounts
            ),
            answered_at_ms=int(time.time() * 1000),
        )

    @hookimpl
    async def courthub_control(self, request: ControlRequest) -> ControlResult:
        bank = self._bank()
        await asyncio.sleep(bank.delay_s)
        # The request id travels to the agency as its request number: the bank applies it once.
        answer = bank.control(
            {
                "request_id": request.request_id,
                "action": request.action.value,
                "asset_id": request.asset_id,
                "measure_id": request.measure_id,
                "amount_fen": request.amount_fen,
                "term_days": request.term_days,
            }
        )
        return ControlResult(
            request_id=request.request_id,
            action=request.action,
            status=ControlStatus(answer["status"]),
            measure_id=answer.get("measure_id"),
            requested_amount_fen=answer.get("requested"),
            controlled_amount_fen=answer.get("controlled"),
            effective_at_ms=answer.get("effective_at_ms"),
            expires_at_ms=answer.get("expires_at_ms"),
            reason=answer.get("reason"),
            answered_at_ms=int(time.time() * 1000),
        )

    @hookimpl
    async def courthub_health(self) -> HealthResult:
        started = time.perf_counter()
        try:
            self._bank()
        except AgencyUnavailable as exc:
            return HealthResult(HealthStatus.DOWN, str(exc))
        return HealthResult(HealthStatus.UP, "ok", latency_ms=int((time.perf_counter() - started) * 1000))

    @hookimpl
    def courthub_case_filed(self, case: CaseFiled) -> None:
        # This bank needs nothing at filing time; inquiries arrive through courthub_inquire.
        return None


__all__ = ["ENDPOINTS", "Account", "SampleAgencyPlugin", "SampleBank", "serve"]
