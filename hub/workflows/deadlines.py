"""Case-node deadlines (流程节点期限), overdue lists and triage (繁简分流).

Seed 001 describes the 37 process nodes of an enforcement case that the supreme court monitors and
supervises when they run late. Each court's hub tracks the nodes of its own cases, as
configuration (DESIGN.md §3 defaults, ``[case_mgmt.nodes.<name>]`` to change or add):

========== ============================== ========================= =====================
node       what                           deadline                  completed by
========== ============================== ========================= =====================
assign     分案（确定承办人）             7 days after filing       ``deadlines done``
notice     发出执行通知书                 10 days after filing      ``deadlines done``
clues      核查财产线索                   7 days after each clue    ``deadlines done``
investigate 启动财产调查                  10 days after filing      立案即查 starting
conclude   执行结案                       6 months after filing     终本 or ``done``
========== ============================== ========================= =====================

A case is tracked from its filing: cases filed through the hub (``case file``) are picked up by the
periodic check, others are added with ``deadlines track``. Event-anchored nodes (``clues``) open
when the event is recorded (``deadlines start``). The check marks open nodes past their deadline
as overdue (audit entry, bus event ``case_node.overdue``); a node whose rule says ``supervise =
true`` is reported upward in the court's next signed statistics summary (sent at once), and the
parent court raises a 督办 supervision item for it automatically (:mod:`hub.workflows.supervision`).
The overdue list covers this court, or with ``subtree`` every court below it as reported in their
latest signed summaries.

Triage is configuration, not code (no national standard exists): ordered rules on the amount,
the number of parties and whether 立案即查 found assets, first match wins, else the default track.

This module also holds the ``[case_mgmt]`` settings shared with :mod:`hub.workflows.conclude` and
:mod:`hub.workflows.stats`.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    select,
    update,
)

from hub.agency.schema import ANSWERED, case_inquiries, cases
from hub.clock import iso
from hub.codes import CaseNumber, CourtCode
from hub.errors import ConfigError, InvalidInput, NotFound
from hub.federation.exchange import Tx
from hub.store.schema import metadata
from hub.trust import below
from hub.workflows.schema import workflow_items

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)
T = TypeVar("T")
DAY_MS = 86_400_000
CST = timezone(timedelta(hours=8))  # court days and months are counted in China Standard Time
Track = Literal["简", "繁"]
SIMPLE: Track = "简"
COMPLEX: Track = "繁"

# -- tables ------------------------------------------------------------------------------------

case_tracks = Table(
    "case_tracks",
    metadata,
    Column("case_number", String(64), primary_key=True),
    Column("court", String(16), nullable=False),
    Column("filed_at_ms", BigInteger, nullable=False),
    Column("amount_fen", BigInteger),
    Column("parties", Integer, nullable=False),
    Column("assets_found", Boolean, nullable=False),
    Column("track", String(4), nullable=False),  # 简 | 繁
    Column("triage_rule", Text, nullable=False),  # the matching rule's name, or "default"
    Column("source", String(16), nullable=False),  # agency (filed through the hub) | manual
    Column("updated_at_ms", BigInteger, nullable=False),
)

case_nodes = Table(
    "case_nodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_number", String(64), nullable=False),
    Column("node", String(32), nullable=False),
    Column("seq", Integer, nullable=False),  # event-anchored nodes may open several times
    Column("label", Text, nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("due_at_ms", BigInteger, nullable=False),
    Column("done_at_ms", BigInteger),
    Column("overdue_at_ms", BigInteger),  # when the check found it past due (NULL: not yet / never)
    Column("supervise", Boolean, nullable=False),
    Column("note", Text),
)
Index("ix_case_nodes_case", case_nodes.c.case_number, case_nodes.c.node)
Index("ix_case_nodes_due", case_nodes.c.done_at_ms, case_nodes.c.due_at_ms)

# At the supervising (parent) court: overdue nodes of a child reported for automatic supervision.
node_supervisions = Table(
    "node_supervisions",
    metadata,
    Column("court", String(16), primary_key=True),
    Column("case_number", String(64), primary_key=True),
    Column("node", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("label", Text, nullable=False),
    Column("due_at_ms", BigInteger, nullable=False),
    Column("reported_at_ms", BigInteger, nullable=False),
    Column("item_id", String(64)),  # the supervision item, once raised
    Column("raised_at_ms", BigInteger),
)

# -- settings ----------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeRule(_Model):
    label: str = Field(min_length=1, max_length=60)
    days: int | None = Field(default=None, ge=1, le=3650)
    months: int | None = Field(default=None, ge=1, le=120)
    # filed: opens when the case is tracked; event: opens with `deadlines start` (e.g. a clue).
    anchor: Literal["filed", "event"] = "filed"
    # Completed automatically: when 立案即查 starts, or when the case is concluded (终本).
    done_on: Literal["", "inquiries_started", "concluded"] = ""
    # Overdue → reported upward, and the parent court raises 督办 supervision automatically.
    supervise: bool = False
    basis: str = Field(default="", max_length=200)
    enabled: bool = True

    @model_validator(mode="after")
    def _one_term(self) -> NodeRule:
        if (self.days is None) == (self.months is None):
            raise ValueError("give exactly one of days or months")
        return self

    def due(self, start_ms: int) -> int:
        if self.months is not None:
            return add_months(start_ms, self.months)
        assert self.days is not None
        return start_ms + self.days * DAY_MS

    def term(self) -> str:
        return f"{self.months}个月" if self.months is not None else f"{self.days}日"


DEFAULT_NODES: dict[str, NodeRule] = {
    "assign": NodeRule(label="分案（确定承办人）", days=7, basis="立案后7日内分案"),
    "notice": NodeRule(label="发出执行通知书", days=10, basis="民诉法解释：收到申请执行书后10日内发出执行通知"),
    "clues": NodeRule(label="核查财产线索", days=7, anchor="event", basis="收到财产线索后7日内核查"),
    "investigate": NodeRule(
        label="启动财产调查", days=10, done_on="inquiries_started", basis="立案后10日内启动财产调查"
    ),
    "conclude": NodeRule(label="执行结案", months=6, done_on="concluded", basis="执行案件应在立案后6个月内执结"),
}


class TriageRule(_Model):
    name: str = Field(min_length=1, max_length=60)
    track: Track
    min_amount_fen: int | None = Field(default=None, ge=0)
    max_amount_fen: int | None = Field(default=None, ge=0)
    min_parties: int | None = Field(default=None, ge=1)
    max_parties: int | None = Field(default=None, ge=1)
    assets_found: bool | None = None

    def matches(self, amount_fen: int | None, parties: int, assets_found: bool) -> bool:
        if self.min_amount_fen is not None and (amount_fen is None or amount_fen < self.min_amount_fen):
            return False
        if self.max_amount_fen is not None and (amount_fen is None or amount_fen > self.max_amount_fen):
            return False
        if self.min_parties is not None and parties < self.min_parties:
            return False
        if self.max_parties is not None and parties > self.max_parties:
            return False
        return self.assets_found is None or self.assets_found == assets_found


# An example of local practice (seed 003: no national standard): small and clear cases are simple.
DEFAULT_TRIAGE = [
    TriageRule(
        name="小额案件（标的10万元以下，当事人不超过2人）", track=SIMPLE, max_amount_fen=10_000_000, max_parties=2
    ),
    TriageRule(
        name="查有财产（标的100万元以下，当事人不超过2人）",
        track=SIMPLE,
        max_amount_fen=100_000_000,
        max_parties=2,
        assets_found=True,
    ),
]


class Triage(_Model):
    rules: list[TriageRule] = Field(default_factory=lambda: list(DEFAULT_TRIAGE))
    default: Track = COMPLEX

    def classify(self, amount_fen: int | None, parties: int, assets_found: bool) -> tuple[Track, str]:
        for rule in self.rules:
            if rule.matches(amount_fen, parties, assets_found):
                return rule.track, rule.name
        return self.default, "default"


class FollowupSettings(_Model):
    # 终本 art. 9: query every 6 months for 5 years.
    interval_months: int = Field(default=6, ge=1, le=60)
    years: int = Field(default=5, ge=1, le=20)


class StatsSettings(_Model):
    # A summary goes up this often, and soon after anything a parent must know (a child's summary,
    # a node overdue for supervision).
    interval_s: float = Field(default=300.0, gt=0)
    propagate_delay_s: float = Field(default=2.0, ge=0)
    # Overdue nodes / 终本 follow-ups carried per summary (the rest are counted, not listed).
    list_limit: int = Field(default=200, ge=0, le=5000)
    expiring_days: int = Field(default=30, ge=1, le=365)


class CaseMgmtSettings(_Model):
    check_interval_s: float = Field(default=30.0, gt=0)
    supervise_reply_days: int = Field(default=10, ge=1, le=90)
    nodes: dict[str, NodeRule] = Field(default_factory=lambda: dict(DEFAULT_NODES))
    triage: Triage = Field(default_factory=Triage)
    followup: FollowupSettings = Field(default_factory=FollowupSettings)
    stats: StatsSettings = Field(default_factory=StatsSettings)


def parse_settings(raw: Mapping[str, Any], source: str = "[case_mgmt]") -> CaseMgmtSettings:
    """The ``[case_mgmt]`` section: node rules merge over the defaults key by key."""
    data = dict(raw)
    nodes_raw = data.pop("nodes", {}) or {}
    if not isinstance(nodes_raw, Mapping):
        raise ConfigError(f"{source} nodes: must be a table of node rules")
    nodes: dict[str, Any] = {name: rule.model_dump() for name, rule in DEFAULT_NODES.items()}
    for name, section in nodes_raw.items():
        if not isinstance(section, Mapping):
            raise ConfigError(f"{source} nodes.{name}: must be a table")
        if not str(name).isidentifier() or len(str(name)) > 32:
            raise ConfigError(f"{source} nodes.{name}: node names are identifiers of at most 32 characters")
        base = dict(nodes.get(str(name), {}))
        if "days" in section or "months" in section:
            base.pop("days", None)
            base.pop("months", None)
        nodes[str(name)] = {**base, **section}
    try:
        return CaseMgmtSettings.model_validate({**data, "nodes": nodes})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source} {where}: {first['msg']}") from None


# -- time ----------------------------------------------------------------------------------------


def add_months(ms: int, months: int) -> int:
    """``ms`` plus calendar months in China Standard Time (31 Jan + 1 month = 28/29 Feb)."""
    dt = datetime.fromtimestamp(ms // 1000, tz=CST)
    years, month0 = divmod(dt.month - 1 + months, 12)
    year, month = dt.year + years, month0 + 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return int(dt.replace(year=year, month=month, day=day).timestamp()) * 1000 + ms % 1000


def day_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=CST).strftime("%Y-%m-%d")


# -- shared plumbing ------------------------------------------------------------------------------


async def transact(node: Node, fn: Callable[[Tx], T]) -> T:
    """One store transaction with an exchange ``Tx`` (audit, events, envelopes); after the commit,
    wake the links and publish the events (:meth:`Exchange.run`)."""
    return await node.exchange.run(fn)


def spawn_loop(
    node: Node, name: str, body: Callable[[], Any], interval: Callable[[], float], wake: asyncio.Event
) -> None:
    """Run ``await body()`` every ``interval()`` seconds (or when ``wake`` is set) for the node's
    life; the node cancels it on stop."""

    async def loop() -> None:
        while True:
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval())
            if node.stopping.is_set():
                return
            try:
                await body()
            except Exception as exc:  # a failing round is retried on the next one
                log.warning("%s at %s failed: %s", name, node.me, exc)

    node.spawn(loop(), name)


def case_number(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("a case number (案号) is required, e.g. （2024）豫1402执123号")
    return str(CaseNumber.parse(text.strip()))


@dataclass
class _State:
    settings: CaseMgmtSettings
    deadlines: Deadlines | None = None
    services: dict[str, Any] = field(default_factory=dict)


_NODES: weakref.WeakKeyDictionary[Node, _State] = weakref.WeakKeyDictionary()


def state(node: Node) -> _State:
    """This module's per-node state: the parsed ``[case_mgmt]`` settings and the services."""
    found = _NODES.get(node)
    if found is None:
        found = _NODES[node] = _State(parse_settings(node.config.case_mgmt))
    return found


