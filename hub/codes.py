"""Court codes (法院代字) and case numbers (案号).

Court codes are the routing addresses of the federation (DESIGN.md §2). They follow the 法院代字
used in 案号 (最高人民法院《关于人民法院案件案号的若干规定》and its standard):

==============  ==============================  ==========================  ===============
level           form                            example                     parent
==============  ==============================  ==========================  ===============
NATIONAL        ``最高法``                       最高人民法院                 none (the root)
HIGH            one-character abbreviation       ``豫`` 河南省高级人民法院     ``最高法``
INTERMEDIATE    abbreviation + 2 ASCII digits    ``豫14`` 商丘市中级人民法院   ``豫``
BASIC           abbreviation + 4 ASCII digits    ``豫1402`` 梁园区人民法院     ``豫14``
==============  ==============================  ==========================  ===============

The abbreviations are those of real 法院代字, which differ from the everyday ones in two places:
内蒙古 is ``内`` (not 蒙) and 贵州 is ``黔`` (not 贵). The everyday forms are rejected with a message
naming the right one, never silently mapped: a routing address has exactly one spelling.
``兵`` (新疆生产建设兵团) is a HIGH-level code of its own directly under the root. Military and
other special courts (军 …) are not part of the hub's tree and are rejected.

Decisions (so that every code has one canonical spelling):

* digits are ASCII only (full-width ``１４`` is rejected);
* ``00`` never names a court: the intermediate pair and the basic court's own pair are 01–99;
* a basic court's parent is the intermediate court named by its first two digits, so the tree is
  derived from the codes alone (``豫1402`` is within ``豫14``, which is within ``豫``).

Case numbers: ``（2024）豫1402执123号`` = (year) + court code + case type + serial + 号.

* Brackets are both ASCII ``( )`` or both full-width ``（ ）``; mixed pairs and other brackets
  (``〔 〕``, ``[ ]`` …) are rejected. ``str()`` always gives the full-width canonical form.
* The year is four ASCII digits, 1949..2100.
* The case type is one of :class:`CaseType`; the longest type wins (``执恢`` is not ``执`` + 恢).
* The serial is a positive ASCII integer of at most 9 digits without leading zeros, so that each
  case number has exactly one spelling.
* Whitespace around the text is stripped; whitespace inside, or any other extra text (``之一``
  after 号, a second bracket …), is rejected.

Every failure raises :class:`hub.errors.InvalidCode` whose message quotes the whole input and names
the part that is wrong.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hub.errors import InvalidCode

__all__ = [
    "PROVINCES",
    "ROOT",
    "CaseNumber",
    "CaseType",
    "CourtCode",
    "CourtLevel",
]

NATIONAL_CODE = "最高法"

#: 法院代字 of each provincial-level high court → the region's Chinese name.
PROVINCES: dict[str, str] = {
    "京": "北京市",
    "津": "天津市",
    "冀": "河北省",
    "晋": "山西省",
    "内": "内蒙古自治区",
    "辽": "辽宁省",
    "吉": "吉林省",
    "黑": "黑龙江省",
    "沪": "上海市",
    "苏": "江苏省",
    "浙": "浙江省",
    "皖": "安徽省",
    "闽": "福建省",
    "赣": "江西省",
    "鲁": "山东省",
    "豫": "河南省",
    "鄂": "湖北省",
    "湘": "湖南省",
    "粤": "广东省",
    "桂": "广西壮族自治区",
    "琼": "海南省",
    "渝": "重庆市",
    "川": "四川省",
    "黔": "贵州省",
    "云": "云南省",
    "藏": "西藏自治区",
    "陕": "陕西省",
    "甘": "甘肃省",
    "青": "青海省",
    "宁": "宁夏回族自治区",
    "新": "新疆维吾尔自治区",
    "兵": "新疆生产建设兵团",
}

# Everyday abbreviations that are NOT the 法院代字: named in the error instead of being accepted.
_NOT_COURT_ABBREVIATIONS: dict[str, str] = {"蒙": "内", "贵": "黔", "滇": "云", "蜀": "川"}

_ASCII_DIGITS = frozenset("0123456789")
_MAX_SERIAL_DIGITS = 9
MIN_YEAR = 1949
MAX_YEAR = 2100


class CourtLevel(enum.StrEnum):
    """Level of a court in the tree; the value is the stable spelling for config and protos."""

    NATIONAL = "national"  # 最高人民法院
    HIGH = "high"  # 高级人民法院
    INTERMEDIATE = "intermediate"  # 中级人民法院
    BASIC = "basic"  # 基层人民法院

    @property
    def depth(self) -> int:
        """0 for the root, 3 for a basic court."""
        return _DEPTH[self]


_DEPTH = {CourtLevel.NATIONAL: 0, CourtLevel.HIGH: 1, CourtLevel.INTERMEDIATE: 2, CourtLevel.BASIC: 3}
_LEVEL_BY_DIGITS = {0: CourtLevel.HIGH, 2: CourtLevel.INTERMEDIATE, 4: CourtLevel.BASIC}


def _is_ascii_digits(text: str) -> bool:
    return bool(text) and all(c in _ASCII_DIGITS for c in text)


def _court_problem(province: str | None, digits: str) -> str | None:
    """Why (province, digits) is not a court code, or None when it is one."""
    if not isinstance(digits, str):
        return f"digits must be text, got {type(digits).__name__}"
    if province is None:
        return f"the national root '{NATIONAL_CODE}' takes no digits, got '{digits}'" if digits else None
    if province not in PROVINCES:
        if province in _NOT_COURT_ABBREVIATIONS:
            right = _NOT_COURT_ABBREVIATIONS[province]
            return f"'{province}' is not a 法院代字 province abbreviation; {PROVINCES[right]} uses '{right}'"
        return f"'{province}' is not a province abbreviation (法院代字); expected one of {' '.join(PROVINCES)}"
    if not digits:
        return None
    if not all(c in _ASCII_DIGITS for c in digits):
        return f"digits '{digits}' after '{province}' must be ASCII digits 0-9"
    if len(digits) not in (2, 4):
        return (
            f"digits '{digits}' after '{province}' must be 2 (intermediate court) "
            f"or 4 (basic court) digits, got {len(digits)}"
        )
    if digits[:2] == "00":
        return f"intermediate court number '00' in '{province}{digits}' does not name a court (01-99)"
    if len(digits) == 4 and digits[2:] == "00":
        return f"basic court number '00' in '{province}{digits}' does not name a court (01-99)"
    return None


@dataclass(frozen=True, slots=True)
class CourtCode:
    """A court's 法院代字: ``最高法``, ``豫``, ``豫14`` or ``豫1402``.

    ``province`` is the one-character abbreviation (None for the national root); ``digits`` is
    ``""``, two or four ASCII digits. Construct with :meth:`parse` or directly; both validate.
    Equality and hashing are by value, so codes work as dict keys and set members.
    """

    province: str | None
    digits: str = ""

    def __post_init__(self) -> None:
        problem = _court_problem(self.province, self.digits)
        if problem is not None:
            raise InvalidCode(f"court code '{self.province or ''}{self.digits}': {problem}")

    @classmethod
    def parse(cls, text: str) -> CourtCode:
        """Parse a court code; surrounding whitespace is ignored, anything else must be exact."""
        if not isinstance(text, str):
            raise InvalidCode(f"court code {text!r}: expected text, got {type(text).__name__}")
        result = _parse_court(text.strip())
        if isinstance(result, str):
            raise InvalidCode(f"court code '{text}': {result}")
        return result

    @classmethod
    def root(cls) -> CourtCode:
        """The national root ``最高法``."""
        return ROOT

    @property
    def level(self) -> CourtLevel:
        if self.province is None:
            return CourtLevel.NATIONAL
        return _LEVEL_BY_DIGITS[len(self.digits)]

    @property
    def province_name(self) -> str | None:
        """Chinese name of the province (``河南省``); None for the root."""
        return None if self.province is None else PROVINCES[self.province]

    @property
    def parent(self) -> CourtCode | None:
        """The court directly above: basic → intermediate → high → ``最高法`` → None."""
        if self.province is None:
            return None
        if not self.digits:
            return ROOT
        return CourtCode(self.province, self.digits[:-2])

    def ancestors(self) -> tuple[CourtCode, ...]:
        """Every court above this one, nearest first, ending with the root (empty for the root)."""
        out: list[CourtCode] = []
        node = self.parent
        while node is not None:
            out.append(node)
            node = node.parent
        return tuple(out)

    def is_within(self, other: CourtCode) -> bool:
        """True when this court is ``other`` or below it (membership of ``other``'s subtree)."""
        if other.province is None:
            return True
        return self.province == other.province and self.digits[: len(other.digits)] == other.digits

    def common_ancestor(self, other: CourtCode) -> CourtCode:
        """The deepest court that both are within (one of them if one contains the other)."""
        if self.province != other.province or self.province is None:
            return ROOT
        common = ""
        for i in range(0, min(len(self.digits), len(other.digits)), 2):
            if self.digits[i : i + 2] != other.digits[i : i + 2]:
                break
            common = self.digits[: i + 2]
        return CourtCode(self.province, common)

    def __str__(self) -> str:
        return NATIONAL_CODE if self.province is None else self.province + self.digits

    def __repr__(self) -> str:
        return f"CourtCode({str(self)!r})"


def _parse_court(code: str) -> CourtCode | str:
    """The parsed code, or a message saying what is wrong (without the input prefix)."""
    if not code:
        return "empty"
    if code.startswith(NATIONAL_CODE):
        rest = code[len(NATIONAL_CODE) :]
        return ROOT if not rest else f"unexpected '{rest}' after '{NATIONAL_CODE}'"
    for i, ch in enumerate(code):
        if ch.isspace():
            return f"whitespace after '{code[:i]}'"
    problem = _court_problem(code[0], code[1:])
    return problem if problem is not None else CourtCode(code[0], code[1:])


ROOT = CourtCode(None)


class CaseType(enum.StrEnum):
    """Enforcement case types (执行案件类型代字); the value is the 案号 spelling."""

    ENFORCEMENT = "执"  # 首次执行
    RESUMED = "执恢"  # 恢复执行
    PRESERVATION = "执保"  # 财产保全执行
    OBJECTION = "执异"  # 执行异议
    REVIEW = "执复"  # 执行复议
    SUPERVISION = "执监"  # 执行监督
    COORDINATION = "执协"  # 执行协调
    OTHER = "执他"  # 其他执行


_TYPES_BY_TEXT = {t.value: t for t in CaseType}
_TYPE_LIST = ", ".join(t.value for t in CaseType)
_BRACKETS = {"(": ")", "（": "）"}
_CLOSERS = {")": "ASCII", "）": "full-width"}
_LOOKALIKE_BRACKETS = "〔〕[]【】［］{}｛｝<>《》〈〉"
_NO = "号"


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


@dataclass(frozen=True, slots=True)
class CaseNumber:
    """An enforcement case number (案号) such as ``（2024）豫1402执123号``."""

    year: int
    court: CourtCode
    type: CaseType
    serial: int

    def __post_init__(self) -> None:
        where = f"case number '{self._render()}'"
        if isinstance(self.year, bool) or not isinstance(self.year, int):
            raise InvalidCode(f"{where}: year must be an int, got {type(self.year).__name__}")
        if not MIN_YEAR <= self.year <= MAX_YEAR:
            raise InvalidCode(f"{where}: year {self.year} is outside {MIN_YEAR}..{MAX_YEAR}")
        if not isinstance(self.court, CourtCode):
            raise InvalidCode(f"{where}: court must be a CourtCode, got {type(self.court).__name__}")
        if not isinstance(self.type, CaseType):
            if self.type not in _TYPES_BY_TEXT:
                raise InvalidCode(f"{where}: case type '{self.type}' is not one of {_TYPE_LIST}")
            object.__setattr__(self, "type", _TYPES_BY_TEXT[self.type])
        if isinstance(self.serial, bool) or not isinstance(self.serial, int) or self.serial < 1:
            raise InvalidCode(f"{where}: serial '{self.serial}' is not a positive integer")
        if len(str(self.serial)) > _MAX_SERIAL_DIGITS:
            raise InvalidCode(f"{where}: serial {self.serial} has more than {_MAX_SERIAL_DIGITS} digits")

    def _render(self) -> str:
        return f"（{self.year}）{self.court}{getattr(self.type, 'value', self.type)}{self.serial}{_NO}"

    @classmethod
    def parse(cls, text: str) -> CaseNumber:
        """Parse ``（2024）豫1402执123号`` or ``(2024)豫1402执123号``; see the module docstring."""
        if not isinstance(text, str):
            raise InvalidCode(f"case number {text!r}: expected text, got {type(text).__name__}")
        result = _parse_case(text.strip())
        if isinstance(result, str):
            raise InvalidCode(f"case number '{text}': {result}")
        return result

    def __str__(self) -> str:
        """The canonical full-width form."""
        return self._render()

    def __repr__(self) -> str:
        return f"CaseNumber({str(self)!r})"


def _parse_case(s: str) -> CaseNumber | str:
    if not s:
        return "empty"
    for i, ch in enumerate(s):
        if ch.isspace():
            return f"whitespace after '{s[:i]}'"
    opener = s[0]
    if opener not in _BRACKETS:
        if opener in _LOOKALIKE_BRACKETS:
            return f"must start with '(' or '（', found '{opener}'"
        return f"must start with the year in brackets '(' or '（', found '{opener}'"
    close_at = next((i for i, ch in enumerate(s) if i > 0 and ch in _CLOSERS), -1)
    if close_at < 0:
        return f"no closing bracket for '{opener}'"
    closer = s[close_at]
    if closer != _BRACKETS[opener]:
        kind = "ASCII" if opener == "(" else "full-width"
        return (
            f"mixed brackets: opened with {kind} '{opener}' but closed with {_CLOSERS[closer]} "
            f"'{closer}'; use both ASCII '()' or both full-width '（）'"
        )
    year_text = s[1:close_at]
    if len(year_text) != 4 or not _is_ascii_digits(year_text):
        return f"year '{year_text}' must be 4 ASCII digits"
    year = int(year_text)
    if not MIN_YEAR <= year <= MAX_YEAR:
        return f"year {year} is outside {MIN_YEAR}..{MAX_YEAR}"

    rest = s[close_at + 1 :]
    no_at = rest.find(_NO)
    if no_at < 0:
        return f"missing '{_NO}' at the end"
    if no_at != len(rest) - 1:
        return f"unexpected '{rest[no_at + 1 :]}' after '{_NO}'"
    body = rest[:no_at]

    # Court code: 最高法, or one abbreviation followed by everything up to the next Chinese
    # character (its digits; anything else there is reported as bad digits).
    if not body:
        return "missing court code, case type and serial"
    end = len(NATIONAL_CODE) if body.startswith(NATIONAL_CODE) else 1
    while end < len(body) and not _is_cjk(body[end]):
        end += 1
    court_text = body[:end]
    court = _parse_court(court_text)
    if isinstance(court, str):
        return f"court code '{court_text}': {court}"

    # Case type: the whole run of Chinese characters, so the longest type wins and
    # unknown types (执行, 民初) are named in full rather than split into type + garbage.
    after = body[len(court_text) :]
    end = 0
    while end < len(after) and _is_cjk(after[end]):
        end += 1
    type_text = after[:end]
    if not type_text:
        return f"missing case type after court code '{court_text}' (expected one of {_TYPE_LIST})"
    case_type = _TYPES_BY_TEXT.get(type_text)
    if case_type is None:
        return f"case type '{type_text}' is not one of {_TYPE_LIST}"

    serial_text = after[end:]
    if not serial_text:
        return f"missing serial between '{type_text}' and '{_NO}'"
    if not _is_ascii_digits(serial_text) or serial_text == "0" * len(serial_text):
        return f"serial '{serial_text}' is not a positive integer"
    if serial_text[0] == "0":
        return f"serial '{serial_text}' has a leading zero"
    if len(serial_text) > _MAX_SERIAL_DIGITS:
        return f"serial '{serial_text}' has more than {_MAX_SERIAL_DIGITS} digits"
    return CaseNumber(year, court, case_type, int(serial_text))
