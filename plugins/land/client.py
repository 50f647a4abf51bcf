"""Typed client of a real-estate registry endpoint (不动产登记)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from plugins.agency.client import MeasureClient, check_subject_echo, measures_of
from plugins.agency.fields import Fields
from plugins.agency.model import CourtInfo, MeasureView, Subject


@dataclass(frozen=True)
class Property:
    cert_no: str  # 不动产权证书号 (the asset_id of control orders)
    unit_no: str  # 不动产单元号
    address: str  # 坐落
    area_m2: float
    usage: str
    ownership: str  # 单独所有 / 共同共有 / 按份共有
    share_percent: int
    registered_on: str
    measures: tuple[MeasureView, ...]

    @classmethod
    def parse(cls, f: Fields) -> Property:
        return cls(
            cert_no=f.text("cert_no"),
            unit_no=f.text("unit_no"),
            address=f.text("address"),
            area_m2=f.number("area_m2"),
            usage=f.text("usage"),
            ownership=f.text("ownership"),
            share_percent=f.integer("share_percent", min=0, max=100),
            registered_on=f.text("registered_on"),
            measures=measures_of(f),
        )


@dataclass(frozen=True)
class LandInquiry:
    request_id: str
    answered_at_ms: int
    properties: tuple[Property, ...]


class LandClient(MeasureClient):
    """Registrations by owner and 查封/续封/轮候查封/解封 (codes 01–05) at one registry endpoint."""

    kind: ClassVar[str | None] = "land"

    async def inquire(self, court: CourtInfo, subject: Subject, *, request_id: str | None = None) -> LandInquiry:
        body = self.envelope(request_id, court, subject)

        def parse(f: Fields) -> LandInquiry:
            check_subject_echo(f, subject)
            return LandInquiry(
                request_id=f.text("request_id"),
                answered_at_ms=f.integer("answered_at_ms", min=0),
                properties=tuple(f.objs("properties", Property.parse)),
            )

        return await self.post("/v1/inquiry", body, parse)
