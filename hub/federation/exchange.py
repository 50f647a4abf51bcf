"""The durable core of the federation: nothing lost, nothing done twice.

**Sending.** ``originate`` seals an envelope and, in one transaction with the business change that
caused it (``extra``), writes an outbox row per next hop, the expected receipts and an audit
entry. Link sessions send outbox rows in order and mark them delivered when the next hop acks.

**Receiving.** ``check`` (pure, run off the event loop) validates each envelope of a batch: structure,
link authority (a child speaks only for its own subtree; kinds only in allowed directions) and the
origin's seal. ``accept`` (run on the store's writer thread) then dedupes by envelope id against
the inbox, and for each new envelope records it, routes it onward (outbox rows) and/or delivers it
locally to the handler for its kind — all in the transaction the ack waits for. A delivered
envelope that asks for one gets a sealed receipt back to its origin, in the same transaction.

Every rejection is an audit entry and a clear reason to the sender; never a silent drop.

**Replays.** The inbox remembers ids for the dedupe retention only, so an envelope older than
that (less a clock-skew margin) is refused as ``stale_envelope`` instead of being taken for new:
a replay after pruning cannot execute twice. The same bound is the longest outage the federation
survives without refusals (docs/outages.md).

**Newer peers.** Kinds this node does not know (``kinds.unknown``) are checked, stored, relayed
and reported like any other, but never interpreted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import InterfaceError, InternalError, OperationalError, StatementError

from hub.audit import AuditLog
from hub.clock import Clock
from hub.codes import CourtCode
from hub.errors import AuthorityError, CourtHubError, InvalidInput, TrustError
from hub.federation import kinds
from hub.federation.envelope import EnvelopeError, Opened, Target, build, open_envelope
from hub.federation.router import Router
from hub.keys import CourtKey
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.proto.courthub.v1 import payloads_pb2 as ppb
from hub.seal import verify
from hub.store import Store
from hub.store.schema import deliveries, inbox, outbox
from hub.trust import TrustStore, below

Event = tuple[str, dict[str, Any]]
MAX_CLOCK_SKEW_MS = 3_600_000
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Tx:
    """What one transaction produced, acted on after it commits."""

    conn: Connection
    audit: AuditLog
    now_ms: int
    hops: set[CourtCode] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    outbox_rows: list[dict[str, Any]] = field(default_factory=list)

    def flush(self) -> None:
        if self.outbox_rows:
            self.conn.execute(insert(outbox), self.outbox_rows)
            self.outbox_rows.clear()


@dataclass
class Delivery:
    """What a kind's handler gets: the envelope, its payload, and the transaction it runs in."""

    tx: Tx
    opened: Opened
    payload: Message
    exchange: Exchange

    @property
    def conn(self) -> Connection:
        return self.tx.conn

    @property
    def now_ms(self) -> int:
        return self.tx.now_ms

    def reply(self, kind: str, payload: Message, *, target: Target | None = None) -> str:
        """Originate an answer (to the origin unless ``target``) in this transaction."""
        return self.exchange.emit(
            self.tx,
            kind,
            target or Target.to_court(self.opened.origin),
            payload,
            correlation_id=self.opened.id,
            case_number=self.opened.header.case_number,
        )

    def event(self, name: str, data: dict[str, Any]) -> None:
        self.tx.events.append((name, data))


Handler = Callable[[Delivery], None]


@dataclass
class Checked:
    """One envelope of a received batch after ``check``: opened, refused with an error, or both
    (authentic but stale: a duplicate if the inbox still has it, refused otherwise)."""

    envelope: epb.Envelope
    opened: Opened | None = None
    error: CourtHubError | None = None

    @property
    def envelope_id(self) -> str:
        return self.opened.id if self.opened else _best_effort_id(self.envelope)


@dataclass
class Accepted:
    rejections: list[tuple[str, str, str]]  # envelope id, reason, message
    tx: Tx
    new: int = 0
    duplicates: int = 0


def _best_effort_id(envelope: epb.Envelope) -> str:
    header = epb.EnvelopeHeader()
    try:
        header.ParseFromString(envelope.header)
    except Exception:
        return ""
    return header.id[:64]


