"""Typed client of a telecom operator endpoint (通信运营商): numbers by ID, location (sealed approval)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from plugins.agency.client import AgencyClient, check_subject_echo
from plugins.agency.fields import Fields
from plugins.agency.model import CourtInfo, Subject


@dataclass(frozen=True)
class PhoneNumber:
    msisdn: str
    operator: str
    plan: str
    status: str  # 正常 / 停机
    activated_on: str

    @classmethod
    def parse(cls, f: Fields) -> PhoneNumber:
        return cls(
            msisdn=f.text("msisdn", pattern=r"1\d{10}"),
            operator=f.text("operator"),
            plan=f.text("plan"),
            status=f.text("status"),
            activated_on=f.text("activated_on"),
        )


@dataclass(frozen=True)
class Location:
    request_id: str
    msisdn: str
    outcome: str  # located / unavailable
    answered_at_ms: int
    approval_iss: str
    located_at_ms: int | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_m: int | None = None
    cell_id: str | None = None
    area: str | None = None
    reason: str | None = None

    @classmethod
    def parse(cls, f: Fields) -> Location:
        outcome = f.text("outcome", choices=("located", "unavailable"))
        located = outcome == "located"
        loc = cls(
            request_id=f.text("request_id"),
            msisdn=f.text("msisdn"),
            outcome=outcome,
            answered_at_ms=f.integer("answered_at_ms", min=0),
            approval_iss=f.text("approval_iss"),
            located_at_ms=f.integer("located_at_ms", min=0) if located else None,
            lat=f.number("lat") if located else None,
            lon=f.number("lon") if located else None,
            accuracy_m=f.integer("accuracy_m", min=0) if located else None,
            cell_id=f.opt_text("cell_id"),
            area=f.opt_text("area"),
            reason=None if located else f.text("reason"),
        )
        if loc.lat is not None and not -90 <= loc.lat <= 90:
            raise f.fail("lat", f"{loc.lat} is not a latitude")
        if loc.lon is not None and not -180 <= loc.lon <= 180:
            raise f.fail("lon", f"{loc.lon} is not a longitude")
        return loc


class TelecomClient(AgencyClient):
    kind: ClassVar[str | None] = "telecom"

    async def subscribers(
        self, court: CourtInfo, subject: Subject, *, request_id: str | None = None
    ) -> tuple[PhoneNumber, ...]:
        """Numbers registered to ``subject``'s ID (实名登记号码)."""
        body = self.envelope(request_id, court, subject)

        def parse(f: Fields) -> tuple[PhoneNumber, ...]:
            check_subject_echo(f, subject)
            return tuple(f.objs("numbers", PhoneNumber.parse))

        return await self.post("/v1/inquiry", body, parse)

    async def locate(
        self, court: CourtInfo, subject: Subject, msisdn: str, *, approval: str | None, request_id: str
    ) -> Location:
        """Locate ``msisdn`` (定位); ``approval`` is the sealed approval token (act ``location``)."""
        body = self.envelope(request_id, court, subject, msisdn=msisdn, approval=approval)

        def parse(f: Fields) -> Location:
            loc = Location.parse(f)
            if loc.msisdn != msisdn:
                raise f.fail("msisdn", f"is not the number asked about ({msisdn})")
            return loc

        return await self.post("/v1/location", body, parse)
