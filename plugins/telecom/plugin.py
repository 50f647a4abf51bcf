"""Telecom-operator connector (通信运营商): the plugin behind ``telecom.inquiry`` and
``telecom.control``.

Inquiry answers the numbers registered to the subject's ID (实名登记号码) as ``phone_number``
assets. Control has one action, ``location`` (定位) of one number (``asset_id`` = the number): it
needs a sealed approval (``ControlRequest.approval``, act ``location``) which the operator
verifies — and the hub too when ``approvers`` is configured. The fix comes back as ``done`` with
``attributes`` ``lat``/``lon``/``accuracy_m``/``cell_id``/``area``; a suspended number (停机) is
``not_controlled`` with the operator's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from hub.plugins.models import (
    AgencyKind,
    AgencyRejected,
    Asset,
    ControlAction,
    ControlRequest,
    ControlResult,
    ControlStatus,
    InquiryRequest,
)
from plugins.agency import model as wire
from plugins.agency.connector import AgencyConnector, ControlHandler
from plugins.telecom.client import TelecomClient

__all__ = ["TelecomConnector", "plugin"]


class TelecomConnector(AgencyConnector[TelecomClient]):
    default_name: ClassVar[str] = "telecom"
    agency_kind: ClassVar[AgencyKind] = AgencyKind.TELECOM
    description: ClassVar[str] = "Telecom operator (通信运营商): numbers by ID; location (定位, sealed approval)."
    client_class = TelecomClient
    special_actions: ClassVar[tuple[ControlAction, ...]] = (ControlAction.LOCATION,)

    async def inquire_assets(
        self, client: TelecomClient, request: InquiryRequest, court: wire.CourtInfo, subject: wire.Subject
    ) -> Sequence[Asset]:
        numbers = await client.subscribers(court, subject, request_id=request.request_id)
        return [
            Asset(
                kind="phone_number",
                asset_id=n.msisdn,
                institution=n.operator,
                holder_name=subject.name,
                attributes={"plan": n.plan, "status": n.status, "activated_on": n.activated_on},
            )
            for n in numbers
        ]

    def control_handler(self, request: ControlRequest) -> ControlHandler[TelecomClient] | None:
        return self._locate if request.action is ControlAction.LOCATION else None

    async def _locate(
        self, client: TelecomClient, request: ControlRequest, court: wire.CourtInfo, subject: wire.Subject
    ) -> ControlResult:
        if request.asset_id is None:
            raise AgencyRejected(f"{self.name}: location (定位) needs asset_id: the phone number to locate")
        fix = await client.locate(
            court, subject, request.asset_id, approval=request.approval, request_id=request.request_id
        )
        located = fix.outcome == "located"
        attributes = {
            "msisdn": fix.msisdn,
            "outcome": fix.outcome,
            "approval_iss": fix.approval_iss,
            "located_at_ms": fix.located_at_ms,
            "lat": fix.lat,
            "lon": fix.lon,
            "accuracy_m": fix.accuracy_m,
            "cell_id": fix.cell_id,
            "area": fix.area,
            "agency_answered_at_ms": fix.answered_at_ms,
        }
        return ControlResult(
            request_id=request.request_id,
            action=request.action,
            status=ControlStatus.DONE if located else ControlStatus.NOT_CONTROLLED,
            effective_at_ms=fix.located_at_ms,
            reason=None if located else (fix.reason or "无法定位"),
            answered_at_ms=self.clock.now_ms(),
            attributes={k: v for k, v in attributes.items() if v is not None},
        )


#: A ready instance for embedding; the entry point names the class (one fresh instance per host).
plugin = TelecomConnector()