class Exchange:
    def __init__(
        self,
        me: CourtCode,
        key: CourtKey,
        store: Store,
        trust: TrustStore,
        router: Router,
        clock: Clock,
        *,
        dedupe_retention_ms: int = 30 * 86_400_000,
    ) -> None:
        # Accept envelopes younger than the dedupe retention, less the skew allowed between
        # clocks, and refuse ones "created" further in the future than that skew.
        self.max_age_ms = max(dedupe_retention_ms - MAX_CLOCK_SKEW_MS, MAX_CLOCK_SKEW_MS)
        self.me = me
        self.key = key
        self.store = store
        self.trust = trust
        self.router = router
        self.clock = clock
        self.handlers: dict[str, Handler] = {}
        # Kinds whose handler writes nothing to the store: delivered without a savepoint.
        self._pure: set[str] = set()
        # Called after each commit with the hops that have new outbox rows and the events raised.
        self.on_commit: Callable[[set[CourtCode], list[Event]], None] = lambda hops, events: None

    def handle(self, kind: str, handler: Handler, *, writes: bool = True) -> None:
        """Deliver ``kind`` to ``handler`` inside the receiving transaction.

        ``writes=False`` declares that the handler executes no SQL itself (it may still reply or
        raise): its delivery then skips the savepoint that isolates a failing handler's writes,
        which is a measurable share of the cost of a hot kind.
        """
        if kinds.get(kind) is None:
            raise ValueError(f"no envelope kind {kind!r}")
        self.handlers[kind] = handler
        if writes:
            self._pure.discard(kind)
        else:
            self._pure.add(kind)

    # -- sending -----------------------------------------------------------------------------
    def emit(
        self,
        tx: Tx,
        kind: str,
        target: Target,
        payload: Message,
        *,
        correlation_id: str = "",
        case_number: str = "",
        recipients: list[CourtCode] | None = None,
    ) -> str:
        """Seal and route a new envelope inside ``tx``; returns its id. Raises if unroutable."""
        envelope = build(
            self.key,
            self.me,
            kind,
            target,
            payload,
            now_ms=tx.now_ms,
            correlation_id=correlation_id,
            case_number=case_number,
        )
        opened = open_envelope(envelope)
        plan = self.router.plan(target, None)
        if plan.error:
            raise InvalidInput(plan.error, reason=plan.reason)
        self._enqueue(tx, opened, plan.hops)
        tx.audit.append(
            "sent",
            tx.now_ms,
            envelope_id=opened.id,
            kind=kind,
            origin=str(self.me),
            detail={"to": str(target), "hops": [str(h) for h in plan.hops]},
            raw=opened.raw(),
        )
        if opened.spec.receipt:
            courts = recipients if recipients is not None else self.recipients(target)
            if courts:
                tx.conn.execute(
                    insert(deliveries),
                    [{"envelope_id": opened.id, "recipient": str(c), "state": "pending"} for c in courts],
                )
        if plan.local:
            self._deliver(tx, opened)
        return opened.id

    def recipients(self, target: Target) -> list[CourtCode]:
        """The courts a court/subtree envelope is expected to reach (for receipts)."""
        if target.mode == "court" and target.court is not None:
            return [target.court]
        if target.mode == "subtree" and target.court is not None:
            top = target.court
            return sorted((c for c in self.router.known_courts() if c.is_within(top) and c != self.me), key=str)
        return []

    async def originate(
        self,
        kind: str,
        target: Target,
        payload: Message,
        *,
        correlation_id: str = "",
        case_number: str = "",
        extra: Callable[[Tx, str], Any] | None = None,
    ) -> tuple[str, Any]:
        """Send a new envelope durably; ``extra(tx, envelope_id)`` writes the business change."""

        def work(tx: Tx) -> tuple[str, Any]:
            eid = self.emit(tx, kind, target, payload, correlation_id=correlation_id, case_number=case_number)
            return eid, extra(tx, eid) if extra is not None else None

        return await self.run(work)

    def _enqueue(self, tx: Tx, opened: Opened, hops: tuple[CourtCode, ...]) -> None:
        env = opened.envelope
        for hop in hops:
            tx.outbox_rows.append(
                {
                    "envelope_id": opened.id,
                    "next_hop": str(hop),
                    "kind": opened.kind,
                    "origin": str(opened.origin),
                    "header": env.header,
                    "payload": env.payload,
                    "seal": env.seal,
                    "state": "pending",
                    "created_at_ms": tx.now_ms,
                }
            )
            tx.hops.add(hop)

    async def run(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn(tx)`` in one durable transaction — business rows, envelopes it emits, audit
        entries — and act on the commit (wake link senders, publish events, run callbacks)."""

        def work(conn: Connection) -> tuple[T, Tx]:
            tx = Tx(conn, AuditLog(conn), self.clock.now_ms())
            result = fn(tx)
            tx.flush()
            tx.audit.flush()
            return result, tx

        result, tx = await self.store.write(work)
        self.committed(tx)
        return result

    def committed(self, tx: Tx) -> None:
        """After ``tx`` committed: callbacks, then wake the senders of its hops and publish its events."""
        for callback in tx.callbacks:
            callback()
        self.on_commit(tx.hops, tx.events)

    # -- receiving ---------------------------------------------------------------------------
    def check(self, envelopes: list[epb.Envelope], from_hop: CourtCode, from_child: bool) -> list[Checked]:
        """Validate a received batch (CPU only: run it in a worker thread)."""
        out: list[Checked] = []
        now = self.clock.now_ms()
        for envelope in envelopes:
            opened = None
            try:
                opened = open_envelope(envelope)
                self._check_link(opened, from_hop, from_child)
                verify(
                    opened.envelope.seal,
                    opened.envelope.header,
                    self.trust.public_key(opened.origin),
                    kid=str(opened.origin),
                )
            except CourtHubError as exc:
                out.append(Checked(envelope, None, exc))
                continue
            try:
                self._check_age(opened, now)
            except CourtHubError as exc:
                # Authentic but too old: ``accept`` acks it as a duplicate if the inbox still
                # has it (an ack lost long ago), and refuses it otherwise.
                out.append(Checked(envelope, opened, exc))
                continue
            out.append(Checked(envelope, opened))
        return out

    def _check_age(self, opened: Opened, now_ms: int) -> None:
        created = opened.header.created_at_ms
        if created < now_ms - self.max_age_ms:
            raise EnvelopeError(
                f"envelope {opened.id} was created {(now_ms - created) / 86_400_000:.1f} days ago, beyond the "
                f"dedupe retention of this node: refused as a possible replay",
                reason="stale_envelope",
            )
        if created > now_ms + MAX_CLOCK_SKEW_MS:
            raise EnvelopeError(
                f"envelope {opened.id} claims to be created {(created - now_ms) / 60_000:.0f} minutes in the future "
                f"(origin clock wrong?)",
                reason="stale_envelope",
            )

    def _check_link(self, opened: Opened, hop: CourtCode, from_child: bool) -> None:
        spec, origin = opened.spec, opened.origin
        if from_child:
            if not origin.is_within(hop):
                raise AuthorityError(
                    f"envelope {opened.id} claims origin {origin}, outside the subtree of link {hop}",
                    reason="origin_outside_subtree",
                )
            if not spec.up:
                raise AuthorityError(f"{spec.name} may not travel upward (from {hop})", reason="wrong_direction")
        else:
            if origin.is_within(self.me):
                raise AuthorityError(
                    f"envelope {opened.id} from parent link claims origin {origin} inside {self.me}'s own subtree",
                    reason="origin_outside_subtree",
                )
            if not spec.down:
                raise AuthorityError(f"{spec.name} may not travel downward (from {hop})", reason="wrong_direction")

    def accept(self, checked: list[Checked], from_hop: CourtCode) -> Callable[[Connection], Accepted]:
        """The write for one received batch; run it with ``store.submit``."""

        def work(conn: Connection) -> Accepted:
            tx = Tx(conn, AuditLog(conn), self.clock.now_ms())
            result = Accepted([], tx)
            ids = [c.opened.id for c in checked if c.opened is not None]
            seen = set(conn.execute(select(inbox.c.envelope_id).where(inbox.c.envelope_id.in_(ids))).scalars())
            inbox_rows = []
            for item in checked:
                opened = item.opened
                if opened is not None and item.error is not None and opened.id in seen:
                    result.duplicates += 1
                    continue
                if opened is None or item.error is not None:
                    err = item.error or EnvelopeError("invalid envelope")
                    result.rejections.append((item.envelope_id, err.reason, err.message))
                    tx.audit.append(
                        "rejected",
                        tx.now_ms,
                        envelope_id=item.envelope_id or None,
                        peer=str(from_hop),
                        detail={"reason": err.reason, "message": err.message},
                        raw=item.envelope.SerializeToString(),
                    )
                    continue
                if opened.id in seen:
                    result.duplicates += 1
                    continue
                seen.add(opened.id)
                result.new += 1
                inbox_rows.append(
                    {
                        "envelope_id": opened.id,
                        "origin": str(opened.origin),
                        "kind": opened.kind,
                        "from_hop": str(from_hop),
                        "received_at_ms": tx.now_ms,
                    }
                )
                self._route(tx, opened, from_hop)
            if inbox_rows:
                conn.execute(insert(inbox), inbox_rows)
            tx.flush()
            tx.audit.flush()
            return result

        return work

    def accepted(self, result: Accepted) -> None:
        """After the batch's commit: wake link senders, publish events."""
        self.committed(result.tx)

    def _route(self, tx: Tx, opened: Opened, from_hop: CourtCode) -> None:
        plan = self.router.plan(opened.target, from_hop)
        if plan.error:
            self._refuse(tx, opened, from_hop, plan.reason, plan.error)
            return
        if plan.hops:
            self._enqueue(tx, opened, plan.hops)
            if not opened.spec.known:
                tx.events.append(("envelope.unknown_kind", {"envelope_id": opened.id, "kind": opened.kind}))
            _audit_envelope(tx, "relayed", opened, from_hop, {"hops": [str(h) for h in plan.hops]})
        if plan.local:
            self._deliver(tx, opened, from_hop)

    def _deliver(self, tx: Tx, opened: Opened, from_hop: CourtCode | None = None) -> None:
        spec = opened.spec
        tx.flush()  # what was queued before this delivery must survive its failure
        mark, n_events, n_callbacks = tx.audit.mark(), len(tx.events), len(tx.callbacks)
        if not spec.known:
            self._keep_unknown(tx, opened, from_hop)
            return
        handler = self.handlers.get(opened.kind)
        try:
            self._check_authority(opened)
            payload = opened.payload()
            if handler is not None:
                if opened.kind in self._pure:
                    handler(Delivery(tx, opened, payload, self))
                else:
                    with tx.conn.begin_nested():
                        handler(Delivery(tx, opened, payload, self))
                        tx.flush()
        except Exception as exc:
            if isinstance(exc, StatementError) and _transient(exc):
                raise  # the store itself failed: the batch is not acked and comes again
            # The savepoint undid the handler's writes; undo what it buffered in memory too.
            tx.outbox_rows.clear()
            tx.audit.rollback(mark)
            del tx.events[n_events:], tx.callbacks[n_callbacks:]
            if isinstance(exc, CourtHubError):
                self._refuse(tx, opened, from_hop, exc.reason, exc.message)
            elif isinstance(exc, StatementError):
                # This envelope's content cannot be stored here (a value the database rejects):
                # refusing it is final, where raising would block the link with endless resends.
                reason = type(exc.orig or exc).__name__
                self._refuse(tx, opened, from_hop, "unstorable", f"the store refused its content ({reason})")
            else:
                # A bug in the handler: refuse this one envelope (the origin gets a negative
                # receipt and can send it again once fixed) rather than block the whole link.
                log.exception("handler for %s failed on envelope %s", opened.kind, opened.id)
                self._refuse(
                    tx, opened, from_hop, "handler_failed", f"{opened.kind} handler failed: {type(exc).__name__}"
                )
            return
        _audit_envelope(tx, "received", opened, from_hop)
        if spec.receipt:
            self.emit(
                tx,
                "receipt",
                Target.to_court(opened.origin),
                ppb.ReceiptPayload(
                    envelope_id=opened.id, recipient=str(self.me), received_at_ms=tx.now_ms, status="delivered"
                ),
                correlation_id=opened.id,
            )

    def _keep_unknown(self, tx: Tx, opened: Opened, from_hop: CourtCode | None) -> None:
        """A kind from a newer peer reached its destination: keep it (audit holds the raw envelope)
        and report it, so an operator sees that a neighbour speaks something this node does not."""
        _audit_envelope(tx, "received_unknown_kind", opened, from_hop, {"schema_version": opened.header.schema_version})
        tx.events.append(("envelope.unknown_kind", {"envelope_id": opened.id, "kind": opened.kind}))

    def _check_authority(self, opened: Opened) -> None:
        authority, origin = opened.spec.authority, opened.origin
        if authority is kinds.Authority.DOWNWARD and not below(self.me, origin):
            raise AuthorityError(
                f"{opened.kind} from {origin} to {self.me}: only an upper court may send it downward",
                reason="wrong_direction",
            )
        if authority is kinds.Authority.UPWARD and not below(origin, self.me):
            raise AuthorityError(
                f"{opened.kind} from {origin} to {self.me}: it may only go to an upper court", reason="wrong_direction"
            )

    def _refuse(self, tx: Tx, opened: Opened, from_hop: CourtCode | None, reason: str, message: str) -> None:
        _audit_envelope(tx, "rejected", opened, from_hop, {"reason": reason, "message": message})
        tx.events.append(("envelope.rejected", {"envelope_id": opened.id, "reason": reason, "message": message}))
        if opened.spec.receipt and opened.origin != self.me:
            # The origin learns of the refusal from a signed negative receipt.
            self.emit(
                tx,
                "receipt",
                Target.to_court(opened.origin),
                ppb.ReceiptPayload(
                    envelope_id=opened.id,
                    recipient=str(self.me),
                    received_at_ms=tx.now_ms,
                    status="rejected",
                    reason=reason,
                    message=message,
                ),
                correlation_id=opened.id,
            )

    # -- a restored neighbour ------------------------------------------------------------------
    def resend_since(self, hop: CourtCode, since_ms: int, margin_ms: int) -> Callable[[Connection], int]:
        """The write that turns rows delivered to ``hop`` since ``since_ms`` back to pending.

        ``hop`` was restored from a backup taken at ``since_ms`` and lost what it received after;
        the link then resends those rows in their original order, and ``hop``'s inbox dedupes what
        it still had. Returns how many rows will be resent."""

        def work(conn: Connection) -> int:
            now = self.clock.now_ms()
            oldest = conn.execute(
                select(func.min(outbox.c.done_at_ms)).where(
                    outbox.c.next_hop == str(hop), outbox.c.state == "delivered"
                )
            ).scalar()
            n = conn.execute(
                update(outbox)
                .where(
                    outbox.c.next_hop == str(hop),
                    outbox.c.state == "delivered",
                    outbox.c.done_at_ms >= since_ms - margin_ms,
                )
                .values(state="pending", done_at_ms=None)
            ).rowcount
            # Delivered rows are pruned after a retention: when the oldest one kept is younger than
            # the backup, rows the neighbour lost may be gone here too. The audit says so.
            covers = oldest is None or oldest <= since_ms - margin_ms
            log = AuditLog(conn)
            log.append(
                "resend_for_restore",
                now,
                peer=str(hop),
                detail={"since_ms": since_ms, "rows": n, "kept_rows_cover_since": covers, "oldest_kept_ms": oldest},
            )
            log.flush()
            return int(n)

        return work

    # -- acks from the next hop ---------------------------------------------------------------
    def mark_acked(
        self, outbox_ids: list[int], rejections: dict[str, tuple[str, str]], hop: CourtCode
    ) -> Callable[[Connection], None]:
        def work(conn: Connection) -> None:
            now = self.clock.now_ms()
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(outbox_ids), outbox.c.state == "pending")
                .values(state="delivered", done_at_ms=now)
            )
            if not rejections:
                return
            log = AuditLog(conn)
            for eid, (reason, message) in rejections.items():
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(outbox_ids), outbox.c.envelope_id == eid)
                    .values(state="rejected", reason=f"{reason}: {message}")
                )
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.envelope_id == eid, deliveries.c.state == "pending")
                    .values(state="rejected", reason=f"{reason}: {message}", receipt_at_ms=now)
                )
                log.append(
                    "rejected_by_peer",
                    now,
                    envelope_id=eid,
                    peer=str(hop),
                    detail={"reason": reason, "message": message},
                )
            log.flush()

        return work