def settings(node: Node) -> CaseMgmtSettings:
    return state(node).settings


def of(node: Node) -> Deadlines:
    found = state(node).deadlines
    if found is None:
        raise NotFound(f"case-node deadlines are not set up on {node.me}")
    return found


# -- the service ---------------------------------------------------------------------------------


def _node_row(r: Any, now: int) -> dict[str, Any]:
    overdue = r.done_at_ms is None and r.due_at_ms < now
    late = r.done_at_ms is not None and r.done_at_ms > r.due_at_ms
    return {
        "case_number": r.case_number,
        "node": r.node,
        "seq": r.seq,
        "label": r.label,
        "started_at": iso(r.started_at_ms),
        "due_at_ms": r.due_at_ms,
        "due": iso(r.due_at_ms),
        "done_at": iso(r.done_at_ms) if r.done_at_ms is not None else None,
        "state": "done_late" if late else "done" if r.done_at_ms is not None else "overdue" if overdue else "open",
        "overdue_days": (now - r.due_at_ms) // DAY_MS if overdue else 0,
        "supervise": bool(r.supervise),
        "note": r.note,
    }


class Deadlines:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.wake = asyncio.Event()
        self._raising = asyncio.Lock()
        # Called when a node overdue for supervision is found (stats sends a summary up soon).
        self.on_supervise: Callable[[], None] = lambda: None

    @property
    def settings(self) -> CaseMgmtSettings:
        return settings(self.node)

    def configure(self, raw: Mapping[str, Any]) -> CaseMgmtSettings:
        """Replace the ``[case_mgmt]`` settings (validated as from config.toml) and wake the checks."""
        state(self.node).settings = parse_settings(raw)
        self.wake.set()
        for svc in state(self.node).services.values():
            wake = getattr(svc, "wake", None)
            if isinstance(wake, asyncio.Event):
                wake.set()
        return self.settings

    def rule(self, name: str) -> NodeRule:
        rule = self.settings.nodes.get(name)
        if rule is None or not rule.enabled:
            known = ", ".join(n for n, r in self.settings.nodes.items() if r.enabled)
            raise InvalidInput(f"no case node {name!r}; configured nodes: {known}")
        return rule

    # -- tracking ------------------------------------------------------------------------------
    def _open_filed(self, tx: Tx, number: str, filed_at_ms: int) -> list[str]:
        opened = []
        for name, rule in self.settings.nodes.items():
            if not rule.enabled or rule.anchor != "filed":
                continue
            self._insert_node(tx.conn, number, name, rule, filed_at_ms)
            opened.append(name)
        return opened

    def _insert_node(self, conn: Connection, number: str, name: str, rule: NodeRule, start_ms: int) -> int:
        seq = conn.execute(
            select(func.coalesce(func.max(case_nodes.c.seq), 0)).where(
                case_nodes.c.case_number == number, case_nodes.c.node == name
            )
        ).scalar_one()
        conn.execute(
            insert(case_nodes).values(
                case_number=number,
                node=name,
                seq=int(seq) + 1,
                label=rule.label,
                started_at_ms=start_ms,
                due_at_ms=rule.due(start_ms),
                supervise=rule.supervise,
            )
        )
        return int(seq) + 1

    def _track(
        self,
        tx: Tx,
        number: str,
        filed_at_ms: int,
        amount_fen: int | None,
        parties: int,
        source: str,
    ) -> dict[str, Any]:
        assets = _assets_found(tx.conn, number)
        track, rule = self.settings.triage.classify(amount_fen, parties, assets)
        tx.conn.execute(
            insert(case_tracks).values(
                case_number=number,
                court=str(self.node.me),
                filed_at_ms=filed_at_ms,
                amount_fen=amount_fen,
                parties=parties,
                assets_found=assets,
                track=track,
                triage_rule=rule,
                source=source,
                updated_at_ms=tx.now_ms,
            )
        )
        opened = self._open_filed(tx, number, filed_at_ms)
        detail = {"case_number": number, "track": track, "triage_rule": rule, "nodes": opened}
        tx.audit.append("case_tracked", tx.now_ms, origin=str(self.node.me), detail=detail)
        tx.events.append(("case.tracked", detail))
        return detail

    async def track(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``deadlines.track``: start tracking a case filed outside the hub (or re-triage)."""
        number = case_number(args.get("number"))
        parsed = CaseNumber.parse(number)
        if parsed.court != self.node.me:
            raise InvalidInput(f"case {number} belongs to {parsed.court}; this node is {self.node.me}")
        now = self.node.clock.now_ms()
        filed = _int_arg(args, "filed_at_ms", now)
        if filed > now:
            raise InvalidInput("filed_at_ms lies in the future")
        amount = args.get("amount_fen")
        if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool) or amount < 0):
            raise InvalidInput("amount_fen must be a non-negative whole number of fen")
        parties = _int_arg(args, "parties", 2)
        if not 1 <= parties <= 10_000:
            raise InvalidInput("parties must be 1–10,000")

        def fn(tx: Tx) -> dict[str, Any]:
            existing = tx.conn.execute(select(case_tracks).where(case_tracks.c.case_number == number)).first()
            if existing is None:
                return {**self._track(tx, number, filed, amount, parties, "manual"), "created": True}
            assets = _assets_found(tx.conn, number)
            track, rule = self.settings.triage.classify(amount, parties, assets)
            tx.conn.execute(
                update(case_tracks)
                .where(case_tracks.c.case_number == number)
                .values(amount_fen=amount, parties=parties, track=track, triage_rule=rule, updated_at_ms=tx.now_ms)
            )
            return {"case_number": number, "track": track, "triage_rule": rule, "created": False}

        result = await transact(self.node, fn)
        return {**result, **await self.show({"number": number})}

    async def start(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``deadlines.start``: an event-anchored node opens (e.g. a property clue arrived)."""
        number = case_number(args.get("number"))
        name = str(args.get("node", ""))
        rule = self.rule(name)
        if rule.anchor != "event":
            raise InvalidInput(f"case node {name!r} opens with the filing; it cannot be started by hand")
        now = self.node.clock.now_ms()
        at = _int_arg(args, "at_ms", now)

        def fn(tx: Tx) -> int:
            _require_tracked(tx.conn, number)
            seq = self._insert_node(tx.conn, number, name, rule, at)
            tx.audit.append(
                "case_node_started", tx.now_ms, origin=str(self.node.me), detail={"case_number": number, "node": name}
            )
            return seq

        seq = await transact(self.node, fn)
        return {"case_number": number, "node": name, "seq": seq, "due": iso(rule.due(at))}

    async def done(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``deadlines.done``: the open node (the latest, for repeated ones) is completed."""
        number = case_number(args.get("number"))
        name = str(args.get("node", ""))
        self.rule(name)
        note = str(args.get("note", ""))[:500] or None
        now = self.node.clock.now_ms()
        at = _int_arg(args, "at_ms", now)
        if at > now:
            raise InvalidInput("at_ms lies in the future")

        def fn(tx: Tx) -> dict[str, Any]:
            _require_tracked(tx.conn, number)
            row = tx.conn.execute(
                select(case_nodes)
                .where(case_nodes.c.case_number == number, case_nodes.c.node == name, case_nodes.c.done_at_ms.is_(None))
                .order_by(case_nodes.c.seq.desc())
            ).first()
            if row is None:
                raise InvalidInput(f"case {number} has no open node {name!r}", reason="wrong_state")
            tx.conn.execute(update(case_nodes).where(case_nodes.c.id == row.id).values(done_at_ms=at, note=note))
            on_time = at <= row.due_at_ms
            detail = {"case_number": number, "node": name, "seq": row.seq, "on_time": on_time}
            tx.audit.append("case_node_done", tx.now_ms, origin=str(self.node.me), detail=detail)
            tx.events.append(("case_node.done", detail))
            return {**detail, "due": iso(row.due_at_ms), "done_at": iso(at)}

        return await transact(self.node, fn)

    def ensure_tracked(self, tx: Tx, number: str) -> None:
        """Track a case filed through the hub now if the periodic check has not yet, inside ``tx``."""
        if tx.conn.execute(select(case_tracks.c.case_number).where(case_tracks.c.case_number == number)).first():
            return
        c = tx.conn.execute(
            select(cases.c.filed_at_ms, cases.c.amount_fen).where(
                cases.c.case_number == number, cases.c.court == str(self.node.me)
            )
        ).first()
        if c is not None:
            self._track(tx, number, c.filed_at_ms, c.amount_fen, 2, "agency")

    def complete_in(self, tx: Tx, number: str, done_on: str, at_ms: int, note: str) -> list[str]:
        """Complete open nodes whose rule says ``done_on`` (e.g. 终本 concludes the case), inside ``tx``."""
        names = [n for n, r in self.settings.nodes.items() if r.done_on == done_on]
        if not names:
            return []
        result = tx.conn.execute(
            update(case_nodes)
            .where(
                case_nodes.c.case_number == number,
                case_nodes.c.node.in_(names),
                case_nodes.c.done_at_ms.is_(None),
            )
            .values(done_at_ms=at_ms, note=note)
        )
        return names if result.rowcount else []

    # -- the periodic check ------------------------------------------------------------------------
    async def tick(self) -> dict[str, Any]:
        """Track new cases, complete automatic nodes, re-triage, mark overdue nodes; raise the
        supervision items children asked for."""
        me = str(self.node.me)

        def fn(tx: Tx) -> dict[str, Any]:
            conn, now = tx.conn, tx.now_ms
            tracked = []
            new_cases = conn.execute(
                select(cases.c.case_number, cases.c.filed_at_ms, cases.c.amount_fen)
                .select_from(cases.outerjoin(case_tracks, case_tracks.c.case_number == cases.c.case_number))
                .where(case_tracks.c.case_number.is_(None), cases.c.court == me)
            ).all()
            for c in new_cases:
                tracked.append(self._track(tx, c.case_number, c.filed_at_ms, c.amount_fen, 2, "agency")["case_number"])
            completed = self._complete_started(tx)
            retriaged = self._retriage(tx)
            overdue = conn.execute(
                select(case_nodes).where(
                    case_nodes.c.done_at_ms.is_(None),
                    case_nodes.c.overdue_at_ms.is_(None),
                    case_nodes.c.due_at_ms < now,
                )
            ).all()
            marked = []
            for r in overdue:
                conn.execute(update(case_nodes).where(case_nodes.c.id == r.id).values(overdue_at_ms=now))
                detail = {
                    "case_number": r.case_number,
                    "node": r.node,
                    "seq": r.seq,
                    "label": r.label,
                    "due": iso(r.due_at_ms),
                    "supervise": bool(r.supervise),
                }
                tx.audit.append("case_node_overdue", now, origin=me, detail=detail)
                tx.events.append(("case_node.overdue", detail))
                marked.append(detail)
            return {"tracked": tracked, "completed": completed, "retriaged": retriaged, "overdue": marked}

        result = await transact(self.node, fn)
        if any(m["supervise"] for m in result["overdue"]) and self.node.router.parent is not None:
            self.on_supervise()
        result["supervised"] = await self.raise_supervisions()
        return result

    def _complete_started(self, tx: Tx) -> list[dict[str, Any]]:
        names = [n for n, r in self.settings.nodes.items() if r.done_on == "inquiries_started"]
        if not names:
            return []
        rows = tx.conn.execute(
            select(case_nodes.c.id, case_nodes.c.case_number, case_nodes.c.node, cases.c.inquiries_started_at_ms)
            .select_from(case_nodes.join(cases, cases.c.case_number == case_nodes.c.case_number))
            .where(
                case_nodes.c.node.in_(names),
                case_nodes.c.done_at_ms.is_(None),
                cases.c.inquiries_started_at_ms.is_not(None),
            )
        ).all()
        for r in rows:
            tx.conn.execute(
                update(case_nodes)
                .where(case_nodes.c.id == r.id)
                .values(done_at_ms=r.inquiries_started_at_ms, note="立案即查已启动")
            )
        return [{"case_number": r.case_number, "node": r.node} for r in rows]

    def _retriage(self, tx: Tx) -> list[dict[str, Any]]:
        """Cases whose inquiries were answered since their last triage are classified again."""
        rows = tx.conn.execute(
            select(case_tracks)
            .where(
                case_tracks.c.court == str(self.node.me),
                select(case_inquiries.c.request_id)
                .where(
                    case_inquiries.c.case_number == case_tracks.c.case_number,
                    case_inquiries.c.answered_at_ms >= case_tracks.c.updated_at_ms,
                )
                .exists(),
            )
            .limit(1000)
        ).all()
        changed = []
        for r in rows:
            assets = _assets_found(tx.conn, r.case_number)
            track, rule = self.settings.triage.classify(r.amount_fen, r.parties, assets)
            tx.conn.execute(
                update(case_tracks)
                .where(case_tracks.c.case_number == r.case_number)
                .values(assets_found=assets, track=track, triage_rule=rule, updated_at_ms=tx.now_ms + 1)
            )
            if track != r.track:
                detail = {"case_number": r.case_number, "from": r.track, "to": track, "triage_rule": rule}
                tx.audit.append("case_triaged", tx.now_ms, origin=str(self.node.me), detail=detail)
                changed.append(detail)
        return changed

    # -- automatic supervision at the parent ----------------------------------------------------------
    def note_reported(self, conn: Connection, child: CourtCode, entries: list[dict[str, Any]], now: int) -> int:
        """In the receiving transaction of a child's summary: remember its overdue nodes flagged for
        supervision (its own, not its children's: their own parents supervise those)."""
        added = 0
        for e in entries:
            if e.get("court") != str(child) or not e.get("supervise"):
                continue
            key = {
                "court": str(child),
                "case_number": str(e.get("case_number", ""))[:64],
                "node": str(e.get("node", ""))[:32],
                "seq": int(e.get("seq", 1)),
            }
            exists = conn.execute(
                select(node_supervisions.c.court).where(*(node_supervisions.c[k] == v for k, v in key.items()))
            ).first()
            if exists is None:
                conn.execute(
                    insert(node_supervisions).values(
                        **key,
                        label=str(e.get("label", ""))[:60],
                        due_at_ms=int(e.get("due_at_ms", 0)),
                        reported_at_ms=now,
                    )
                )
                added += 1
        return added

    async def raise_supervisions(self) -> list[dict[str, Any]]:
        """Raise a 督办 item for every reported overdue node that has none yet (idempotent: an item
        with the same case and title found at this court is taken as already raised)."""
        async with self._raising:
            pending = await self.node.store.read(
                lambda c: c.execute(select(node_supervisions).where(node_supervisions.c.item_id.is_(None))).all()
            )
            raised = []
            for p in pending:
                court = CourtCode.parse(p.court)
                if not below(court, self.node.me):
                    continue
                title = supervision_title(p.case_number, p.label, p.seq)
                existing = [
                    r
                    for r in await self.node.workflows.items("supervision")
                    if r["party"] == p.court and r["case_number"] == p.case_number and r["title"] == title
                ]
                if existing:
                    item_id = str(existing[0]["item_id"])
                else:
                    text = (
                        f"贵院{p.case_number}案件流程节点“{p.label}”已于{day_text(p.due_at_ms)}届满仍未完成，"
                        f"请于{self.settings.supervise_reply_days}日内报告办理情况。"
                    )
                    item_id = await self.node.workflows.create(
                        "supervision",
                        [court],
                        title,
                        {"text": text, "reply_days": self.settings.supervise_reply_days},
                        case_number=p.case_number,
                    )
                now = self.node.clock.now_ms()

                def mark(tx: Tx, p: Any = p, item_id: str = item_id, now: int = now) -> None:
                    tx.conn.execute(
                        update(node_supervisions)
                        .where(
                            node_supervisions.c.court == p.court,
                            node_supervisions.c.case_number == p.case_number,
                            node_supervisions.c.node == p.node,
                            node_supervisions.c.seq == p.seq,
                        )
                        .values(item_id=item_id, raised_at_ms=now)
                    )
                    tx.audit.append(
                        "case_node_supervised",
                        now,
                        origin=str(self.node.me),
                        peer=p.court,
                        detail={"case_number": p.case_number, "node": p.node, "item_id": item_id},
                    )

                await transact(self.node, mark)
                raised.append({"court": p.court, "case_number": p.case_number, "node": p.node, "item_id": item_id})
            return raised

    # -- reading -----------------------------------------------------------------------------------
    async def show(self, args: dict[str, Any]) -> dict[str, Any]:
        number = case_number(args.get("number"))
        now = self.node.clock.now_ms()

        def read(conn: Connection) -> dict[str, Any]:
            track = conn.execute(select(case_tracks).where(case_tracks.c.case_number == number)).first()
            if track is None:
                raise NotFound(f"case {number} is not tracked at {self.node.me}")
            nodes = conn.execute(
                select(case_nodes).where(case_nodes.c.case_number == number).order_by(case_nodes.c.id)
            ).all()
            return {
                "case_number": number,
                "court": track.court,
                "filed_at": iso(track.filed_at_ms),
                "amount_fen": track.amount_fen,
                "parties": track.parties,
                "assets_found": bool(track.assets_found),
                "track": track.track,
                "triage_rule": track.triage_rule,
                "nodes": [_node_row(r, now) for r in nodes],
            }

        return await self.node.store.read(read)

    async def list_cases(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        now = self.node.clock.now_ms()
        limit = max(1, min(_int_arg(args, "limit", 200), 5000))

        def read(conn: Connection) -> list[dict[str, Any]]:
            tracks = conn.execute(select(case_tracks).order_by(case_tracks.c.filed_at_ms.desc()).limit(limit)).all()
            numbers = [t.case_number for t in tracks]
            by_case: dict[str, list[dict[str, Any]]] = {}
            for r in conn.execute(select(case_nodes).where(case_nodes.c.case_number.in_(numbers))).all():
                by_case.setdefault(r.case_number, []).append(_node_row(r, now))
            out = []
            for t in tracks:
                rows = by_case.get(t.case_number, [])
                out.append(
                    {
                        "case_number": t.case_number,
                        "track": t.track,
                        "filed_at": iso(t.filed_at_ms),
                        "open": sum(1 for r in rows if r["state"] == "open"),
                        "overdue": sum(1 for r in rows if r["state"] == "overdue"),
                        "done": sum(1 for r in rows if r["state"] in ("done", "done_late")),
                        "late": sum(1 for r in rows if r["state"] == "done_late"),
                    }
                )
            return out

        return await self.node.store.read(read)

    def overdue_rows(self, conn: Connection, now: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """This court's open nodes past their deadline, oldest deadline first; and how many there are."""
        where = and_(case_nodes.c.done_at_ms.is_(None), case_nodes.c.due_at_ms < now)
        total = conn.execute(select(func.count()).select_from(case_nodes).where(where)).scalar_one()
        rows = conn.execute(select(case_nodes).where(where).order_by(case_nodes.c.due_at_ms).limit(limit)).all()
        raised = {
            (r.case_number, r.title): r.item_id
            for r in conn.execute(
                select(workflow_items.c.case_number, workflow_items.c.title, workflow_items.c.item_id).where(
                    workflow_items.c.workflow == "supervision",
                    workflow_items.c.case_number.in_({r.case_number for r in rows}),
                )
            ).all()
        }
        out = []
        for r in rows:
            item = {"court": str(self.node.me), **_node_row(r, now)}
            item["supervision"] = raised.get((r.case_number, supervision_title(r.case_number, r.label, r.seq)))
            out.append(item)
        return out, int(total)

    async def overdue(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``deadlines.overdue``: this court's overdue nodes; with ``subtree`` also those every
        court below reported in its latest signed summary."""
        now = self.node.clock.now_ms()
        limit = max(1, min(_int_arg(args, "limit", 500), 5000))
        rows, total = await self.node.store.read(lambda c: self.overdue_rows(c, now, limit))
        out: dict[str, Any] = {"court": str(self.node.me), "at": iso(now), "overdue": rows, "total": total}
        if args.get("subtree"):
            from hub.workflows import stats

            reported = await stats.of(self.node).child_lists("overdue")
            out["overdue"] = rows + reported["items"]
            out["total"] = total + reported["total"]
            out["reported"] = reported["courts"]
        return out

    async def rules(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        return {
            "nodes": {
                name: {**rule.model_dump(exclude_none=True), "term": rule.term()} for name, rule in s.nodes.items()
            },
            "triage": s.triage.model_dump(exclude_none=True),
            "supervise_reply_days": s.supervise_reply_days,
            "check_interval_s": s.check_interval_s,
        }

    async def classify(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``deadlines.triage``: which track a case with these facts gets (nothing stored)."""
        amount = args.get("amount_fen")
        if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool) or amount < 0):
            raise InvalidInput("amount_fen must be a non-negative whole number of fen")
        track, rule = self.settings.triage.classify(
            amount, _int_arg(args, "parties", 2), bool(args.get("assets_found", False))
        )
        return {"track": track, "triage_rule": rule}


def supervision_title(number: str, label: str, seq: int) -> str:
    suffix = f"（第{seq}次）" if seq > 1 else ""
    return f"流程节点超期督办：{number} {label}{suffix}"


def _assets_found(conn: Connection, number: str) -> bool:
    for (result,) in conn.execute(
        select(case_inquiries.c.result).where(
            case_inquiries.c.case_number == number, case_inquiries.c.status == ANSWERED
        )
    ):
        with contextlib.suppress(ValueError, TypeError):
            if (json.loads(result or "{}") or {}).get("assets"):
                return True
    return False


def _require_tracked(conn: Connection, number: str) -> None:
    if conn.execute(select(case_tracks.c.case_number).where(case_tracks.c.case_number == number)).first() is None:
        raise NotFound(f"case {number} is not tracked here (court-hub deadlines track)")


def _int_arg(args: Mapping[str, Any], key: str, default: int) -> int:
    value = args.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"{key} must be a whole number")
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{key} must be a whole number") from None


def setup(node: Node) -> None:
    svc = Deadlines(node)
    state(node).deadlines = svc
    for name, op in {
        "deadlines.track": svc.track,
        "deadlines.start": svc.start,
        "deadlines.done": svc.done,
        "deadlines.show": svc.show,
        "deadlines.list": svc.list_cases,
        "deadlines.overdue": svc.overdue,
        "deadlines.rules": svc.rules,
        "deadlines.triage": svc.classify,
        "deadlines.tick": lambda args: svc.tick(),
    }.items():
        node.admin.register(name, op)
    spawn_loop(node, "case-deadlines", svc.tick, lambda: svc.settings.check_interval_s, svc.wake)
