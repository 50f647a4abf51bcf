"""Seeded subscriber numbers. Pure functions of the seed."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from plugins.agency.synth import Person, agency_rng, population

OPERATORS = (
    ("中国移动", ("134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "182", "187", "188")),
    ("中国联通", ("130", "131", "132", "155", "156", "185", "186", "166")),
    ("中国电信", ("133", "153", "180", "181", "189", "177", "199")),
)
PLANS = ("4G畅享套餐", "5G智享套餐", "神州行", "校园卡", "商务套餐")


@dataclass(frozen=True)
class SeedNumber:
    msisdn: str
    owner: Person
    operator: str
    plan: str
    status: str  # 正常 / 停机
    activated_offset_days: int


@functools.cache
def generate(seed: int) -> tuple[SeedNumber, ...]:
    rng = agency_rng(seed, "telecom")
    out: list[SeedNumber] = []
    used: set[str] = set()
    for person in population(seed):
        if person.role == "no_assets":
            continue
        count = 2 if person.role == "rich" else 1 if person.role == "encumbered" else rng.choice((0, 1, 1, 1, 2))
        for i in range(count):
            operator, prefixes = rng.choice(OPERATORS)
            while True:
                number = rng.choice(prefixes) + "".join(rng.choice("0123456789") for _ in range(8))
                if number not in used:
                    used.add(number)
                    break
            suspended = person.role is None and i > 0 and rng.random() < 0.3
            out.append(
                SeedNumber(
                    msisdn=number,
                    owner=person,
                    operator=operator,
                    plan=rng.choice(PLANS),
                    status="停机" if suspended else "正常",
                    activated_offset_days=-rng.randrange(30, 5000),
                )
            )
    return tuple(out)
