"""The seeded subjects (被执行人) and what each agency holds about them.

Tests and the demo pick debtors here instead of hard-coding ID numbers::

    rich = subject_by_role(seed, "rich")          # clean assets at every agency
    busy = subject_by_role(seed, "encumbered")    # assets already frozen / sealed by another court
    poor = subject_by_role(seed, "no_assets")     # a registered resident with nothing else
    any_with_land = [s for s in seeded_subjects(seed) if s.properties]

Everything here is a pure function of the seed, so it matches what a simulator started with the
same seed serves (as long as the simulator's own effects have not changed it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from plugins.agency.synth import population


@dataclass(frozen=True)
class SeededAsset:
    asset_id: str  # account no. / certificate no. / plate no.
    balance_fen: int | None = None  # bank accounts only
    held_by_other_court: bool = False  # a seeded measure of another court is active on it
    frozen_by_others_fen: int = 0  # bank: the amount another court froze

    def to_json(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "balance_fen": self.balance_fen,
            "held_by_other_court": self.held_by_other_court,
            "frozen_by_others_fen": self.frozen_by_others_fen,
        }


@dataclass(frozen=True)
class SeededSubject:
    index: int
    role: str | None  # rich / encumbered / no_assets for the first three, else None
    name: str
    id_no: str
    gender: str
    birth_date: str
    address: str
    area_code: str
    local_court_code: str  # the basic court of the subject's district
    local_court_name: str
    bank_accounts: tuple[SeededAsset, ...]
    properties: tuple[SeededAsset, ...]
    vehicles: tuple[SeededAsset, ...]
    phone_numbers: tuple[str, ...]
    active_phone_numbers: tuple[str, ...]
    hotel_stays: int

    id_type: str = "resident_id"

    @property
    def bank_balance_fen(self) -> int:
        return sum(a.balance_fen or 0 for a in self.bank_accounts)

    def subject_json(self) -> dict[str, Any]:
        """The ``subject`` object of a request."""
        return {"name": self.name, "id_type": self.id_type, "id_no": self.id_no}

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "role": self.role,
            "name": self.name,
            "id_type": self.id_type,
            "id_no": self.id_no,
            "gender": self.gender,
            "birth_date": self.birth_date,
            "address": self.address,
            "area_code": self.area_code,
            "local_court_code": self.local_court_code,
            "local_court_name": self.local_court_name,
            "bank_accounts": [a.to_json() for a in self.bank_accounts],
            "properties": [a.to_json() for a in self.properties],
            "vehicles": [a.to_json() for a in self.vehicles],
            "phone_numbers": list(self.phone_numbers),
            "active_phone_numbers": list(self.active_phone_numbers),
            "hotel_stays": self.hotel_stays,
        }


@functools.cache
def seeded_subjects(seed: int) -> tuple[SeededSubject, ...]:
    """Every seeded person with a summary of their assets at each of the four agencies."""
    from plugins.bank.data import generate as bank_data
    from plugins.land.data import generate as land_data
    from plugins.public_security.data import generate as ps_data
    from plugins.telecom.data import generate as telecom_data

    bank = bank_data(seed)
    land = land_data(seed)
    ps = ps_data(seed)
    numbers = telecom_data(seed)
    frozen: dict[str, int] = {}
    for m in bank.freezes:
        frozen[m.asset_id] = frozen.get(m.asset_id, 0) + (m.amount_fen or 0)
    sealed = {m.asset_id for m in land.seals} | {m.asset_id for m in ps.seals}
    out: list[SeededSubject] = []
    for p in population(seed):
        own_numbers = [n for n in numbers if n.owner.id_no == p.id_no]
        out.append(
            SeededSubject(
                index=p.index,
                role=p.role,
                name=p.name,
                id_no=p.id_no,
                gender=p.gender,
                birth_date=p.birth.isoformat(),
                address=p.address,
                area_code=p.area.code,
                local_court_code=p.area.court_code,
                local_court_name=p.area.court_name,
                bank_accounts=tuple(
                    SeededAsset(a.account_no, a.balance_fen, a.account_no in frozen, frozen.get(a.account_no, 0))
                    for a in bank.accounts
                    if a.owner.id_no == p.id_no
                ),
                properties=tuple(
                    SeededAsset(x.cert_no, None, x.cert_no in sealed)
                    for x in land.properties
                    if x.owner.id_no == p.id_no
                ),
                vehicles=tuple(
                    SeededAsset(v.plate_no, None, v.plate_no in sealed) for v in ps.vehicles if v.owner.id_no == p.id_no
                ),
                phone_numbers=tuple(n.msisdn for n in own_numbers),
                active_phone_numbers=tuple(n.msisdn for n in own_numbers if n.status == "正常"),
                hotel_stays=sum(1 for s in ps.stays if s.person.id_no == p.id_no),
            )
        )
    return tuple(out)


def subject_by_role(seed: int, role: str) -> SeededSubject:
    """The seeded subject with a fixed role: ``rich``, ``encumbered`` or ``no_assets``."""
    for s in seeded_subjects(seed):
        if s.role == role:
            return s
    raise KeyError(f"no seeded subject with role {role!r} (roles: rich, encumbered, no_assets)")
