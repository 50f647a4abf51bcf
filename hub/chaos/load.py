"""Generated workload of a chaos campaign: every command-center workflow, driven over admin sockets.

Worker threads pick operations from a seeded mix (the choice of operations is reproducible from the
seed; their timing is not — it depends on the faults and the machine). An operation that a node
acknowledged is *accepted*: the node has committed it, so the invariant checker must find it in that
node's store whatever happens afterwards. A call that failed (node down, refused) is not accepted; a
call whose answer was lost (timed out) is *uncertain* and only the stores tell.

Multi-step workflows continue with *follow-ups*: the counterpart's next step (a reply, an answer, a
registration …), tried until the item has arrived there; before each retry the acting court's state
of the item is read, so a step whose answer was lost is not taken twice.
"""

from __future__ import annotations

import collections
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from hub.errors import CourtHubError
from hub.localtree import LocalTree

CALL_TIMEOUT_S = 15.0
MAX_FOLLOWUPS = 400  # open follow-ups kept; older ones are dropped (the items stay open, still checked)
MAX_TRIES = 60


@dataclass(frozen=True)
class Accepted:
    """An operation a node acknowledged: ``court`` committed ``what`` with id ``ref``."""

    court: str
    what: str  # directive | report | supervision | request | petition | entrust | case | control | step
    ref: str  # envelope / item id, case number, or request id
    counterpart: str = ""


@dataclass
class FollowUp:
    court: str  # who acts
    op: str
    args: dict[str, Any]
    item: str  # workflow item the step acts on
    target_state: str  # the item's state at ``court`` once the step is taken
    then: list[FollowUp] = field(default_factory=list)
    tries: int = 0
    not_before: float = 0.0


@dataclass
class LoadStats:
    attempted: collections.Counter[str] = field(default_factory=collections.Counter)
    accepted: collections.Counter[str] = field(default_factory=collections.Counter)
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    uncertain: collections.Counter[str] = field(default_factory=collections.Counter)
    steps_taken: int = 0
    steps_abandoned: int = 0


