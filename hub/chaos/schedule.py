"""The seeded fault schedule of a chaos campaign.

The schedule is a pure function of ``(seed, duration, tree shape)``: the same seed gives the same
faults at the same offsets on the same targets, so a failing campaign is replayed by its seed. It is
computed up front (not decided while running), which is also what makes it printable.

Rules the generator keeps so every fault is meaningful and can heal:

* every kind is injected at least once (node kills once each on a leaf, a relay and the root), the
  mandatory ones spread evenly over the load phase in a seeded order, then random extra faults fill
  the rest at a seeded rate;
* a target (a node, a link, a simulator) has at most one fault at a time, and a node is never killed
  while the link to its parent or its nats-server is under another fault (the effects would blur);
* every fault heals before the load phase ends, so the invariants are checked on a healed tree.
"""

from __future__ import annotations

import enum
import random
from dataclasses import asdict, dataclass
from typing import Any


class FaultKind(enum.StrEnum):
    KILL_LEAF = "kill_leaf"  # SIGKILL a basic court's node, restart it after a pause
    KILL_RELAY = "kill_relay"  # SIGKILL a city node (relays for its children)
    KILL_ROOT = "kill_root"  # SIGKILL the province node (root of the tree)
    NODE_PAUSE = "node_pause"  # SIGSTOP a node process (a hung node: sockets open, nothing answers), SIGCONT later
    LINK_CUT = "link_cut"  # the TCP proxy between a child and its parent drops everything
    LINK_DELAY = "link_delay"  # the proxy delays every chunk in both directions
    LINK_STALL = "link_stall"  # the proxy holds every byte, closes nothing (a black hole, no resets)
    NATS_RESTART = "nats_restart"  # SIGKILL a node's embedded nats-server (the node must restart it)
    SIM_STOP = "sim_stop"  # SIGSTOP an agency simulator (it stops answering), SIGCONT later
    SIM_SLOW = "sim_slow"  # the simulator answers every request after a delay
    SIM_DROP_REPLY = "sim_drop_reply"  # the simulator carries requests out but loses the answers
    SIM_RESTART = "sim_restart"  # SIGKILL the simulator process, start it again (same port, same ledger)


ALL_KINDS = tuple(FaultKind)
NODE_KILLS = (FaultKind.KILL_LEAF, FaultKind.KILL_RELAY, FaultKind.KILL_ROOT)
LINK_FAULTS = (FaultKind.LINK_CUT, FaultKind.LINK_DELAY, FaultKind.LINK_STALL)
SIM_FAULTS = (FaultKind.SIM_STOP, FaultKind.SIM_SLOW, FaultKind.SIM_DROP_REPLY, FaultKind.SIM_RESTART)


@dataclass(frozen=True)
class Fault:
    """One fault: injected ``at_s`` seconds after the load starts, healed ``length_s`` later.

    ``target`` is a court code (node kills, nats restarts, links: the child end of the link) or an
    agency kind (simulator faults). ``param`` is the delay in ms for ``link_delay``/``sim_slow``."""

    seq: int
    at_s: float
    length_s: float
    kind: FaultKind
    target: str
    param: int = 0

    @property
    def heal_s(self) -> float:
        return self.at_s + self.length_s

    def describe(self) -> str:
        extra = f" {self.param}ms" if self.param else ""
        kind, target = f"{self.kind.value:<15}", f"{self.target:<16}"
        return f"#{self.seq:03d} t+{self.at_s:7.1f}s {kind} {target} for {self.length_s:4.1f}s{extra}"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data


@dataclass(frozen=True)
class TreeShape:
    """What the schedule needs to know of the tree: courts by role, and each child's parent."""

    root: str
    relays: tuple[str, ...]
    leaves: tuple[str, ...]
    parents: dict[str, str]  # child -> parent, for every non-root court
    simulators: tuple[str, ...]  # agency kinds

    @property
    def courts(self) -> tuple[str, ...]:
        return (self.root, *self.relays, *self.leaves)