def _audit_envelope(
    tx: Tx, action: str, opened: Opened, from_hop: CourtCode | None, detail: dict[str, Any] | None = None
) -> None:
    """An audit entry about a received envelope, with the raw sealed bytes as evidence."""
    tx.audit.append(
        action,
        tx.now_ms,
        envelope_id=opened.id,
        kind=opened.kind,
        origin=str(opened.origin),
        peer=str(from_hop) if from_hop else None,
        detail=detail,
        raw=opened.raw(),
    )


def _transient(exc: StatementError) -> bool:
    """A failure of the database itself (connection, disk, lock), not of what was written."""
    return isinstance(exc, OperationalError | InterfaceError | InternalError)


def receipt_handler(delivery: Delivery) -> None:
    """A receipt came back to the origin: record who got the envelope (or refused it)."""
    receipt = delivery.payload
    assert isinstance(receipt, ppb.ReceiptPayload)
    if receipt.recipient != str(delivery.opened.origin):
        raise TrustError("receipt names another recipient than the court that sealed it", reason="bad_receipt")
    if receipt.status not in ("delivered", "rejected"):
        raise InvalidInput(f"receipt status {receipt.status!r} is not delivered/rejected")
    values = {
        "state": receipt.status,
        "receipt_at_ms": receipt.received_at_ms,
        "reason": f"{receipt.reason}: {receipt.message}" if receipt.status == "rejected" else None,
    }
    conn = delivery.conn
    found = conn.execute(
        update(deliveries)
        .where(deliveries.c.envelope_id == receipt.envelope_id, deliveries.c.recipient == receipt.recipient)
        .values(**values)
    ).rowcount
    if not found:
        conn.execute(insert(deliveries).values(envelope_id=receipt.envelope_id, recipient=receipt.recipient, **values))
    delivery.event(
        "receipt", {"envelope_id": receipt.envelope_id, "recipient": receipt.recipient, "status": receipt.status}
    )


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True)
