"""Seeded real-estate registrations (不动产登记) and other courts' seals. Pure functions of the seed."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from plugins.agency.ledger import SeedMeasure
from plugins.agency.synth import Person, agency_rng, other_court_case, population

ESTATES = ("建业", "正商", "碧桂园", "万达", "阳光", "锦绣", "滨湖", "香榭", "名门", "翡翠")
USAGES = ("住宅", "住宅", "住宅", "商业", "办公")


@dataclass(frozen=True)
class SeedProperty:
    cert_no: str  # 不动产权证书号
    unit_no: str  # 不动产单元号
    owner: Person
    address: str  # 坐落
    area_m2: float  # 建筑面积
    usage: str  # 用途
    ownership: str  # 共有情况: 单独所有 / 共同共有 / 按份共有
    share_percent: int  # 权利人份额
    registered_offset_days: int


@dataclass(frozen=True)
class LandSeed:
    properties: tuple[SeedProperty, ...]
    seals: tuple[SeedMeasure, ...]


def _property(rng: random.Random, owner: Person, serial: int) -> SeedProperty:
    area = owner.area
    year = rng.randrange(2016, 2025)
    province = owner.area.plate_prefix[0]
    ownership = rng.choice(("单独所有", "单独所有", "共同共有", "按份共有"))
    share = 100 if ownership != "按份共有" else rng.choice((30, 50, 70))
    return SeedProperty(
        cert_no=f"{province}（{year}）{area.city}不动产权第{serial:07d}号",
        unit_no=(
            f"{area.code}{rng.randrange(0, 999999):06d}GB{rng.randrange(0, 99999):05d}F{rng.randrange(0, 10**8):08d}"
        ),
        owner=owner,
        address=(
            f"{area.city}{area.district}{rng.choice(ESTATES)}{rng.choice(('花园', '小区', '城', '公馆'))}"
            f"{rng.randrange(1, 30)}号楼{rng.randrange(1, 5)}单元{rng.randrange(1, 33)}0{rng.randrange(1, 5)}室"
        ),
        area_m2=round(rng.uniform(45, 220), 2),
        usage=rng.choice(USAGES),
        ownership=ownership,
        share_percent=share,
        registered_offset_days=-rng.randrange(100, 3000),
    )


@functools.cache
def generate(seed: int) -> LandSeed:
    rng = agency_rng(seed, "land")
    props: list[SeedProperty] = []
    seals: list[SeedMeasure] = []
    serial = rng.randrange(1000, 9000)
    for person in population(seed):
        if person.role == "no_assets":
            continue
        count = {"rich": 2, "encumbered": 1}.get(person.role or "", 0)
        if person.role is None and rng.random() < 0.4:
            count = rng.choice((1, 1, 2))
        for _ in range(count):
            serial += rng.randrange(1, 50)
            prop = _property(rng, person, serial)
            props.append(prop)
            if person.role == "encumbered" or (person.role is None and rng.random() < 0.1):
                code, name, case_no = other_court_case(rng)
                start = -200 if person.role == "encumbered" else -rng.randrange(10, 900)
                seals.append(SeedMeasure(prop.cert_no, person.id_no, code, name, case_no, start, 1095))
    return LandSeed(tuple(props), tuple(seals))
