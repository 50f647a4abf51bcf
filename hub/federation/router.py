"""Routing: where an envelope goes from this node.

Pure logic over what the node knows — its own code, its parent, its enrolled children, the routes
its children announced and the capabilities offered here. The tree mirrors court codes (a node
enrolls only courts below it), so a court in this node's subtree that no child announced yet is
sent to the child whose code contains it, and anything outside the subtree goes up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.codes import CourtCode
from hub.federation.envelope import Target
from hub.trust import below


@dataclass(frozen=True)
class Plan:
    local: bool = False
    hops: tuple[CourtCode, ...] = ()
    error: str = ""
    reason: str = ""


@dataclass
class Router:
    me: CourtCode
    parent: CourtCode | None
    children: set[CourtCode] = field(default_factory=set)
    # Court → the child link that leads to it (announced by children).
    routes: dict[CourtCode, CourtCode] = field(default_factory=dict)
    capabilities: set[str] = field(default_factory=set)

    def child_for(self, court: CourtCode) -> CourtCode | None:
        via = self.routes.get(court)
        if via is not None:
            return via
        for child in self.children:
            if court.is_within(child):
                return child
        return None

    def known_courts(self) -> set[CourtCode]:
        """This node and every court known below it."""
        return {self.me, *self.children, *self.routes}

    def plan(self, target: Target, from_hop: CourtCode | None) -> Plan:
        if target.mode == "capability":
            return self._plan_capability(target.capability, from_hop)
        assert target.court is not None
        if target.mode == "court":
            return self._plan_court(target.court, from_hop)
        return self._plan_subtree(target.court, from_hop)

    def _up(self, from_hop: CourtCode | None, what: str) -> Plan:
        if self.parent is None:
            return Plan(error=f"{what} is not reachable from {self.me} (no parent, not below)", reason="unroutable")
        if from_hop == self.parent:
            return Plan(error=f"{what} was sent down to {self.me} but is not below it", reason="misrouted")
        return Plan(hops=(self.parent,))

    def _plan_court(self, court: CourtCode, from_hop: CourtCode | None) -> Plan:
        if court == self.me:
            return Plan(local=True)
        if below(court, self.me):
            child = self.child_for(court)
            if child is None:
                return Plan(error=f"court {court} is not enrolled below {self.me}", reason="unknown_court")
            if child == from_hop:
                return Plan(error=f"court {court} came from {child} and routes back to it", reason="misrouted")
            return Plan(hops=(child,))
        return self._up(from_hop, f"court {court}")

    def _plan_subtree(self, top: CourtCode, from_hop: CourtCode | None) -> Plan:
        # Broadcasts only travel downward: every node on the way is above `top` or inside it.
        if not (top.is_within(self.me) or self.me.is_within(top)):
            return Plan(error=f"subtree {top} is not below {self.me}", reason="misrouted")
        local = self.me.is_within(top) and from_hop is not None
        hops = tuple(
            sorted(
                (c for c in self.children if c != from_hop and (c.is_within(top) or below(top, c))),
                key=str,
            )
        )
        if not local and not hops and top != self.me:
            return Plan(error=f"no court of subtree {top} is enrolled below {self.me}", reason="unknown_court")
        return Plan(local=local, hops=hops)

    def _plan_capability(self, capability: str, from_hop: CourtCode | None) -> Plan:
        if capability in self.capabilities:
            return Plan(local=True)
        if self.parent is None:
            return Plan(error=f"no court above {self.me} offers {capability}", reason="no_capability")
        if from_hop == self.parent:
            # Capability requests travel upward only; one from above that we cannot serve is misrouted.
            return Plan(error=f"{capability} sent down to {self.me}, which does not offer it", reason="misrouted")
        return Plan(hops=(self.parent,))


def path(origin: CourtCode, destination: CourtCode) -> list[CourtCode]:
    """The courts an envelope passes from origin to destination (both included)."""
    top = origin.common_ancestor(destination)
    up = [origin, *[a for a in origin.ancestors() if a.is_within(top)]]
    down: list[CourtCode] = []
    node: CourtCode | None = destination
    while node is not None and node != top:
        down.append(node)
        node = node.parent
    return up + list(reversed(down))
