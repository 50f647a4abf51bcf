"""Real-estate registry connector (不动产登记): the plugin behind ``land.inquiry`` and
``land.control``.

Inquiry (不动产权属查询) answers each registration owned by the subject as a ``real_estate`` asset
(``asset_id`` = 不动产权证书号) with its location, area, ownership share and current measures.
Control seals whole registrations: ``seal`` (or ``freeze``) 查封, ``renew`` 续封, ``waiting`` 轮候查封
(queued behind an earlier seal; it takes effect by itself when that one ends), ``release`` 解封,
``release_waiting`` 解除轮候查封 — codes 01–05, terms at most three years, no amounts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from hub.plugins.models import AgencyKind, Asset, ControlAction, InquiryRequest
from plugins.agency import model as wire
from plugins.agency.connector import SEAL_CODES, LedgerConnector
from plugins.land.client import LandClient

__all__ = ["LandConnector", "plugin"]


class LandConnector(LedgerConnector[LandClient]):
    default_name: ClassVar[str] = "land"
    agency_kind: ClassVar[AgencyKind] = AgencyKind.LAND
    description: ClassVar[str] = "Real-estate registry (不动产登记): registrations by owner; 查封/续封/轮候查封/解封."
    client_class = LandClient
    ledger_codes: ClassVar[Mapping[ControlAction, wire.ControlCode]] = SEAL_CODES

    async def inquire_assets(
        self, client: LandClient, request: InquiryRequest, court: wire.CourtInfo, subject: wire.Subject
    ) -> Sequence[Asset]:
        found = await client.inquire(court, subject, request_id=request.request_id)
        return [
            Asset(
                kind="real_estate",
                asset_id=p.cert_no,
                holder_name=subject.name,
                attributes={
                    "unit_no": p.unit_no,
                    "address": p.address,
                    "area_m2": p.area_m2,
                    "usage": p.usage,
                    "ownership": p.ownership,
                    "share_percent": p.share_percent,
                    "registered_on": p.registered_on,
                    "measures": self.measures_json(p.measures),
                },
            )
            for p in found.properties
        ]


#: A ready instance for embedding; the entry point names the class (one fresh instance per host).
plugin = LandConnector()
