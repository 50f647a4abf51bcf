"""Public-security connector (公安): the plugin behind ``public_security.inquiry`` and
``public_security.control``.

Inquiry answers the household registration (户籍, asset kind ``household``, with any border
controls in force), the motor vehicles registered to the subject (``vehicle``, ``asset_id`` = 号牌号码,
with their measures) and, with ``params`` ``{"from": …, "to": …}``, hotel stays in that range
(``hotel_stay``). A subject without a household registration is ``not_found``.

Control: vehicles are sealed like real estate (``seal``/``renew``/``waiting``/``release``/
``release_waiting``, codes 01–05, at most two years per term); ``border_control`` (边控) needs a
sealed approval (``ControlRequest.approval``, act ``border_control``) which the agency verifies —
and the hub too when ``approvers`` is configured — and answers the control's id (``BKZ-…``) as
``measure_id``; ``release`` of such an id lifts the border control (撤控).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from hub.plugins.models import (
    AgencyKind,
    Asset,
    ControlAction,
    ControlRequest,
    ControlResult,
    ControlStatus,
    InquiryRequest,
)
from plugins.agency import model as wire
from plugins.agency.connector import SEAL_CODES, ControlHandler, LedgerConnector
from plugins.public_security.client import (
    BorderControl,
    BorderControlResult,
    HotelStay,
    PublicSecurityClient,
    Vehicle,
)

__all__ = ["BORDER_CONTROL_PREFIX", "PublicSecurityConnector", "plugin"]

#: Border-control ids of the agency (the simulator's ``BKZ-000001``); a ``release`` naming one lifts it.
BORDER_CONTROL_PREFIX = "BKZ-"


def _border_json(c: BorderControl) -> dict[str, Any]:
    return {
        "control_id": c.control_id,
        "court_code": c.court_code,
        "court_name": c.court_name,
        "case_no": c.case_no,
        "status": c.status,
        "term_days": c.term_days,
        "effective_at_ms": c.effective_at_ms,
        "expires_at_ms": c.expires_at_ms,
        "lifted_at_ms": c.lifted_at_ms,
        "approval_iss": c.approval_iss,
    }


class PublicSecurityConnector(LedgerConnector[PublicSecurityClient]):
    default_name: ClassVar[str] = "public_security"
    agency_kind: ClassVar[AgencyKind] = AgencyKind.PUBLIC_SECURITY
    description: ClassVar[str] = (
        "Public security (公安): household registration, vehicles, hotel stays; vehicle seals, border control (边控)."
    )
    client_class = PublicSecurityClient
    ledger_codes: ClassVar[Mapping[ControlAction, wire.ControlCode]] = SEAL_CODES
    special_actions: ClassVar[tuple[ControlAction, ...]] = (ControlAction.BORDER_CONTROL,)
    inquiry_params: ClassVar[frozenset[str]] = frozenset({"from", "to"})

    async def inquire_assets(
        self, client: PublicSecurityClient, request: InquiryRequest, court: wire.CourtInfo, subject: wire.Subject
    ) -> Sequence[Asset] | None:
        rid = request.request_id
        window = self.date_range(request.params)
        household, vehicles = await asyncio.gather(
            client.household(court, subject, request_id=rid), client.vehicles(court, subject, request_id=rid)
        )
        hh = household.household
        if hh is None:
            return None
        stays: tuple[HotelStay, ...] = ()
        if window is not None:
            stays = await client.hotel_stays(court, subject, *window, request_id=rid)
        person = Asset(
            kind="household",
            asset_id=hh.id_no,
            institution=hh.police_station,
            holder_name=hh.name,
            attributes={
                "gender": hh.gender,
                "ethnicity": hh.ethnicity,
                "birth_date": hh.birth_date,
                "address": hh.address,
                "status": hh.status,
                "border_controls": [_border_json(c) for c in household.border_controls],
            },
        )
        return [person, *(self._vehicle(v, hh.name) for v in vehicles), *(self._stay(s, hh.name) for s in stays)]

    def _vehicle(self, v: Vehicle, holder: str) -> Asset:
        return Asset(
            kind="vehicle",
            asset_id=v.plate_no,
            holder_name=holder,
            attributes={
                "plate_type": v.plate_type,
                "brand": v.brand,
                "model": v.model,
                "vin": v.vin,
                "color": v.color,
                "registered_on": v.registered_on,
                "status": v.status,
                "measures": self.measures_json(v.measures),
            },
        )

    @staticmethod
    def _stay(s: HotelStay, holder: str) -> Asset:
        return Asset(
            kind="hotel_stay",
            asset_id=f"{s.hotel}@{s.check_in_ms}"[:100],
            institution=s.hotel,
            holder_name=holder,
            attributes={
                "address": s.address,
                "city": s.city,
                "check_in_ms": s.check_in_ms,
                "check_out_ms": s.check_out_ms,
            },
        )

    # -- border control (边控) -------------------------------------------------------------

    def control_handler(self, request: ControlRequest) -> ControlHandler[PublicSecurityClient] | None:
        if request.action is ControlAction.BORDER_CONTROL:
            return self._apply_border_control
        if request.action is ControlAction.RELEASE and (request.measure_id or "").startswith(BORDER_CONTROL_PREFIX):
            return self._lift_border_control
        return super().control_handler(request)

    async def _apply_border_control(
        self, client: PublicSecurityClient, request: ControlRequest, court: wire.CourtInfo, subject: wire.Subject
    ) -> ControlResult:
        assert request.term_days is not None  # the model requires it for border_control
        answer = await client.apply_border_control(
            court, subject, approval=request.approval, term_days=request.term_days, request_id=request.request_id
        )
        return self._border_result(request, answer)

    async def _lift_border_control(
        self, client: PublicSecurityClient, request: ControlRequest, court: wire.CourtInfo, subject: wire.Subject
    ) -> ControlResult:
        assert request.measure_id is not None
        answer = await client.lift_border_control(court, subject, request.measure_id, request_id=request.request_id)
        return self._border_result(request, answer)

    def _border_result(self, request: ControlRequest, answer: BorderControlResult) -> ControlResult:
        c = answer.control
        active = c.status == "active"
        return ControlResult(
            request_id=request.request_id,
            action=request.action,
            status=ControlStatus.DONE,
            measure_id=c.control_id,
            effective_at_ms=c.effective_at_ms if active else None,
            expires_at_ms=c.expires_at_ms if active else None,
            answered_at_ms=self.clock.now_ms(),
            attributes={"outcome": answer.outcome, **{k: v for k, v in _border_json(c).items() if v is not None}},
        )


#: A ready instance for embedding; the entry point names the class (one fresh instance per host).
plugin = PublicSecurityConnector()
