"""Deterministic synthetic people (same seed → same people) and identity-number helpers.

The population is shared by the four simulators: a person seeded ``7`` has the same name and
resident ID number (居民身份证号码) in the bank, the land registry, public security and the
telecom operator, so an inquiry fan-out finds one consistent debtor. Each agency derives its own
assets from ``agency_rng(seed, kind)``.

The first three people of every seed are fixed *roles* that tests and the demo can rely on (see
:data:`ROLES`): ``rich`` (clean assets everywhere), ``encumbered`` (assets already frozen/sealed by
another court) and ``no_assets`` (registered resident, nothing else).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"

POPULATION_SIZE = 120
ROLES = ("rich", "encumbered", "no_assets")


@dataclass(frozen=True)
class Area:
    code: str  # 行政区划代码 (6 digits)
    province: str
    city: str
    district: str
    plate_prefix: str  # 号牌前缀, e.g. 豫N
    phone_area: str
    lat: float
    lon: float
    court_code: str  # the basic court (基层法院) of the district
    court_name: str


AREAS: tuple[Area, ...] = (
    Area("411402", "河南省", "商丘市", "梁园区", "豫N", "0370", 34.44, 115.65, "豫1402", "商丘市梁园区人民法院"),
    Area("411403", "河南省", "商丘市", "睢阳区", "豫N", "0370", 34.39, 115.63, "豫1403", "商丘市睢阳区人民法院"),
    Area("410105", "河南省", "郑州市", "金水区", "豫A", "0371", 34.80, 113.66, "豫0105", "郑州市金水区人民法院"),
    Area(
        "450202", "广西壮族自治区", "柳州市", "城中区", "桂B", "0772", 24.31, 109.41, "桂0202", "柳州市城中区人民法院"
    ),
    Area(
        "450305", "广西壮族自治区", "桂林市", "七星区", "桂C", "0773", 25.28, 110.32, "桂0305", "桂林市七星区人民法院"
    ),
    Area("141002", "山西省", "临汾市", "尧都区", "晋L", "0357", 36.08, 111.52, "晋1002", "临汾市尧都区人民法院"),
)

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN_MALE = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳建国志文博峰海"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀玲桂英华慧巧美娅婷雪琳晶妍茜月莉萍红燕洁琴蕾璐颖倩欣怡"
STREETS = (
    "人民路",
    "建设路",
    "解放路",
    "中山路",
    "神火大道",
    "凯旋路",
    "文化路",
    "滨江路",
    "七星路",
    "鼓楼街",
    "平阳街",
)
ETHNICITIES = ("汉族",) * 18 + ("壮族", "回族")


def id_check_digit(first17: str) -> str:
    """The check digit (校验码) of an 18-digit resident ID number, per GB 11643-1999."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"expected 17 digits, got {first17!r}")
    total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True))
    return ID_CHECK[total % 11]


def resident_id_problem(id_no: str) -> str | None:
    """Why ``id_no`` is not a valid 18-digit resident ID number, or ``None`` when it is."""
    if len(id_no) != 18:
        return f"must have 18 characters, got {len(id_no)}"
    if not id_no[:17].isdigit():
        return "the first 17 characters must be digits"
    try:
        date(int(id_no[6:10]), int(id_no[10:12]), int(id_no[12:14]))
    except ValueError:
        return f"birth date {id_no[6:14]} is not a valid date"
    expected = id_check_digit(id_no[:17])
    if id_no[17].upper() != expected:
        return f"check digit is {id_no[17]!r}, expected {expected!r}"
    return None


def make_resident_id(area_code: str, birth: date, seq: int, male: bool) -> str:
    """Build a valid resident ID: area + birth date + 3-digit sequence (odd = male) + check digit."""
    seq3 = seq % 1000
    if (seq3 % 2 == 1) != male:
        seq3 = (seq3 + 1) % 1000
    first17 = f"{area_code}{birth:%Y%m%d}{seq3:03d}"
    return first17 + id_check_digit(first17)


def luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit (bank card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class Person:
    index: int
    name: str
    id_no: str
    gender: str  # 男 / 女
    birth: date
    ethnicity: str
    area: Area
    address: str  # 户籍地址
    role: str | None  # one of ROLES for the first three people, else None


def agency_rng(seed: int, label: str) -> random.Random:
    """A deterministic RNG for one seed and one purpose (string seeding is stable across runs)."""
    return random.Random(f"court-hub:{seed}:{label}")


def _person(rng: random.Random, index: int, used: set[str]) -> Person:
    male = rng.random() < 0.55
    surname = rng.choice(SURNAMES)
    pool = GIVEN_MALE if male else GIVEN_FEMALE
    given = rng.choice(pool) + (rng.choice(pool) if rng.random() < 0.7 else "")
    area = rng.choice(AREAS)
    birth = date(1955, 1, 1) + timedelta(days=rng.randrange(0, 365 * 48))
    seq = rng.randrange(0, 999)
    id_no = make_resident_id(area.code, birth, seq, male)
    while id_no in used:
        seq += 2
        id_no = make_resident_id(area.code, birth, seq, male)
    used.add(id_no)
    address = (
        f"{area.province}{area.city}{area.district}{rng.choice(STREETS)}{rng.randrange(1, 400)}号"
        f"{rng.randrange(1, 20)}号楼{rng.randrange(1, 6)}单元{rng.randrange(1, 30)}0{rng.randrange(1, 4)}室"
    )
    return Person(
        index=index,
        name=surname + given,
        id_no=id_no,
        gender="男" if male else "女",
        birth=birth,
        ethnicity=rng.choice(ETHNICITIES),
        area=area,
        address=address,
        role=ROLES[index] if index < len(ROLES) else None,
    )


_CACHE: dict[int, tuple[Person, ...]] = {}


def population(seed: int) -> tuple[Person, ...]:
    """The seeded people, in a stable order (index 0–2 are the fixed roles)."""
    cached = _CACHE.get(seed)
    if cached is None:
        rng = agency_rng(seed, "population")
        used: set[str] = set()
        cached = tuple(_person(rng, i, used) for i in range(POPULATION_SIZE))
        _CACHE[seed] = cached
    return cached


# Other courts that hold pre-existing measures in the seeded data (他案).
OTHER_COURTS: tuple[tuple[str, str], ...] = (
    ("豫1403", "商丘市睢阳区人民法院"),
    ("豫0105", "郑州市金水区人民法院"),
    ("桂0305", "桂林市七星区人民法院"),
    ("晋1002", "临汾市尧都区人民法院"),
)


def other_court_case(rng: random.Random) -> tuple[str, str, str]:
    """(court code, court name, case number) of some other court's enforcement case."""
    code, name = rng.choice(OTHER_COURTS)
    return code, name, f"（{rng.choice((2024, 2025))}）{code}执{rng.randrange(100, 9000)}号"
