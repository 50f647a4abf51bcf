"""Seeded public-security data: vehicles, hotel stays, police stations. Pure functions of the seed."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from plugins.agency.ledger import SeedMeasure
from plugins.agency.synth import AREAS, Person, agency_rng, other_court_case, population

MODELS = (
    ("大众", "朗逸"),
    ("丰田", "卡罗拉"),
    ("比亚迪", "秦PLUS"),
    ("本田", "雅阁"),
    ("五菱", "宏光MINI"),
    ("吉利", "帝豪"),
    ("别克", "英朗"),
    ("长安", "CS75"),
)
COLORS = ("白", "黑", "银", "灰", "红", "蓝")
VIN_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
VIN_VALUES = {**{str(d): d for d in range(10)}, **dict(zip("ABCDEFGH", range(1, 9), strict=True))}
VIN_VALUES.update(dict(zip("JKLMN", range(1, 6), strict=True)))
VIN_VALUES.update({"P": 7, "R": 9})
VIN_VALUES.update(dict(zip("STUVWXYZ", range(2, 10), strict=True)))
VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
HOTELS = ("如家酒店", "汉庭酒店", "锦江之星", "7天酒店", "格林豪泰", "维也纳酒店", "全季酒店")
STATIONS = ("城关", "东城", "西城", "南关", "北关", "新华", "文化路", "解放路")


def vin(rng: random.Random) -> str:
    """A 17-character VIN with a valid check digit (position 9)."""
    chars = [rng.choice(VIN_CHARS) for _ in range(17)]
    chars[0] = "L"  # China
    total = sum(VIN_VALUES[c] * w for c, w in zip(chars, VIN_WEIGHTS, strict=True))
    chars[8] = "X" if total % 11 == 10 else str(total % 11)
    return "".join(chars)


def police_station(person: Person) -> str:
    """户籍派出所 (deterministic from the ID number)."""
    station = STATIONS[int(person.id_no[14:17]) % len(STATIONS)]
    return f"{person.area.city}公安局{person.area.district}分局{station}派出所"


@dataclass(frozen=True)
class SeedVehicle:
    plate_no: str  # 号牌号码
    plate_type: str  # 号牌种类
    owner: Person
    brand: str
    model: str
    vin: str
    color: str
    registered_offset_days: int


@dataclass(frozen=True)
class SeedStay:
    person: Person
    hotel: str
    address: str
    city: str
    check_in_offset_min: int  # minutes before genesis (negative)
    nights: int


@dataclass(frozen=True)
class PublicSecuritySeed:
    vehicles: tuple[SeedVehicle, ...]
    seals: tuple[SeedMeasure, ...]
    stays: tuple[SeedStay, ...]


def _vehicle(rng: random.Random, owner: Person, used: set[str]) -> SeedVehicle:
    while True:
        tail = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(4))
        plate = f"{owner.area.plate_prefix}{rng.randrange(0, 10)}{tail}"
        if plate not in used:
            used.add(plate)
            break
    brand, model = rng.choice(MODELS)
    return SeedVehicle(
        plate_no=plate,
        plate_type="小型汽车",
        owner=owner,
        brand=brand,
        model=model,
        vin=vin(rng),
        color=rng.choice(COLORS),
        registered_offset_days=-rng.randrange(100, 4000),
    )


def _stay(rng: random.Random, person: Person) -> SeedStay:
    area = rng.choice(AREAS)
    return SeedStay(
        person=person,
        hotel=f"{rng.choice(HOTELS)}（{area.city}{area.district}店）",
        address=(
            f"{area.province}{area.city}{area.district}"
            f"{rng.choice(('人民路', '建设路', '站前路'))}{rng.randrange(1, 300)}号"
        ),
        city=area.city,
        check_in_offset_min=-rng.randrange(60, 360 * 24 * 60),
        nights=rng.choice((1, 1, 1, 2, 3)),
    )


@functools.cache
def generate(seed: int) -> PublicSecuritySeed:
    rng = agency_rng(seed, "public_security")
    vehicles: list[SeedVehicle] = []
    seals: list[SeedMeasure] = []
    stays: list[SeedStay] = []
    used: set[str] = set()
    for person in population(seed):
        if person.role == "no_assets":
            continue
        count = {"rich": 2, "encumbered": 1}.get(person.role or "", 0)
        if person.role is None and rng.random() < 0.35:
            count = 1
        for _ in range(count):
            vehicle = _vehicle(rng, person, used)
            vehicles.append(vehicle)
            if person.role == "encumbered" or (person.role is None and rng.random() < 0.1):
                code, name, case_no = other_court_case(rng)
                start = -90 if person.role == "encumbered" else -rng.randrange(10, 600)
                seals.append(SeedMeasure(vehicle.plate_no, person.id_no, code, name, case_no, start, 730))
        n_stays = 3 if person.role == "rich" else (rng.randrange(1, 5) if rng.random() < 0.5 else 0)
        stays.extend(_stay(rng, person) for _ in range(n_stays))
    return PublicSecuritySeed(tuple(vehicles), tuple(seals), tuple(stays))