class Workload:
    """The campaign's load: ``run`` in threads until ``stop``; ``accepted`` lists what nodes committed."""

    def __init__(self, tree: LocalTree, seed: int, shape: dict[str, Any], *, subject_seed: int) -> None:
        self.tree = tree
        self.seed = seed
        self.root: str = shape["root"]
        self.relays: list[str] = list(shape["relays"])
        self.leaves: list[str] = list(shape["leaves"])
        self.parents: dict[str, str] = dict(shape["parents"])
        self.accepted: list[Accepted] = []
        self.stats = LoadStats()
        self._followups: collections.deque[FollowUp] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._counter = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self.subjects = _subjects(subject_seed)  # the simulators' population

    # -- threads ---------------------------------------------------------------------------------
    def start(self, workers: int = 2, pause_s: float = 0.25) -> None:
        for i in range(workers):
            rng = random.Random(self.seed * 1009 + i)
            thread = threading.Thread(target=self._run, args=(rng, pause_s), name=f"chaos-load-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 60) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, rng: random.Random, pause_s: float) -> None:
        ops: list[tuple[int, Callable[[random.Random], None]]] = [
            (3, self.directive),
            (2, self.report),
            (2, self.supervision),
            (2, self.request),
            (1, self.petition),
            (2, self.entrust),
            (2, self.case),
            (1, self.entrust_freeze),
        ]
        choices = [fn for weight, fn in ops for _ in range(weight)]
        while not self._stop.is_set():
            followup = self._next_followup()
            if followup is not None and rng.random() < 0.6:
                self._do_followup(followup)
            else:
                if followup is not None:
                    self._push(followup)
                rng.choice(choices)(rng)
            self._stop.wait(pause_s * rng.uniform(0.5, 1.5))

    # -- calling ---------------------------------------------------------------------------------
    def _call(self, what: str, court: str, op: str, args: dict[str, Any]) -> Any:
        """The op's answer, or None if the node refused or could not be reached (counted)."""
        with self._lock:
            self.stats.attempted[what] += 1
        try:
            result = self.tree.call(court, op, args, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            with self._lock:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    self.stats.uncertain[what] += 1
                else:
                    self.stats.failed[what] += 1
            return None
        except (CourtHubError, OSError, ValueError):
            with self._lock:
                self.stats.failed[what] += 1
            return None
        with self._lock:
            self.stats.accepted[what] += 1
        return result

    def _accept(self, court: str, what: str, ref: str, counterpart: str = "") -> None:
        with self._lock:
            self.accepted.append(Accepted(court, what, ref, counterpart))

    def _push(self, *followups: FollowUp) -> None:
        with self._lock:
            self._followups.extend(followups)
            while len(self._followups) > MAX_FOLLOWUPS:
                self._followups.popleft()
                self.stats.steps_abandoned += 1

    def _next_followup(self) -> FollowUp | None:
        now = time.monotonic()
        with self._lock:
            for _ in range(len(self._followups)):
                f = self._followups.popleft()
                if f.not_before <= now:
                    return f
                self._followups.append(f)
        return None

    def _state(self, court: str, item: str) -> str | None:
        try:
            shown = self.tree.call(court, "workflow.show", {"item_id": item}, timeout=CALL_TIMEOUT_S)
        except (grpc.RpcError, CourtHubError, OSError):
            return None
        items = shown.get("items") or []
        return str(items[0]["state"]) if items else None

    def _do_followup(self, f: FollowUp) -> None:
        state = self._state(f.court, f.item)
        done = state == f.target_state
        if not done and state is not None:
            done = self._call("step", f.court, f.op, f.args) is not None
            if done:
                action = str(f.args.get("action") or f.op.rsplit(".", 1)[1])
                self._accept(f.court, "step", f"{f.item}:{action}")
        if done:
            with self._lock:
                self.stats.steps_taken += 1
            self._push(*f.then)
            return
        f.tries += 1
        if f.tries >= MAX_TRIES:
            with self._lock:
                self.stats.steps_abandoned += 1
            return
        f.not_before = time.monotonic() + min(10.0, 0.5 * f.tries)
        self._push(f)

    def _n(self) -> int:
        return next(self._counter)

    # -- operations ------------------------------------------------------------------------------
    def directive(self, rng: random.Random) -> None:
        n = self._n()
        court = rng.choice([self.root, *self.relays])
        if court == self.root and rng.random() < 0.3:
            to, subtree = rng.choice(self.leaves), False
        else:
            to, subtree = court, True
        args = {"to": to, "subtree": subtree, "level": "routine", "title": f"混沌测试指令{n}", "body": "请按要求执行。"}
        done = self._call("directive", court, "directive.issue", args)
        if done is not None:
            self._accept(court, "directive", str(done["id"]), to)

    def report(self, rng: random.Random) -> None:
        n = self._n()
        court = rng.choice(self.leaves)
        args = {
            "title": f"执行要情{n}",
            "text": "执行现场遭遇阻挠，已依法处置。",
            "category": "violence",
            "urgency": rng.choice(["routine", "urgent"]),
        }
        done = self._call("report", court, "report.send", args)
        if done is not None:
            self._accept(court, "report", str(done["id"]), self.parents[court])

    def supervision(self, rng: random.Random) -> None:
        n = self._n()
        party = rng.choice(self.leaves)
        issuer = self.parents[party]
        args = {
            "workflow": "supervision",
            "parties": [party],
            "title": f"督办函{n}",
            "data": {"text": "请报告执行进展。", "reply_days": 10},
        }
        done = self._call("supervision", issuer, "workflow.create", args)
        if done is None:
            return
        item = str(done["item_id"])
        self._accept(issuer, "supervision", item, party)
        close = FollowUp(issuer, "workflow.act", {"item_id": item, "party": party, "action": "close"}, item, "closed")
        reply_args = {"item_id": item, "party": party, "action": "reply", "data": {"text": "已推进执行。"}}
        self._push(FollowUp(party, "workflow.act", reply_args, item, "replied", [close]))

    def request(self, rng: random.Random) -> None:
        n = self._n()
        court = rng.choice(self.leaves)
        args = {"title": f"请示{n}", "text": "可否直接扣划？", "topic": "law", "answer_days": 5}
        done = self._call("request", court, "request.send", args)
        if done is None:
            return
        item, to = str(done["id"]), str(done["to"])
        self._accept(court, "request", item, to)
        self._push(FollowUp(to, "request.answer", {"id": item, "text": "可以。"}, item, "answered"))

    def petition(self, rng: random.Random) -> None:
        n = self._n()
        to = rng.choice(self.leaves)
        args = {
            "to": to,
            "title": f"信访件{n}",
            "text": "信访人反映执行款未到账。",
            "petitioner": "李某",
            "phone": "13812345678",
            "reply_days": 30,
        }
        done = self._call("petition", self.root, "petition.send", args)
        if done is None:
            return
        item = str(done["id"])
        self._accept(self.root, "petition", item, to)
        close = FollowUp(self.root, "petition.close", {"id": item, "text": "予以结案。"}, item, "closed")
        reply = FollowUp(to, "petition.reply", {"id": item, "text": "已核查发放。"}, item, "replied", [close])
        self._push(FollowUp(to, "petition.accept", {"id": item, "by": "刘洋"}, item, "accepted", [reply]))

    def _other_branch(self, rng: random.Random, court: str) -> str:
        others = [c for c in self.leaves if self.parents[c] != self.parents[court]]
        return rng.choice(others or [c for c in self.leaves if c != court])

    def entrust(self, rng: random.Random) -> None:
        n = self._n()
        court = rng.choice(self.leaves)
        to = self._other_branch(rng, court)
        args = {"to": to, "item": "investigate", "case_number": f"（2026）{court}执{n}号", "text": "请协助调查。"}
        done = self._call("entrust", court, "entrust.create", args)
        if done is None:
            return
        item = str(done["item_id"])
        self._accept(court, "entrust", item, to)
        complete = FollowUp(to, "entrust.complete", {"item_id": item, "result": "已调查。"}, item, "completed")
        register = {"item_id": item, "handler": "刘洋", "phone": "0371-6795588"}
        self._push(FollowUp(to, "entrust.register", register, item, "registered", [complete]))

    def entrust_freeze(self, rng: random.Random) -> None:
        """A cross-branch entrusted freeze, executed through the party court's own bank plugin."""
        executors = [c for c in self.leaves if c in BANK_LEAVES]
        court = rng.choice([c for c in self.leaves if c not in executors])
        to = rng.choice(executors)
        n = self._n()
        subject = rng.choice(self.subjects)
        account = rng.choice(subject["accounts"])
        args = {
            "to": to,
            "item": "freeze",
            "case_number": f"（2026）{court}执{n}号",
            "subject_name": subject["name"],
            "id_number": subject["id_no"],
            "agency": "bank",
            "asset": account,
            "amount_fen": 100,
            "term_days": 365,
            "text": "请协助冻结。",
        }
        done = self._call("entrust_freeze", court, "entrust.create", args)
        if done is None:
            return
        item = str(done["item_id"])
        self._accept(court, "entrust", item, to)
        execute = FollowUp(to, "entrust.execute", {"item_id": item}, item, "in_progress")
        register = {"item_id": item, "handler": "刘洋", "phone": "0371-6795588"}
        self._push(FollowUp(to, "entrust.register", register, item, "registered", [execute]))

    def case(self, rng: random.Random) -> None:
        """立案即查 at a basic court (inquiries relayed to the agencies' courts), then a freeze."""
        n = self._n()
        court = rng.choice(self.leaves)
        subject = rng.choice(self.subjects)
        number = f"（2026）{court}执{10000 + n}号"
        args = {"number": number, "party": subject["name"], "id_number": subject["id_no"], "wait_s": 0}
        done = self._call("case", court, "case.file", args)
        if done is None:
            return
        self._accept(court, "case", number)
        if rng.random() < 0.6:
            freeze = {
                "number": number,
                "action": "freeze",
                "agency": "bank",
                "asset": rng.choice(subject["accounts"]),
                "amount_fen": 100,
                "wait_s": 0,
            }
            measure = self._call("control", court, "control.request", freeze)
            if measure is not None:
                self._accept(court, "control", str(measure["measure"]["request_id"]))


# Basic courts with a bank plugin of their own (entrusted freezes are executed there).
BANK_LEAVES = ("豫0102",)


def _subjects(seed: int) -> list[dict[str, Any]]:
    """People of the simulators' population (their ``seed``) with at least one bank account."""
    from plugins.agency.subjects import seeded_subjects

    out = []
    for s in seeded_subjects(seed):
        accounts = [a.asset_id for a in s.bank_accounts]
        if accounts:
            out.append({"name": s.name, "id_no": s.id_no, "accounts": accounts})
        if len(out) >= 20:
            break
    return out