def _length(rng: random.Random, kind: FaultKind) -> float:
    """How long a fault lasts (seconds): node downtime, cut length, delay window …"""
    if kind in NODE_KILLS:
        return round(rng.uniform(1.0, 6.0), 1)
    if kind is FaultKind.NODE_PAUSE:
        return round(rng.choice((rng.uniform(2.0, 10.0), rng.uniform(30.0, 40.0))), 1)
    if kind is FaultKind.NATS_RESTART:
        return 1.0  # the node restarts its bus by itself; the window is only for bookkeeping
    if kind is FaultKind.LINK_STALL:
        # some shorter, some longer than the links' keepalive (20 s + 10 s timeout)
        return round(rng.choice((rng.uniform(3.0, 10.0), rng.uniform(30.0, 45.0))), 1)
    return round(rng.uniform(2.0, 8.0), 1)


def _param(rng: random.Random, kind: FaultKind) -> int:
    if kind is FaultKind.LINK_DELAY:
        return rng.choice((50, 150, 400, 800))
    if kind is FaultKind.SIM_SLOW:
        return rng.choice((500, 1500, 3000))
    return 0


def _candidates(shape: TreeShape, kind: FaultKind) -> tuple[str, ...]:
    if kind is FaultKind.KILL_LEAF:
        return shape.leaves
    if kind is FaultKind.KILL_RELAY:
        return shape.relays
    if kind is FaultKind.KILL_ROOT:
        return (shape.root,)
    if kind in LINK_FAULTS:
        return tuple(sorted(shape.parents))
    if kind in (FaultKind.NATS_RESTART, FaultKind.NODE_PAUSE):
        return shape.courts
    return shape.simulators


def _resources(shape: TreeShape, kind: FaultKind, target: str) -> set[str]:
    """The things a fault occupies while it lasts (no two faults share one)."""
    if kind in NODE_KILLS or kind is FaultKind.NODE_PAUSE:
        # a killed or hung node also takes its parent link and its bus with it
        return {f"node:{target}", f"link:{target}", f"nats:{target}"}
    if kind in LINK_FAULTS:
        return {f"link:{target}", f"node:{target}"}
    if kind is FaultKind.NATS_RESTART:
        return {f"nats:{target}", f"node:{target}"}
    return {f"sim:{target}"}


def make_schedule(seed: int, duration_s: float, shape: TreeShape, *, rate_per_min: float = 10.0) -> list[Fault]:
    """The faults of a campaign of ``duration_s`` seconds of load, sorted by start time.

    ``rate_per_min`` is the average number of extra faults per minute beyond the mandatory ones."""
    if duration_s < 20:
        raise ValueError(f"a chaos campaign needs at least 20 s of load (got {duration_s:g} s)")
    rng = random.Random(seed)
    settle_s = 10.0  # the last fault heals this long before the load ends
    first_s = 3.0
    window = duration_s - settle_s - first_s
    busy: list[tuple[float, float, set[str]]] = []  # (start, end, resources)

    def free(start: float, end: float, res: set[str]) -> bool:
        return all(e + 0.5 <= start or end + 0.5 <= s or not (r & res) for s, e, r in busy)

    planned: list[tuple[float, float, FaultKind, str, int]] = []

    def place(kind: FaultKind, start: float) -> bool:
        length = min(_length(rng, kind), round(window * 0.5, 1))
        param = _param(rng, kind)
        start = min(start, first_s + window - length)
        targets = list(_candidates(shape, kind))
        rng.shuffle(targets)
        for target in targets:
            res = _resources(shape, kind, target)
            if free(start, start + length, res):
                busy.append((start, start + length, res))
                planned.append((round(start, 1), length, kind, target, param))
                return True
        return False

    mandatory = list(ALL_KINDS)
    rng.shuffle(mandatory)
    step = window / len(mandatory)
    for i, kind in enumerate(mandatory):
        start = first_s + i * step + rng.uniform(0, step * 0.3)
        # if the slot is taken, try a little later, then anywhere from the start of the window
        tries = [start + shift * 0.7 for shift in range(20)] + [first_s + k * 0.5 for k in range(int(window * 2))]
        if not any(place(kind, t) for t in tries):
            raise ValueError(f"no room for a {kind.value} fault in {duration_s:g} s; make the campaign longer")
    extra = int(window / 60.0 * rate_per_min)
    for _ in range(extra):
        place(rng.choice(ALL_KINDS), rng.uniform(first_s, first_s + window))
    planned.sort(key=lambda p: (p[0], p[2].value, p[3]))
    return [
        Fault(i + 1, at, length, kind, target, param) for i, (at, length, kind, target, param) in enumerate(planned)
    ]
