"""Court codes (法院代字) and case numbers (案号): one example per rule, then properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.codes import PROVINCES, ROOT, CaseNumber, CaseType, CourtCode, CourtLevel
from hub.errors import InvalidCode

# --------------------------------------------------------------------------- court codes


@pytest.mark.parametrize(
    ("text", "level", "parent"),
    [
        ("最高法", CourtLevel.NATIONAL, None),
        ("豫", CourtLevel.HIGH, "最高法"),
        ("豫14", CourtLevel.INTERMEDIATE, "豫"),
        ("豫1402", CourtLevel.BASIC, "豫14"),
        ("内01", CourtLevel.INTERMEDIATE, "内"),
        ("黔0102", CourtLevel.BASIC, "黔01"),
        ("兵08", CourtLevel.INTERMEDIATE, "兵"),
        ("  桂03 ", CourtLevel.INTERMEDIATE, "桂"),
        ("\u3000京0105\n", CourtLevel.BASIC, "京01"),
    ],
)
def test_court_code_parse(text: str, level: CourtLevel, parent: str | None) -> None:
    code = CourtCode.parse(text)
    assert code.level is level
    assert str(code) == text.strip()
    assert (None if code.parent is None else str(code.parent)) == parent


def test_province_table_uses_court_abbreviations() -> None:
    assert len(PROVINCES) == 32  # 31 provincial-level regions + 新疆生产建设兵团
    assert PROVINCES["内"] == "内蒙古自治区"
    assert PROVINCES["黔"] == "贵州省"
    assert PROVINCES["兵"] == "新疆生产建设兵团"
    assert CourtCode.parse("豫14").province_name == "河南省"
    assert ROOT.province_name is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("蒙01", "内蒙古自治区 uses '内'"),
        ("贵01", "贵州省 uses '黔'"),
        ("X14", "'X' is not a province abbreviation"),
        ("军", "'军' is not a province abbreviation"),
        ("豫1", "must be 2 (intermediate court) or 4 (basic court) digits, got 1"),
        ("豫140", "got 3"),
        ("豫140201", "got 6"),
        ("豫１４", "must be ASCII digits"),
        ("豫1a", "must be ASCII digits"),
        ("豫00", "intermediate court number '00'"),
        ("豫0001", "intermediate court number '00'"),
        ("豫1400", "basic court number '00'"),
        ("最高法01", "unexpected '01' after '最高法'"),
        ("豫 14", "whitespace after '豫'"),
        ("河南", "'河' is not a province abbreviation"),
    ],
)
def test_court_code_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InvalidCode) as info:
        CourtCode.parse(text)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"court code '{text}'")
    assert info.value.reason == "invalid_code"


def test_court_code_constructor_validates() -> None:
    assert CourtCode("豫", "14") == CourtCode.parse("豫14")
    assert CourtCode(None) == ROOT == CourtCode.root()
    with pytest.raises(InvalidCode, match="takes no digits"):
        CourtCode(None, "14")
    with pytest.raises(InvalidCode, match="got 3"):
        CourtCode("豫", "141")


def test_codes_are_values() -> None:
    a, b = CourtCode.parse("豫14"), CourtCode.parse(" 豫14")
    assert a == b and hash(a) == hash(b) and {a, b} == {a}
    assert repr(a) == "CourtCode('豫14')"


def test_ancestors_nearest_first() -> None:
    code = CourtCode.parse("豫1402")
    assert [str(c) for c in code.ancestors()] == ["豫14", "豫", "最高法"]
    assert ROOT.ancestors() == ()


@pytest.mark.parametrize(
    ("inner", "outer", "expected"),
    [
        ("豫1402", "豫1402", True),
        ("豫1402", "豫14", True),
        ("豫1402", "豫", True),
        ("豫1402", "最高法", True),
        ("最高法", "最高法", True),
        ("豫", "豫", True),
        ("豫14", "豫1402", False),  # a parent is not within its child
        ("豫", "豫14", False),
        ("最高法", "豫", False),
        ("豫1502", "豫14", False),  # sibling city
        ("豫1402", "豫1401", False),  # sibling county
        ("鄂1402", "豫14", False),  # same digits, other province
        ("豫14", "豫1", None),  # not a code at all: cannot be asked
    ],
)
def test_is_within(inner: str, outer: str, expected: bool | None) -> None:
    if expected is None:
        with pytest.raises(InvalidCode):
            CourtCode.parse(inner).is_within(CourtCode.parse(outer))
        return
    assert CourtCode.parse(inner).is_within(CourtCode.parse(outer)) is expected


@pytest.mark.parametrize(
    ("a", "b", "common"),
    [
        ("豫1402", "豫1403", "豫14"),
        ("豫1402", "豫1302", "豫"),
        ("豫1402", "豫14", "豫14"),
        ("豫1402", "豫1402", "豫1402"),
        ("豫1402", "鄂1402", "最高法"),
        ("桂0203", "桂0302", "桂"),  # seed 004: 柳州 → 自治区 → 桂林
        ("最高法", "豫1402", "最高法"),
    ],
)
def test_common_ancestor(a: str, b: str, common: str) -> None:
    x, y = CourtCode.parse(a), CourtCode.parse(b)
    assert str(x.common_ancestor(y)) == common
    assert str(y.common_ancestor(x)) == common


# --------------------------------------------------------------------------- case numbers


@pytest.mark.parametrize(
    ("text", "year", "court", "case_type", "serial"),
    [
        ("（2024）豫1402执123号", 2024, "豫1402", CaseType.ENFORCEMENT, 123),
        ("(2024)豫1402执123号", 2024, "豫1402", CaseType.ENFORCEMENT, 123),
        ("（2019）内01执恢7号", 2019, "内01", CaseType.RESUMED, 7),
        ("（2020）豫14执保1号", 2020, "豫14", CaseType.PRESERVATION, 1),
        ("（2021）豫执异2号", 2021, "豫", CaseType.OBJECTION, 2),
        ("（2021）豫执复3号", 2021, "豫", CaseType.REVIEW, 3),
        ("（2022）最高法执监45号", 2022, "最高法", CaseType.SUPERVISION, 45),
        ("（2023）桂执协6号", 2023, "桂", CaseType.COORDINATION, 6),
        ("（1949）京0101执他999999999号", 1949, "京0101", CaseType.OTHER, 999_999_999),
        ("  （2100）兵08执1号\n", 2100, "兵08", CaseType.ENFORCEMENT, 1),
    ],
)
def test_case_number_parse(text: str, year: int, court: str, case_type: CaseType, serial: int) -> None:
    number = CaseNumber.parse(text)
    assert number.year == year
    assert number.court == CourtCode.parse(court)
    assert number.type is case_type
    assert number.serial == serial
    canonical = text.strip().replace("(", "（").replace(")", "）")
    assert str(number) == canonical
    assert CaseNumber.parse(str(number)) == number


def test_longest_type_wins() -> None:
    assert CaseNumber.parse("（2024）豫14执恢1号").type is CaseType.RESUMED
    assert CaseNumber.parse("（2024）豫14执1号").type is CaseType.ENFORCEMENT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(2024)豫1402执X号", "serial 'X' is not a positive integer"),
        ("(2024)豫1402执0号", "serial '0' is not a positive integer"),
        ("(2024)豫1402执-1号", "serial '-1' is not a positive integer"),
        ("(2024)豫1402执０1号", "serial '０1' is not a positive integer"),
        ("(2024)豫1402执012号", "serial '012' has a leading zero"),
        ("(2024)豫1402执1234567890号", "serial '1234567890' has more than 9 digits"),
        ("(2024)豫1402执号", "missing serial between '执' and '号'"),
        ("(2024）豫1402执1号", "mixed brackets: opened with ASCII '(' but closed with full-width '）'"),
        ("（2024)豫1402执1号", "mixed brackets: opened with full-width '（' but closed with ASCII ')'"),
        ("〔2024〕豫1402执1号", "must start with '(' or '（', found '〔'"),
        ("[2024]豫1402执1号", "must start with '(' or '（', found '['"),
        ("2024豫1402执1号", "must start with the year in brackets"),
        ("（2024豫1402执1号", "no closing bracket for '（'"),
        ("（24）豫1402执1号", "year '24' must be 4 ASCII digits"),
        ("（２０２４）豫1402执1号", "year '２０２４' must be 4 ASCII digits"),
        ("（1948）豫1402执1号", "year 1948 is outside 1949..2100"),
        ("（2101）豫1402执1号", "year 2101 is outside 1949..2100"),
        ("（2024）豫1402执1", "missing '号' at the end"),
        ("（2024）豫1402执1号之一", "unexpected '之一' after '号'"),
        ("（2024）豫1402执1号号", "unexpected '号' after '号'"),
        ("（2024）号", "missing court code, case type and serial"),
        ("（2024）蒙01执1号", "court code '蒙01': '蒙' is not a 法院代字 province abbreviation"),
        ("（2024）豫140执1号", "court code '豫140'"),
        ("（2024）最高法01执1号", "court code '最高法01': unexpected '01'"),
        ("（2024）豫1402执行1号", "case type '执行' is not one of 执, 执恢"),
        ("（2024）豫1402民初1号", "case type '民初' is not one of"),
        ("（2024）豫14021号", "court code '豫14021'"),
        ("（2024）豫1402 执1号", "whitespace after '（2024）豫1402'"),
        ("", "empty"),
    ],
)
def test_case_number_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidCode) as info:
        CaseNumber.parse(text)
    assert str(info.value).startswith(f"case number '{text}': ")
    assert message in str(info.value)


def test_case_number_constructor_validates() -> None:
    court = CourtCode.parse("豫1402")
    assert CaseNumber(2024, court, CaseType("执"), 1) == CaseNumber.parse("（2024）豫1402执1号")
    with pytest.raises(InvalidCode, match="year 1900 is outside"):
        CaseNumber(1900, court, CaseType.ENFORCEMENT, 1)
    with pytest.raises(InvalidCode, match="serial '0' is not a positive integer"):
        CaseNumber(2024, court, CaseType.ENFORCEMENT, 0)


def test_non_text_is_invalid_code() -> None:
    with pytest.raises(InvalidCode, match="expected text"):
        CaseNumber.parse(123)  # type: ignore[arg-type]
    with pytest.raises(InvalidCode, match="expected text"):
        CourtCode.parse(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

_pair = st.integers(1, 99).map(lambda n: f"{n:02d}")

courts: st.SearchStrategy[CourtCode] = st.one_of(
    st.just(ROOT),
    st.builds(CourtCode, st.sampled_from(sorted(PROVINCES))),
    st.builds(CourtCode, st.sampled_from(sorted(PROVINCES)), _pair),
    st.builds(lambda p, a, b: CourtCode(p, a + b), st.sampled_from(sorted(PROVINCES)), _pair, _pair),
)

# Small digit alphabets make related codes (same city, same county) common.
near_courts: st.SearchStrategy[CourtCode] = st.builds(
    lambda p, a, b, depth: CourtCode(p, (a + b)[: 2 * depth]) if p else ROOT,
    st.sampled_from(["豫", "鄂", ""]),
    st.sampled_from(["14", "15"]),
    st.sampled_from(["01", "02"]),
    st.integers(0, 2),
)

case_numbers: st.SearchStrategy[CaseNumber] = st.builds(
    CaseNumber,
    st.integers(1949, 2100),
    courts,
    st.sampled_from(list(CaseType)),
    st.integers(1, 999_999_999),
)


@given(courts)
def test_court_round_trip(code: CourtCode) -> None:
    assert CourtCode.parse(str(code)) == code
    assert CourtCode.parse(f" {code}\t") == code


@given(courts)
def test_parent_chain_matches_level(code: CourtCode) -> None:
    chain = code.ancestors()
    assert len(chain) == code.level.depth
    assert (chain[0] if chain else None) == code.parent
    assert all(chain[i].parent == (chain[i + 1] if i + 1 < len(chain) else None) for i in range(len(chain)))
    if chain:
        assert chain[-1] == ROOT


@given(st.one_of(courts, near_courts), st.one_of(courts, near_courts))
def test_is_within_matches_ancestors(a: CourtCode, b: CourtCode) -> None:
    assert a.is_within(b) == (a == b or b in a.ancestors())
    if a.is_within(b) and b.is_within(a):
        assert a == b


@given(st.one_of(courts, near_courts), st.one_of(courts, near_courts))
def test_common_ancestor_is_deepest_shared(a: CourtCode, b: CourtCode) -> None:
    common = a.common_ancestor(b)
    assert a.is_within(common) and b.is_within(common)
    assert common == b.common_ancestor(a)
    shared = [c for c in (a, *a.ancestors()) if b.is_within(c)]
    assert common == shared[0]


@given(case_numbers)
def test_case_number_round_trip(number: CaseNumber) -> None:
    text = str(number)
    assert text.startswith("（") and text.endswith("号")
    assert CaseNumber.parse(text) == number
    assert CaseNumber.parse(text.replace("（", "(").replace("）", ")")) == number


_case_alphabet = st.sampled_from(list("（）()〔〕 执恢保异复监协他行号最高法豫鄂蒙内兵0123456789０１X-之\u3000"))


@given(st.one_of(st.text(), st.text(_case_alphabet, max_size=20)))
def test_arbitrary_text_only_raises_invalid_code(text: str) -> None:
    for parse in (CaseNumber.parse, CourtCode.parse):
        try:
            parsed = parse(text)
        except InvalidCode as exc:
            assert str(exc)
        else:
            assert type(parsed).parse(str(parsed)) == parsed


@given(case_numbers, st.sampled_from(["之一", "号", " 1", "X", "（", ")"]))
def test_trailing_text_is_rejected(number: CaseNumber, extra: str) -> None:
    with pytest.raises(InvalidCode):
        CaseNumber.parse(str(number) + extra)
