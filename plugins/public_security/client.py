"""Typed client of a public-security endpoint (公安): household, vehicles, hotel stays, vehicle seals,
border exit control (边控, sealed approval required)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import ClassVar

from plugins.agency.client import MeasureClient, check_subject_echo, measures_of
from plugins.agency.fields import Fields
from plugins.agency.model import CourtInfo, MeasureView, Subject

BORDER_STATUSES = ("active", "lifted", "expired")


@dataclass(frozen=True)
class Household:
    name: str
    id_no: str
    gender: str
    ethnicity: str
    birth_date: str
    address: str  # 户籍地址
    police_station: str  # 户籍派出所
    status: str

    @classmethod
    def parse(cls, f: Fields) -> Household:
        return cls(
            name=f.text("name"),
            id_no=f.text("id_no"),
            gender=f.text("gender", choices=("男", "女")),
            ethnicity=f.text("ethnicity"),
            birth_date=f.text("birth_date", pattern=r"\d{4}-\d{2}-\d{2}"),
            address=f.text("address"),
            police_station=f.text("police_station"),
            status=f.text("status"),
        )


@dataclass(frozen=True)
class BorderControl:
    control_id: str
    id_no: str
    court_code: str
    court_name: str
    case_no: str
    status: str  # active / lifted / expired
    term_days: int
    effective_at_ms: int
    expires_at_ms: int
    lifted_at_ms: int | None
    approval_iss: str

    @classmethod
    def parse(cls, f: Fields) -> BorderControl:
        return cls(
            control_id=f.text("control_id"),
            id_no=f.text("id_no"),
            court_code=f.text("court_code"),
            court_name=f.text("court_name"),
            case_no=f.text("case_no"),
            status=f.text("status", choices=BORDER_STATUSES),
            term_days=f.integer("term_days", min=1),
            effective_at_ms=f.integer("effective_at_ms", min=0),
            expires_at_ms=f.integer("expires_at_ms", min=0),
            lifted_at_ms=f.opt_integer("lifted_at_ms", min=0),
            approval_iss=f.text("approval_iss"),
        )


@dataclass(frozen=True)
class HouseholdInquiry:
    request_id: str
    answered_at_ms: int
    household: Household | None  # None: no such registered resident
    border_controls: tuple[BorderControl, ...]


@dataclass(frozen=True)
class Vehicle:
    plate_no: str  # the asset_id of control orders
    plate_type: str
    brand: str
    model: str
    vin: str
    color: str
    registered_on: str
    status: str
    measures: tuple[MeasureView, ...]

    @classmethod
    def parse(cls, f: Fields) -> Vehicle:
        return cls(
            plate_no=f.text("plate_no"),
            plate_type=f.text("plate_type"),
            brand=f.text("brand"),
            model=f.text("model"),
            vin=f.text("vin", pattern=r"[0-9A-HJ-NPR-Z]{17}"),
            color=f.text("color"),
            registered_on=f.text("registered_on"),
            status=f.text("status"),
            measures=measures_of(f),
        )


@dataclass(frozen=True)
class HotelStay:
    hotel: str
    address: str
    city: str
    check_in_ms: int
    check_out_ms: int

    @classmethod
    def parse(cls, f: Fields) -> HotelStay:
        stay = cls(
            hotel=f.text("hotel"),
            address=f.text("address"),
            city=f.text("city"),
            check_in_ms=f.integer("check_in_ms", min=0),
            check_out_ms=f.integer("check_out_ms", min=0),
        )
        if stay.check_out_ms < stay.check_in_ms:
            raise f.fail("check_out_ms", "is before check_in_ms")
        return stay


@dataclass(frozen=True)
class BorderControlResult:
    request_id: str
    outcome: str  # applied / lifted
    control: BorderControl


class PublicSecurityClient(MeasureClient):
    kind: ClassVar[str | None] = "public_security"

    async def household(self, court: CourtInfo, subject: Subject, *, request_id: str | None = None) -> HouseholdInquiry:
        """Household registration (户籍) and border controls of ``subject``."""
        body = self.envelope(request_id, court, subject)

        def parse(f: Fields) -> HouseholdInquiry:
            check_subject_echo(f, subject)
            hh = f.opt_obj("household")
            return HouseholdInquiry(
                request_id=f.text("request_id"),
                answered_at_ms=f.integer("answered_at_ms", min=0),
                household=Household.parse(hh) if hh is not None else None,
                border_controls=tuple(f.objs("border_controls", BorderControl.parse)),
            )

        return await self.post("/v1/inquiry", body, parse)

    async def vehicles(
        self, court: CourtInfo, subject: Subject, *, request_id: str | None = None
    ) -> tuple[Vehicle, ...]:
        body = self.envelope(request_id, court, subject)

        def parse(f: Fields) -> tuple[Vehicle, ...]:
            check_subject_echo(f, subject)
            return tuple(f.objs("vehicles", Vehicle.parse))

        return await self.post("/v1/vehicles", body, parse)

    async def hotel_stays(
        self, court: CourtInfo, subject: Subject, start: date, end: date, *, request_id: str | None = None
    ) -> tuple[HotelStay, ...]:
        body = self.envelope(request_id, court, subject, **{"from": start.isoformat(), "to": end.isoformat()})

        def parse(f: Fields) -> tuple[HotelStay, ...]:
            check_subject_echo(f, subject)
            return tuple(f.objs("stays", HotelStay.parse))

        return await self.post("/v1/hotel_stays", body, parse)

    async def apply_border_control(
        self, court: CourtInfo, subject: Subject, *, approval: str | None, term_days: int, request_id: str
    ) -> BorderControlResult:
        """Border exit control (边控); ``approval`` is the sealed approval token (act ``border_control``)."""
        body = self.envelope(request_id, court, subject, action="apply", approval=approval, term_days=term_days)
        return await self.post("/v1/border_control", body, _border_result)

    async def lift_border_control(
        self, court: CourtInfo, subject: Subject, control_id: str, *, request_id: str
    ) -> BorderControlResult:
        body = self.envelope(request_id, court, subject, action="lift", control_id=control_id)
        return await self.post("/v1/border_control", body, _border_result)


def _border_result(f: Fields) -> BorderControlResult:
    return BorderControlResult(
        request_id=f.text("request_id"),
        outcome=f.text("outcome", choices=("applied", "lifted")),
        control=BorderControl.parse(f),
    )
