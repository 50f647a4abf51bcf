"""Statistics per court and per subtree, aggregated upward from signed summaries.

Every court computes its own figures from its store — directives (sent, received, receipts, and
answered on time where the directives module provides it), agency inquiries per agency (sent,
answered, failed, timed out, answer time), workflow items per workflow and state (entrusted
matters, supervision …, issued and received), control measures (active, expiring, lapsed),
case-node deadlines, triage tracks and 终本 follow-ups — and adds the latest summaries of its
children to get its subtree. The summary document (canonical JSON) is sealed by the court (a
detached JWS with its court key, like an envelope header) and sent to the parent as a
``stats.summary`` envelope (upward only, with a receipt), every ``[case_mgmt.stats] interval_s``
and soon after a child's summary or an overdue node that needs supervision. The parent checks the
seal against the child's certificate, that the summary names the court that sent it, that the
child is its own, that it is newer than the one it has, and that the figures are well-formed —
and refuses it otherwise (audit entry, negative receipt) — then keeps it as evidence, so every
level's subtree figures rest on its children's signed statements.

Counts add up; durations travel as sums with their counts (``*_ms_sum`` / the count) so means
aggregate exactly; maxima (``*_max_ms``) take the maximum. Summaries also carry the overdue case
nodes and the 终本 follow-ups of the subtree (up to ``list_limit``, with totals), which is how an
upper court lists them (``deadlines overdue --subtree``, ``conclude list --subtree``) and how a
parent raises automatic supervision.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.protobuf import wrappers_pb2
from sqlalchemy import BigInteger, Column, Connection, Integer, String, Table, Text, case, func, insert, select, update

from hub.agency.schema import ANSWERED, case_inquiries, measures
from hub.clock import iso
from hub.codes import CourtCode
from hub.errors import AuthorityError, InvalidInput, NotFound, TrustError
from hub.federation import kinds
from hub.federation.envelope import Target
from hub.federation.exchange import Delivery, Tx
from hub.seal import seal, verify
from hub.store.schema import deliveries, directives, metadata
from hub.workflows import conclude, deadlines
from hub.workflows.deadlines import case_nodes, case_tracks, spawn_loop, transact
from hub.workflows.schema import workflow_events, workflow_items

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)

KIND = "stats.summary"
VERSION = 1
SUMMARY = kinds.register(
    kinds.KindSpec(KIND, wrappers_pb2.BytesValue, True, False, kinds.Authority.UPWARD, receipt=True)
)
MAX_LEAVES = 5000
MAX_DEPTH = 5
LISTS = ("overdue", "followups")

stats_summaries = Table(
    "stats_summaries",
    metadata,
    Column("court", String(16), primary_key=True),  # a child, or this court (the last one it sent)
    Column("seq", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
    Column("summary", Text, nullable=False),  # the signed document, as signed
    Column("seal", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("envelope_id", String(64)),
)

Figures = dict[str, Any]
Provider = Callable[[Connection, "Node", int], Figures]
PROVIDERS: dict[str, Provider] = {}


def register_provider(name: str, provider: Provider) -> None:
    """Add (or replace) a section of every court's own figures: ``provider(conn, node, now_ms)``
    returns nested dicts of non-negative numbers (sums add up; ``*_max_ms`` keys take the max)."""
    PROVIDERS[name] = provider


# -- the documents -------------------------------------------------------------------------------


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def pack(body: bytes, sealed: str) -> wrappers_pb2.BytesValue:
    return wrappers_pb2.BytesValue(value=canonical({"summary": body.decode(), "seal": sealed}))


def unpack(payload: wrappers_pb2.BytesValue) -> tuple[bytes, str]:
    try:
        outer = json.loads(payload.value)
        body = str(outer["summary"]).encode()
        sealed = str(outer.get("seal") or "")
    except (ValueError, KeyError, TypeError, RecursionError):
        raise InvalidInput("statistics summary is not a summary document", reason="malformed_summary") from None
    return body, sealed


def merge(into: Figures, other: Figures) -> Figures:
    """Add ``other`` into ``into``: sums add, ``*_max_ms`` keys take the maximum."""
    for key, value in other.items():
        if isinstance(value, dict):
            current = into.get(key)
            into[key] = merge(current if isinstance(current, dict) else {}, value)
        elif key.endswith("_max_ms"):
            into[key] = max(into.get(key, 0), value)
        else:
            into[key] = into.get(key, 0) + value
    return into


def check_figures(value: Any, where: str = "figures", depth: int = 0, budget: list[int] | None = None) -> None:
    """Nested objects of finite, non-negative numbers; bounded in depth and size."""
    budget = budget if budget is not None else [MAX_LEAVES]
    if not isinstance(value, dict) or depth > MAX_DEPTH:
        raise InvalidInput(f"statistics summary: {where} is not an object of figures", reason="malformed_summary")
    for key, v in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise InvalidInput(f"statistics summary: bad key in {where}", reason="malformed_summary")
        if isinstance(v, dict):
            check_figures(v, f"{where}.{key}", depth + 1, budget)
            continue
        budget[0] -= 1
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        if not ok or budget[0] < 0:
            raise InvalidInput(f"statistics summary: {where}.{key} is not a count", reason="malformed_summary")


def check_document(doc: Any, origin: CourtCode) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise InvalidInput(f"statistics summary: version {VERSION} expected", reason="malformed_summary")
    if doc.get("court") != str(origin):
        raise AuthorityError(
            f"statistics summary of {doc.get('court')!r} sent by {origin}: a court sends only its own",
            reason="wrong_court",
        )
    for key in ("seq", "at_ms", "courts"):
        if not isinstance(doc.get(key), int) or isinstance(doc.get(key), bool) or doc[key] < 0:
            raise InvalidInput(f"statistics summary: {key} must be a whole number", reason="malformed_summary")
    check_figures(doc.get("own"), "own")
    check_figures(doc.get("subtree"), "subtree")
    children = doc.get("children")
    if not isinstance(children, dict) or any(not CourtCode.parse(c).is_within(origin) for c in children):
        raise InvalidInput("statistics summary: children must be courts below the sender", reason="malformed_summary")
    lists = doc.get("lists")
    if not isinstance(lists, dict):
        raise InvalidInput("statistics summary: lists missing", reason="malformed_summary")
    for name in LISTS:
        part = lists.get(name)
        if not isinstance(part, dict) or not isinstance(part.get("items"), list) or len(part["items"]) > 5000:
            raise InvalidInput(f"statistics summary: lists.{name} malformed", reason="malformed_summary")
        if not isinstance(part.get("total"), int) or isinstance(part["total"], bool) or part["total"] < 0:
            raise InvalidInput(f"statistics summary: lists.{name}.total malformed", reason="malformed_summary")
        for item in part["items"]:
            _check_item(name, item, origin)
    return doc


# Typed fields each listed item must carry (others: short scalars only).
ITEM_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "overdue": {"case_number": str, "node": str, "seq": int, "label": str, "due_at_ms": int, "supervise": bool},
    "followups": {"case_number": str, "rounds": int, "next_inquiry_at_ms": int},
}


def _check_item(name: str, item: Any, origin: CourtCode) -> None:
    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"statistics summary: an item of lists.{name} {why}", reason="malformed_summary")

    if not isinstance(item, dict) or len(item) > 20:
        raise bad("is not a small object")
    if not CourtCode.parse(str(item.get("court", ""))).is_within(origin):
        raise bad("names a court outside the sender's subtree")
    for key, kind in ITEM_FIELDS[name].items():
        value = item.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad(f"has no valid {key}")
    for key, value in item.items():
        if not isinstance(key, str) or len(key) > 32:
            raise bad("has a bad key")
        if not (
            value is None or isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 200)
        ):
            raise bad(f"has a bad value for {key}")


# -- own figures ---------------------------------------------------------------------------------


def _inquiries(conn: Connection, node: Node, now: int) -> Figures:
    out: Figures = {}
    elapsed = case_inquiries.c.answered_at_ms - case_inquiries.c.requested_at_ms
    for agency, status, n, total, longest in conn.execute(
        select(
            case_inquiries.c.agency,
            case_inquiries.c.status,
            func.count(),
            func.sum(case((case_inquiries.c.status == ANSWERED, elapsed), else_=0)),
            func.max(case((case_inquiries.c.status == ANSWERED, elapsed), else_=0)),
        ).group_by(case_inquiries.c.agency, case_inquiries.c.status)
    ).all():
        fig = out.setdefault(str(agency), {"sent": 0, "answered": 0, "failed": 0, "timed_out": 0, "pending": 0})
        fig["sent"] += int(n)
        fig[str(status)] = fig.get(str(status), 0) + int(n)
        if status == ANSWERED:
            fig["answer_ms_sum"] = int(total or 0)
            fig["answer_max_ms"] = int(longest or 0)
    return out


def _finals(node: Node, name: str) -> set[str]:
    spec = node.workflows.specs.get(name)
    if spec is None:
        return set()
    sources = set().union(*(s.frm for s in spec.steps))
    return {spec.initial, *(s.to for s in spec.steps)} - sources


def _workflows(conn: Connection, node: Node, now: int) -> Figures:
    out: Figures = {}
    for workflow, role, state, n in conn.execute(
        select(workflow_items.c.workflow, workflow_items.c.role, workflow_items.c.state, func.count()).group_by(
            workflow_items.c.workflow, workflow_items.c.role, workflow_items.c.state
        )
    ).all():
        side = "issued" if role == "issuer" else "received"
        fig = out.setdefault(str(workflow), {})
        fig.setdefault(side, {})[str(state)] = int(n)
    items = workflow_items.c
    for workflow, state, past_due, spent, n in conn.execute(
        select(
            items.workflow,
            items.state,
            func.sum(case((items.deadline_ms < now, 1), else_=0)),
            func.sum(items.updated_at_ms - items.created_at_ms),
            func.count(),
        )
        .where(items.role == "issuer")
        .group_by(items.workflow, items.state)
    ).all():
        fig = out[str(workflow)]
        if state in _finals(node, str(workflow)):
            fig["closed"] = fig.get("closed", 0) + int(n)
            fig["closed_ms_sum"] = fig.get("closed_ms_sum", 0) + max(0, int(spent or 0))
        elif past_due:
            fig["overdue"] = fig.get("overdue", 0) + int(past_due)
    # Automatic steps taken when a deadline passed (催报, escalation): a measure of lateness.
    for workflow, n in conn.execute(
        select(workflow_items.c.workflow, func.count())
        .select_from(
            workflow_events.join(
                workflow_items,
                (workflow_items.c.item_id == workflow_events.c.item_id)
                & (workflow_items.c.party == workflow_events.c.party),
            )
        )
        .where(workflow_items.c.role == "issuer", workflow_events.c.data.like('%"auto": true%'))
        .group_by(workflow_items.c.workflow)
    ).all():
        out[str(workflow)]["automatic_steps"] = int(n)
    return out


def _measures(conn: Connection, node: Node, now: int) -> Figures:
    days = deadlines.settings(node).stats.expiring_days
    out: Figures = {"active": 0, "waiting": 0, "lapsed": 0, "released": 0, "expiring": 0}
    for state, n in conn.execute(
        select(measures.c.state, func.count()).where(measures.c.state.is_not(None)).group_by(measures.c.state)
    ).all():
        out[str(state)] = int(n)
    out["expiring"] = int(
        conn.execute(
            select(func.count())
            .select_from(measures)
            .where(
                measures.c.state == "active",
                measures.c.expires_at_ms.is_not(None),
                measures.c.expires_at_ms <= now + days * deadlines.DAY_MS,
            )
        ).scalar_one()
    )
    return out


def _directives(conn: Connection, node: Node, now: int) -> Figures:
    out: Figures = {"sent": 0, "received": 0, "with_deadline": 0}
    for direction, n, timed in conn.execute(
        select(directives.c.direction, func.count(), func.count(directives.c.feedback_due_ms)).group_by(
            directives.c.direction
        )
    ).all():
        out[str(direction)] = int(n)
        if direction == "received":
            out["with_deadline"] = int(timed)
    sent = select(directives.c.envelope_id).where(directives.c.direction == "sent")
    for state, n in conn.execute(
        select(deliveries.c.state, func.count()).where(deliveries.c.envelope_id.in_(sent)).group_by(deliveries.c.state)
    ).all():
        out[f"recipients_{state}"] = int(n)
    # Feedback (hub.workflows.directive_flow): one issuer row per recipient with its deadline.
    rows = conn.execute(
        select(
            workflow_items.c.item_id,
            workflow_items.c.party,
            workflow_items.c.state,
            workflow_items.c.data,
            workflow_items.c.created_at_ms,
        ).where(workflow_items.c.workflow == "directive", workflow_items.c.role == "issuer")
    ).all()
    if rows:
        answered = {
            (i, p): int(at)
            for i, p, at in conn.execute(
                select(workflow_events.c.item_id, workflow_events.c.party, func.min(workflow_events.c.at_ms))
                .where(workflow_events.c.action == "answer", workflow_events.c.item_id.in_({r.item_id for r in rows}))
                .group_by(workflow_events.c.item_id, workflow_events.c.party)
            ).all()
        }
        finals = _finals(node, "directive")
        for k in ("answered_on_time", "answered_late", "unanswered_overdue", "answer_ms_sum"):
            out[k] = 0
        for r in rows:
            data = json.loads(r.data or "{}")
            due = data.get("feedback_due_ms") if isinstance(data, dict) else None
            at = answered.get((r.item_id, r.party))
            if at is not None:
                late = isinstance(due, int) and at > due
                out["answered_late" if late else "answered_on_time"] += 1
                out["answer_ms_sum"] += max(0, at - int(r.created_at_ms))
            elif isinstance(due, int) and due < now and r.state not in finals:
                out["unanswered_overdue"] += 1
    return out


def _case_nodes(conn: Connection, node: Node, now: int) -> Figures:
    out: Figures = {"open": 0, "overdue": 0, "done_on_time": 0, "done_late": 0, "done_ms_sum": 0}
    for r in conn.execute(
        select(
            case_nodes.c.node,
            func.sum(case((case_nodes.c.done_at_ms.is_(None) & (case_nodes.c.due_at_ms >= now), 1), else_=0)),
            func.sum(case((case_nodes.c.done_at_ms.is_(None) & (case_nodes.c.due_at_ms < now), 1), else_=0)),
            func.sum(case((case_nodes.c.done_at_ms <= case_nodes.c.due_at_ms, 1), else_=0)),
            func.sum(case((case_nodes.c.done_at_ms > case_nodes.c.due_at_ms, 1), else_=0)),
            func.sum(func.coalesce(case_nodes.c.done_at_ms - case_nodes.c.started_at_ms, 0)),
        ).group_by(case_nodes.c.node)
    ).all():
        name, opened, overdue, on_time, late, spent = r
        per = {"open": int(opened or 0), "overdue": int(overdue or 0), "done_on_time": int(on_time or 0)}
        per["done_late"] = int(late or 0)
        out.setdefault("by_node", {})[str(name)] = per
        for k, v in per.items():
            out[k] += v
        out["done_ms_sum"] += int(spent or 0)
    tracks: dict[str, int] = {
        str(t): int(n) for t, n in conn.execute(select(case_tracks.c.track, func.count()).group_by(case_tracks.c.track))
    }
    out["tracked"] = sum(tracks.values())
    out["track"] = {"简": int(tracks.get("简", 0)), "繁": int(tracks.get("繁", 0))}
    return out


def _concluded(conn: Connection, node: Node, now: int) -> Figures:
    out: Figures = {"following": 0, "resumed": 0, "ended": 0, "rounds": 0, "new_asset_rounds": 0}
    for state, n, rounds in conn.execute(
        select(conclude.case_conclusions.c.state, func.count(), func.sum(conclude.case_conclusions.c.rounds)).group_by(
            conclude.case_conclusions.c.state
        )
    ).all():
        out[str(state)] = int(n)
        out["rounds"] += int(rounds or 0)
    out["new_asset_rounds"] = int(
        conn.execute(
            select(func.count())
            .select_from(conclude.followup_rounds)
            .where(conclude.followup_rounds.c.result == "new_assets")
        ).scalar_one()
    )
    for state, n in conn.execute(
        select(conclude.resume_tasks.c.state, func.count()).group_by(conclude.resume_tasks.c.state)
    ).all():
        out[f"resume_tasks_{state}"] = int(n)
    return out


register_provider("inquiries", _inquiries)
register_provider("workflows", _workflows)
register_provider("measures", _measures)
register_provider("directives", _directives)
register_provider("case_nodes", _case_nodes)
register_provider("concluded", _concluded)


def own_figures(conn: Connection, node: Node, now: int) -> Figures:
    return {name: provider(conn, node, now) for name, provider in sorted(PROVIDERS.items())}


# -- the service ---------------------------------------------------------------------------------

_NODES: weakref.WeakKeyDictionary[Node, Stats] = weakref.WeakKeyDictionary()


def of(node: Node) -> Stats:
    found = _NODES.get(node)
    if found is None:
        raise NotFound(f"statistics are not set up on {node.me}")
    return found


def _stored(conn: Connection, court: str | None = None) -> list[Any]:
    q = select(stats_summaries)
    if court is not None:
        q = q.where(stats_summaries.c.court == court)
    return list(conn.execute(q.order_by(stats_summaries.c.court)).all())


class Stats:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._soon: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        node.exchange.handle(KIND, self._on_summary)

    @property
    def settings(self) -> deadlines.StatsSettings:
        return deadlines.settings(self.node).stats

    def _spawn(self, coro: Any) -> None:
        if self.node.stopping.is_set():  # nothing new once the node is stopping
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- building ------------------------------------------------------------------------------
    def _children(self, conn: Connection) -> dict[str, dict[str, Any]]:
        """The latest stored summary of each child (as the child signed it)."""
        me = str(self.node.me)
        return {r.court: {"row": r, "doc": json.loads(r.summary)} for r in _stored(conn) if r.court != me}

    def build(self, conn: Connection, now: int) -> dict[str, Any]:
        """This court's summary document (unsigned)."""
        me = self.node.me
        limit = self.settings.list_limit
        own = own_figures(conn, self.node, now)
        subtree = json.loads(json.dumps(own))
        kids = self._children(conn)
        courts = 1
        overdue, overdue_total = deadlines.of(self.node).overdue_rows(conn, now, limit)
        follow, follow_total = conclude.of(self.node).followup_rows(conn, limit)
        items: dict[str, list[dict[str, Any]]] = {"overdue": [_slim_overdue(r) for r in overdue], "followups": follow}
        totals = {"overdue": overdue_total, "followups": follow_total}
        children = {}
        for court, kid in sorted(kids.items()):
            doc = kid["doc"]
            merge(subtree, doc["subtree"])
            courts += int(doc["courts"])
            children[court] = {"seq": doc["seq"], "at_ms": doc["at_ms"], "sha256": kid["row"].sha256}
            for name in LISTS:
                part = doc["lists"][name]
                items[name].extend(part["items"][: max(0, limit - len(items[name]))])
                totals[name] += int(part.get("total", len(part["items"])))
        previous = _stored(conn, str(me))
        return {
            "v": VERSION,
            "court": str(me),
            "name": self.node.config.node.name,
            "seq": (previous[0].seq if previous else 0) + 1,
            "at_ms": now,
            "own": own,
            "subtree": subtree,
            "courts": courts,
            "children": children,
            "lists": {name: {"items": items[name], "total": totals[name]} for name in LISTS},
        }

    async def send(self) -> dict[str, Any]:
        """Build, seal and store this court's summary; send it to the parent if there is one."""
        async with self._send_lock:
            now = self.node.clock.now_ms()
            doc = await self.node.store.read(lambda c: self.build(c, now))
            body = canonical(doc)
            sealed = seal(self.node.key, str(self.node.me), body)
            digest = hashlib.sha256(body).hexdigest()
            row = {
                "seq": doc["seq"],
                "at_ms": doc["at_ms"],
                "received_at_ms": now,
                "summary": body.decode(),
                "seal": sealed,
                "sha256": digest,
            }

            def keep(tx: Tx, eid: str | None) -> None:
                me = str(self.node.me)
                if tx.conn.execute(select(stats_summaries.c.court).where(stats_summaries.c.court == me)).first():
                    tx.conn.execute(
                        update(stats_summaries).where(stats_summaries.c.court == me).values(**row, envelope_id=eid)
                    )
                else:
                    tx.conn.execute(insert(stats_summaries).values(court=me, **row, envelope_id=eid))

            parent = self.node.router.parent
            eid: str | None = None
            if parent is not None:
                eid, _ = await self.node.exchange.originate(
                    KIND, Target.to_court(parent), pack(body, sealed), extra=keep
                )
            else:
                await transact(self.node, lambda tx: keep(tx, None))
            return {"court": doc["court"], "seq": doc["seq"], "sha256": digest, "to": str(parent or ""), "id": eid}

    def send_soon(self) -> None:
        """Send a summary shortly (coalescing bursts: a child's summary, an overdue node)."""
        if self.node.router.parent is None or self._soon is not None:
            return

        def fire() -> None:
            self._soon = None
            self._spawn(self._send_logged())

        self._soon = asyncio.get_running_loop().call_later(self.settings.propagate_delay_s, fire)

    async def _send_logged(self) -> None:
        try:
            await self.send()
        except Exception as exc:
            log.warning("statistics summary of %s not sent: %s", self.node.me, exc)

    async def periodic(self) -> None:
        if self.node.router.parent is not None:
            await self.send()

    # -- receiving -----------------------------------------------------------------------------
    def _on_summary(self, delivery: Delivery) -> None:
        origin = delivery.opened.origin
        if origin not in self.node.router.children:
            raise AuthorityError(f"{origin} is not a child of {self.node.me}", reason="not_a_child")
        payload = delivery.payload
        assert isinstance(payload, wrappers_pb2.BytesValue)
        try:
            self._accept(delivery, origin, payload)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            # Whatever a child sends must end as a refusal, never fail the batch it came in.
            raise InvalidInput(
                f"statistics summary from {origin} is malformed: {exc}"[:300], reason="malformed_summary"
            ) from None

    def _accept(self, delivery: Delivery, origin: CourtCode, payload: wrappers_pb2.BytesValue) -> None:
        body, sealed = unpack(payload)
        if not sealed:
            raise TrustError(f"statistics summary from {origin} is not signed", reason="unsigned_summary")
        verify(sealed, body, self.node.trust.public_key(origin), kid=str(origin))
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidInput("statistics summary is not JSON", reason="malformed_summary") from None
        check_document(doc, origin)
        conn, now = delivery.conn, delivery.now_ms
        stored = _stored(conn, str(origin))
        if stored and stored[0].seq >= doc["seq"]:
            raise InvalidInput(
                f"statistics summary {doc['seq']} of {origin} is not newer than {stored[0].seq}", reason="stale_summary"
            )
        row = {
            "seq": doc["seq"],
            "at_ms": doc["at_ms"],
            "received_at_ms": now,
            "summary": body.decode(),
            "seal": sealed,
            "sha256": hashlib.sha256(body).hexdigest(),
            "envelope_id": delivery.opened.id,
        }
        if stored:
            conn.execute(update(stats_summaries).where(stats_summaries.c.court == str(origin)).values(**row))
        else:
            conn.execute(insert(stats_summaries).values(court=str(origin), **row))
        added = deadlines.of(self.node).note_reported(conn, origin, doc["lists"]["overdue"]["items"], now)
        delivery.event("stats.summary", {"court": str(origin), "seq": doc["seq"]})

        def after() -> None:
            if added:
                self._spawn(deadlines.of(self.node).raise_supervisions())
            self.send_soon()

        delivery.tx.callbacks.append(after)

    # -- reading -------------------------------------------------------------------------------
    async def child_lists(self, name: str) -> dict[str, Any]:
        def read(conn: Connection) -> dict[str, Any]:
            items: list[dict[str, Any]] = []
            total = 0
            courts = {}
            for court, kid in self._children(conn).items():
                part = kid["doc"]["lists"][name]
                items.extend(part["items"])
                total += int(part.get("total", len(part["items"])))
                courts[court] = iso(kid["doc"]["at_ms"])
            return {"items": items, "total": total, "courts": courts}

        return await self.node.store.read(read)

    async def show(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``stats.show``: this court's figures now; with ``subtree`` the subtree's, from the
        children's latest signed summaries, and one line per child."""
        if args.get("send"):
            await self.send()
        now = self.node.clock.now_ms()

        def read(conn: Connection) -> dict[str, Any]:
            doc = self.build(conn, now)
            out: dict[str, Any] = {"court": doc["court"], "name": doc["name"], "at": iso(now), "own": doc["own"]}
            if args.get("subtree"):
                out["subtree"] = doc["subtree"]
                out["courts"] = doc["courts"]
                out["children"] = {
                    court: {
                        "name": kid["doc"].get("name", ""),
                        "seq": kid["doc"]["seq"],
                        "at": iso(kid["doc"]["at_ms"]),
                        "age_s": round((now - kid["doc"]["at_ms"]) / 1000, 1),
                        "courts": kid["doc"]["courts"],
                        "sha256": kid["row"].sha256,
                        "subtree": kid["doc"]["subtree"],
                    }
                    for court, kid in self._children(conn).items()
                }
            mine = _stored(conn, doc["court"])
            if mine:
                sent = mine[0]
                state = None
                if sent.envelope_id:
                    state = conn.execute(
                        select(deliveries.c.state, deliveries.c.reason).where(
                            deliveries.c.envelope_id == sent.envelope_id
                        )
                    ).first()
                out["last_sent"] = {
                    "seq": sent.seq,
                    "at": iso(sent.at_ms),
                    "delivery": state.state if state else None,
                    "reason": state.reason if state else None,
                }
            return out

        return await self.node.store.read(read)

    async def summaries(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Admin ``stats.summaries``: the stored signed summaries, each re-verified now."""

        def read(conn: Connection) -> list[Any]:
            return _stored(conn)

        out = []
        for r in await self.node.store.read(read):
            try:
                verify(r.seal, r.summary.encode(), self.node.trust.public_key(CourtCode.parse(r.court)), kid=r.court)
                valid = hashlib.sha256(r.summary.encode()).hexdigest() == r.sha256
            except TrustError:
                valid = False
            out.append(
                {
                    "court": r.court,
                    "seq": r.seq,
                    "at": iso(r.at_ms),
                    "sha256": r.sha256,
                    "valid": valid,
                    "envelope_id": r.envelope_id,
                }
            )
        return out


def _slim_overdue(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("court", "case_number", "node", "seq", "label", "due_at_ms", "due", "overdue_days", "supervise")
    return {k: r[k] for k in keys} | {"supervision": r.get("supervision")}


def setup(node: Node) -> None:
    from hub.bench import tree as bench_tree  # the measured side of `court-hub bench tree`

    svc = Stats(node)
    _NODES[node] = svc
    deadlines.state(node).services["stats"] = svc
    deadlines.of(node).on_supervise = svc.send_soon
    for name, op in {
        "stats.show": svc.show,
        "stats.send": lambda args: svc.send(),
        "stats.summaries": svc.summaries,
        "bench.broadcast": lambda args: bench_tree.broadcast(node, args),
    }.items():
        node.admin.register(name, op)
    spawn_loop(node, "stats-summary", svc.periodic, lambda: svc.settings.interval_s, svc.wake)
