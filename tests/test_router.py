"""Routing: where an envelope goes from a node, and the path between two courts.

The main tree: this node is 豫14 (商丘中院), its parent 豫, its children 豫1402 and 豫1403.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.codes import CourtCode
from hub.federation.envelope import Target
from hub.federation.router import Plan, Router, path


def c(text: str) -> CourtCode:
    return CourtCode.parse(text)


ME, PARENT, A, B = c("豫14"), c("豫"), c("豫1402"), c("豫1403")


def router(**kw: object) -> Router:
    r = Router(me=ME, parent=PARENT, children={A, B})
    for name, value in kw.items():
        setattr(r, name, value)
    return r


def court(text: str) -> Target:
    return Target.to_court(c(text))


def subtree(text: str) -> Target:
    return Target.to_subtree(c(text))


def hops(*codes: str) -> tuple[CourtCode, ...]:
    return tuple(c(x) for x in codes)


# --------------------------------------------------------------------------- single court


@pytest.mark.parametrize("from_hop", [None, PARENT, A])
def test_court_local(from_hop: CourtCode | None) -> None:
    assert router().plan(court("豫14"), from_hop) == Plan(local=True)


@pytest.mark.parametrize(("dest", "from_hop", "via"), [("豫1402", None, "豫1402"), ("豫1402", PARENT, "豫1402")])
def test_court_down(dest: str, from_hop: CourtCode | None, via: str) -> None:
    assert router().plan(court(dest), from_hop) == Plan(hops=hops(via))


def test_court_down_from_one_child_to_its_sibling() -> None:
    assert router().plan(court("豫1403"), A) == Plan(hops=hops("豫1403"))


def test_court_down_follows_announced_routes() -> None:
    # 豫 with children 豫14 and 豫15; 豫14 announced 豫1402.
    r = Router(me=PARENT, parent=c("最高法"), children={ME, c("豫15")}, routes={A: ME})
    assert r.plan(court("豫1402"), None) == Plan(hops=hops("豫14"))
    # A court not announced yet goes to the child whose code contains it.
    assert r.plan(court("豫1509"), None) == Plan(hops=hops("豫15"))
    assert r.known_courts() == {PARENT, ME, c("豫15"), A}


@pytest.mark.parametrize("dest", ["豫15", "豫1501", "豫", "最高法", "京0105"])
@pytest.mark.parametrize("from_hop", [None, A])
def test_court_up(dest: str, from_hop: CourtCode | None) -> None:
    assert router().plan(court(dest), from_hop) == Plan(hops=(PARENT,))


@pytest.mark.parametrize("from_hop", [None, PARENT, A])
def test_unknown_court_below(from_hop: CourtCode | None) -> None:
    plan = router().plan(court("豫1405"), from_hop)
    assert plan.reason == "unknown_court" and not plan.local and not plan.hops
    assert "豫1405" in plan.error


@pytest.mark.parametrize("dest", ["豫15", "豫1501", "京0105", "豫"])
def test_misrouted_from_parent_but_not_below(dest: str) -> None:
    plan = router().plan(court(dest), PARENT)
    assert plan.reason == "misrouted" and not plan.hops and not plan.local


def test_court_from_a_child_that_routes_back_to_it_is_misrouted() -> None:
    plan = router().plan(court("豫1402"), A)
    assert plan.reason == "misrouted" and not plan.hops


def test_root_without_parent_cannot_route_outside() -> None:
    r = Router(me=PARENT, parent=None, children={ME})
    plan = r.plan(court("京01"), None)
    assert plan.reason == "unroutable" and not plan.hops
    assert r.plan(court("豫1402"), None) == Plan(hops=(ME,))


# --------------------------------------------------------------------------- subtree broadcast


def test_subtree_of_me_originated_here_fans_out_to_every_child() -> None:
    assert router().plan(subtree("豫14"), None) == Plan(local=False, hops=hops("豫1402", "豫1403"))


@pytest.mark.parametrize("top", ["豫14", "豫", "最高法"])
def test_subtree_from_parent_is_delivered_here_and_fanned_out(top: str) -> None:
    assert router().plan(subtree(top), PARENT) == Plan(local=True, hops=hops("豫1402", "豫1403"))


def test_subtree_of_one_child_goes_only_to_it() -> None:
    assert router().plan(subtree("豫1402"), PARENT) == Plan(local=False, hops=hops("豫1402"))
    assert router().plan(subtree("豫1403"), None) == Plan(local=False, hops=hops("豫1403"))


def test_subtree_when_top_is_below_a_child() -> None:
    r = Router(me=PARENT, parent=c("最高法"), children={ME, c("豫15")})
    assert r.plan(subtree("豫1402"), c("最高法")) == Plan(local=False, hops=hops("豫14"))
    assert r.plan(subtree("豫14"), None) == Plan(local=False, hops=hops("豫14"))


def test_subtree_at_a_leaf_from_its_parent_is_local_only() -> None:
    r = Router(me=A, parent=ME)
    assert r.plan(subtree("豫14"), ME) == Plan(local=True)
    assert r.plan(subtree("豫1402"), ME) == Plan(local=True)


@pytest.mark.parametrize("top", ["豫15", "豫1501", "京"])
@pytest.mark.parametrize("from_hop", [None, PARENT])
def test_subtree_outside_is_misrouted(top: str, from_hop: CourtCode | None) -> None:
    plan = router().plan(subtree(top), from_hop)
    assert plan.reason == "misrouted" and not plan.hops and not plan.local


def test_subtree_of_unenrolled_court_below() -> None:
    plan = router().plan(subtree("豫1405"), PARENT)
    assert plan.reason == "unknown_court" and not plan.hops


def test_subtree_from_a_child_is_not_sent_back_to_it() -> None:
    plan = router().plan(subtree("豫14"), A)
    assert A not in plan.hops


# --------------------------------------------------------------------------- capability


def test_capability_served_here() -> None:
    r = router(capabilities={"bank.inquiry"})
    assert r.plan(Target.to_capability("bank.inquiry"), None) == Plan(local=True)
    assert r.plan(Target.to_capability("bank.inquiry"), A) == Plan(local=True)


@pytest.mark.parametrize("from_hop", [None, A])
def test_capability_not_here_goes_up(from_hop: CourtCode | None) -> None:
    r = router(capabilities={"bank.inquiry"})
    assert r.plan(Target.to_capability("land.inquiry"), from_hop) == Plan(hops=(PARENT,))


def test_capability_not_offered_anywhere_up_to_root() -> None:
    r = Router(me=c("最高法"), parent=None, children={PARENT}, capabilities={"bank.inquiry"})
    plan = r.plan(Target.to_capability("land.inquiry"), PARENT)
    assert plan.reason == "no_capability" and not plan.hops and not plan.local


def test_capability_from_parent_not_offered_here_is_not_bounced_back() -> None:
    # Capability routing only climbs; an envelope sent down to us that we cannot serve must be
    # refused like any other misrouted envelope, not returned to the hop it came from.
    plan = router().plan(Target.to_capability("land.inquiry"), PARENT)
    assert PARENT not in plan.hops
    assert plan.reason == "misrouted"


# --------------------------------------------------------------------------- path


@pytest.mark.parametrize(
    ("origin", "destination", "expected"),
    [
        ("豫1402", "豫1503", ["豫1402", "豫14", "豫", "豫15", "豫1503"]),
        ("豫1402", "豫1403", ["豫1402", "豫14", "豫1403"]),
        ("豫1402", "京0105", ["豫1402", "豫14", "豫", "最高法", "京", "京01", "京0105"]),
        ("豫", "豫1402", ["豫", "豫14", "豫1402"]),
        ("豫1402", "豫", ["豫1402", "豫14", "豫"]),
        ("豫1402", "豫1402", ["豫1402"]),
        ("最高法", "京01", ["最高法", "京", "京01"]),
    ],
)
def test_path(origin: str, destination: str, expected: list[str]) -> None:
    assert [str(x) for x in path(c(origin), c(destination))] == expected


# --------------------------------------------------------------------------- properties

_PAIRS = st.sampled_from(["01", "02", "03"])
_CODES = st.one_of(
    st.just(c("最高法")),
    st.just(c("豫")),
    st.builds(lambda a: c(f"豫{a}"), _PAIRS),
    st.builds(lambda a, b: c(f"豫{a}{b}"), _PAIRS, _PAIRS),
)


def _children_of(code: CourtCode) -> list[CourtCode]:
    if code.province is None:
        return [c("豫")]
    if len(code.digits) == 4:
        return []
    return [CourtCode(code.province, code.digits + d) for d in ("01", "02", "03")]


@st.composite
def _routers(draw: st.DrawFn) -> Router:
    me = draw(_CODES)
    # Usually under its parent; sometimes the top of a deployment without one.
    parent = me.parent if draw(st.integers(min_value=0, max_value=3)) else None
    children = set(draw(st.lists(st.sampled_from(_children_of(me)), unique=True))) if _children_of(me) else set()
    return Router(me=me, parent=parent, children=children)


@settings(max_examples=300)
@given(
    r=_routers(),
    dest=_CODES,
    mode=st.sampled_from(["court", "subtree"]),
    pick=st.integers(min_value=0, max_value=10),
)
def test_plan_never_sends_back_to_from_hop(r: Router, dest: CourtCode, mode: str, pick: int) -> None:
    neighbours: list[CourtCode | None] = [None, r.parent, *sorted(r.children, key=str)]
    from_hop = neighbours[pick % len(neighbours)]
    target = Target.to_court(dest) if mode == "court" else Target.to_subtree(dest)
    plan = r.plan(target, from_hop)
    if from_hop is not None:
        assert from_hop not in plan.hops
    # Hops are neighbours only, without repeats; a refusal goes nowhere.
    assert set(plan.hops) <= {*r.children, *([r.parent] if r.parent else [])}
    assert len(set(plan.hops)) == len(plan.hops)
    if plan.reason:
        assert not plan.hops and not plan.local and plan.error
    else:
        assert plan.local or plan.hops or (mode == "subtree" and dest == r.me)


@settings(max_examples=200)
@given(origin=_CODES, destination=_CODES)
def test_path_is_a_walk_through_the_common_ancestor(origin: CourtCode, destination: CourtCode) -> None:
    walk = path(origin, destination)
    assert walk[0] == origin and walk[-1] == destination
    assert len(set(walk)) == len(walk)
    assert origin.common_ancestor(destination) in walk
    for here, there in itertools.pairwise(walk):
        assert here.parent == there or there.parent == here
