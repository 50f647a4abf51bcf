"""The control-measure ledger (查控措施台账) shared by bank, land and vehicle registries.

One row per measure, whatever the agency: a freeze of a deposit account, a seal (查封) of a real
estate registration or a vehicle. The agency supplies an :class:`AssetBook` (who owns an asset,
its balance when the measure is amount-based) and a :class:`LedgerPolicy` (words, term limit,
whether amounts count). The ledger implements the rules:

* **Priority (在先冻结优先).** Active measures of other cases keep what they control. A new
  amount-based freeze gets only the free balance (balance − Σ active controlled amounts); a new
  whole-asset seal on an asset already sealed is not controlled (the reason names the earlier case)
  and the court may ask for a waiting seal instead.
* **Waiting measures (轮候).** Code 03 queues behind every active measure on the asset (FIFO); with
  nothing active it takes effect at once. When an active measure ends (released, lapsed, fully
  deducted) the queue is promoted *by itself*: amount-based measures each take
  ``min(requested, free)`` while something is free; whole-asset measures promote the head.
  A waiting measure has no term while it waits; its term starts when it takes effect.
* **Terms (民诉法解释 2022 第485条).** ``term_days`` must not exceed the policy's limit; longer is
  refused. Renewal (02) must come while the measure is active, before ``expires_at``; the renewed
  term runs on from the old expiry (续行期限自原期限届满之日起算) and is again at most the limit.
* **Lapse (到期失效).** :meth:`Ledger.settle` is run before every request against the simulator
  clock: every active measure whose expiry has passed lapses *at its expiry instant*, in
  chronological order, and promotes the queue then — so jumping the clock a year ahead replays
  exactly what would have happened day by day.
* **Deduct (06/08, amount-based only).** 06 with ``measure_id`` transfers up to that measure's
  controlled amount; 06 without it transfers up to the free balance; 08 freezes and transfers the
  free balance at once.

Only the court that placed a measure may renew, release or deduct it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from plugins.agency.errors import Refused
from plugins.agency.model import (
    ControlCode,
    ControlOrder,
    ControlResult,
    MeasureStatus,
    MeasureView,
    Outcome,
    yuan,
)

DAY_MS = 86_400_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS measures (
    measure_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    asset_id TEXT NOT NULL,
    owner_id_no TEXT NOT NULL,
    court_code TEXT NOT NULL,
    court_name TEXT NOT NULL,
    case_no TEXT NOT NULL,
    request_id TEXT,
    document_no TEXT,
    status TEXT NOT NULL,
    requested_amount INTEGER,
    controlled_amount INTEGER,
    term_days INTEGER NOT NULL,
    queued_at INTEGER NOT NULL,
    effective_at INTEGER,
    expires_at INTEGER,
    ended_at INTEGER,
    renewals INTEGER NOT NULL DEFAULT 0,
    note TEXT
);
CREATE INDEX IF NOT EXISTS measures_asset ON measures (asset_id, status, seq);
CREATE INDEX IF NOT EXISTS measures_expiry ON measures (status, expires_at);
CREATE TABLE IF NOT EXISTS measure_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    measure_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    detail TEXT
);
"""


@dataclass(frozen=True)
class Vocabulary:
    """Chinese words of one agency's measures, used in reasons and notes."""

    freeze: str = "冻结"
    renew: str = "续冻"
    waiting: str = "轮候冻结"
    release: str = "解冻"
    release_waiting: str = "解除轮候冻结"
    asset: str = "账户"


@dataclass(frozen=True)
class LedgerPolicy:
    id_prefix: str  # measure ids: f"{id_prefix}-{seq:06d}"
    amount_based: bool  # deposits: amounts count; real estate / vehicles: the whole asset
    max_term_days: int
    term_rule: str  # the legal rule quoted when a term is too long
    words: Vocabulary


@dataclass(frozen=True)
class Asset:
    asset_id: str
    owner_id_no: str
    balance_fen: int | None  # None for whole-asset measures


@dataclass(frozen=True)
class SeedMeasure:
    """A measure of another court present in the seeded data (他案在先措施)."""

    asset_id: str
    owner_id_no: str
    court_code: str
    court_name: str
    case_no: str
    start_offset_days: int  # relative to the store's genesis day (negative: before)
    term_days: int
    amount_fen: int | None = None


class AssetBook(Protocol):
    """What the ledger needs to know about an agency's assets."""

    def asset(self, conn: sqlite3.Connection, asset_id: str) -> Asset | None: ...

    def debit(self, conn: sqlite3.Connection, asset_id: str, amount_fen: int, at_ms: int, memo: str) -> None:
        """Take ``amount_fen`` off the asset's balance (a court deduction, 扣划)."""
        ...


def day_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


class Ledger:
    def __init__(self, policy: LedgerPolicy, book: AssetBook) -> None:
        self.policy = policy
        self.book = book

    @staticmethod
    def create_schema(conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)

    # -- reading -------------------------------------------------------------------------------

    def view(self, conn: sqlite3.Connection, measure_id: str) -> MeasureView | None:
        row = conn.execute("SELECT * FROM measures WHERE measure_id = ?", (measure_id,)).fetchone()
        return self._view(conn, row) if row is not None else None

    def on_asset(self, conn: sqlite3.Connection, asset_id: str, *, current_only: bool = True) -> list[MeasureView]:
        sql = "SELECT * FROM measures WHERE asset_id = ?"
        if current_only:
            sql += " AND status IN ('active', 'waiting')"
        rows = conn.execute(sql + " ORDER BY seq", (asset_id,)).fetchall()
        return [self._view(conn, r) for r in rows]

    def controlled_total(self, conn: sqlite3.Connection, asset_id: str) -> int:
        row = conn.execute(
            "SELECT COALESCE(SUM(controlled_amount), 0) FROM measures WHERE asset_id = ? AND status = 'active'",
            (asset_id,),
        ).fetchone()
        return int(row[0])

    def _view(self, conn: sqlite3.Connection, row: sqlite3.Row) -> MeasureView:
        position = None
        if row["status"] == MeasureStatus.WAITING:
            ahead = conn.execute(
                "SELECT COUNT(*) FROM measures WHERE asset_id = ? AND status = 'waiting' AND seq < ?",
                (row["asset_id"], row["seq"]),
            ).fetchone()[0]
            position = int(ahead) + 1
        return MeasureView(
            measure_id=row["measure_id"],
            asset_id=row["asset_id"],
            owner_id_no=row["owner_id_no"],
            court_code=row["court_code"],
            court_name=row["court_name"],
            case_no=row["case_no"],
            status=MeasureStatus(row["status"]),
            term_days=row["term_days"],
            queued_at_ms=row["queued_at"],
            requested_amount_fen=row["requested_amount"],
            controlled_amount_fen=row["controlled_amount"],
            effective_at_ms=row["effective_at"],
            expires_at_ms=row["expires_at"],
            ended_at_ms=row["ended_at"],
            queue_position=position,
            renewals=row["renewals"],
            note=row["note"],
        )

    # -- lapse and promotion -------------------------------------------------------------------

    def settle(self, conn: sqlite3.Connection, now_ms: int) -> list[str]:
        """Lapse every active measure whose term ended by ``now_ms`` (earliest first) and promote
        the waiting queues at each lapse instant. Returns human-readable event lines."""
        events: list[str] = []
        while True:
            row = conn.execute(
                "SELECT * FROM measures WHERE status = 'active' AND expires_at <= ? ORDER BY expires_at, seq LIMIT 1",
                (now_ms,),
            ).fetchone()
            if row is None:
                return events
            at = int(row["expires_at"])
            self._end(conn, row["measure_id"], MeasureStatus.LAPSED, at, f"期限届满未续行，于{day_text(at)}失效")
            events.append(f"{row['measure_id']} lapsed at {day_text(at)}")
            events.extend(self._promote(conn, row["asset_id"], at))

    def _promote(self, conn: sqlite3.Connection, asset_id: str, at_ms: int) -> list[str]:
        events: list[str] = []
        waiting = conn.execute(
            "SELECT * FROM measures WHERE asset_id = ? AND status = 'waiting' ORDER BY seq", (asset_id,)
        ).fetchall()
        if not waiting:
            return events
        asset = self.book.asset(conn, asset_id)
        for row in waiting:
            if self.policy.amount_based:
                assert asset is not None and asset.balance_fen is not None
                free = asset.balance_fen - self.controlled_total(conn, asset_id)
                if free <= 0:
                    break
                got = min(int(row["requested_amount"]), free)
                note = f"轮候{self.policy.words.freeze}于{day_text(at_ms)}自动生效"
                if got < int(row["requested_amount"]):
                    note += f"；生效时可{self.policy.words.freeze}余额不足，实际{self.policy.words.freeze}{yuan(got)}"
            else:
                active = conn.execute(
                    "SELECT 1 FROM measures WHERE asset_id = ? AND status = 'active' LIMIT 1", (asset_id,)
                ).fetchone()
                if active is not None:
                    break
                got = None
                note = f"{self.policy.words.waiting}于{day_text(at_ms)}自动生效"
            expires = at_ms + int(row["term_days"]) * DAY_MS
            conn.execute(
                "UPDATE measures SET status = 'active', controlled_amount = ?, effective_at = ?, expires_at = ?,"
                " note = ? WHERE measure_id = ?",
                (got, at_ms, expires, note, row["measure_id"]),
            )
            self._event(conn, row["measure_id"], at_ms, "promoted", note)
            events.append(f"{row['measure_id']} promoted at {day_text(at_ms)}")
        return events

    def _end(self, conn: sqlite3.Connection, measure_id: str, status: MeasureStatus, at_ms: int, note: str) -> None:
        conn.execute(
            "UPDATE measures SET status = ?, ended_at = ?, note = ? WHERE measure_id = ?",
            (status.value, at_ms, note, measure_id),
        )
        self._event(conn, measure_id, at_ms, status.value, note)

    @staticmethod
    def _event(conn: sqlite3.Connection, measure_id: str, at_ms: int, event: str, detail: str) -> None:
        conn.execute(
            "INSERT INTO measure_events (measure_id, at, event, detail) VALUES (?, ?, ?, ?)",
            (measure_id, at_ms, event, detail),
        )

    def _new_id(self, conn: sqlite3.Connection) -> tuple[str, int]:
        seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM measures").fetchone()[0])
        return f"{self.policy.id_prefix}-{seq:06d}", seq

    def insert(
        self,
        conn: sqlite3.Connection,
        *,
        asset: Asset,
        court_code: str,
        court_name: str,
        case_no: str,
        status: MeasureStatus,
        term_days: int,
        now_ms: int,
        requested: int | None,
        controlled: int | None,
        note: str | None,
        request_id: str | None = None,
        document_no: str | None = None,
        effective_at_ms: int | None = None,
    ) -> str:
        """Write one measure row (also used to seed other courts' measures)."""
        measure_id, seq = self._new_id(conn)
        effective = effective_at_ms if effective_at_ms is not None else now_ms
        active = status is MeasureStatus.ACTIVE
        conn.execute(
            "INSERT INTO measures (measure_id, seq, asset_id, owner_id_no, court_code, court_name, case_no,"
            " request_id, document_no, status, requested_amount, controlled_amount, term_days, queued_at,"
            " effective_at, expires_at, ended_at, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                measure_id,
                seq,
                asset.asset_id,
                asset.owner_id_no,
                court_code,
                court_name,
                case_no,
                request_id,
                document_no,
                status.value,
                requested,
                controlled,
                term_days,
                effective if active else now_ms,
                effective if active else None,
                effective + term_days * DAY_MS if active else None,
                now_ms if status in (MeasureStatus.DEDUCTED,) else None,
                note,
            ),
        )
        self._event(conn, measure_id, now_ms, status.value, note or "")
        return measure_id

    def seed(self, conn: sqlite3.Connection, measures: Iterable[SeedMeasure], genesis_ms: int) -> None:
        """Write seeded measures (active since ``genesis + start_offset_days``)."""
        for m in measures:
            start = genesis_ms + m.start_offset_days * DAY_MS
            self.insert(
                conn,
                asset=Asset(m.asset_id, m.owner_id_no, None),
                court_code=m.court_code,
                court_name=m.court_name,
                case_no=m.case_no,
                status=MeasureStatus.ACTIVE,
                term_days=m.term_days,
                now_ms=start,
                requested=m.amount_fen,
                controlled=m.amount_fen,
                note="他案在先措施（模拟数据）",
                effective_at_ms=start,
            )

    # -- control ---------------------------------------------------------------------------------

    def apply(self, conn: sqlite3.Connection, order: ControlOrder, now_ms: int) -> ControlResult:
        """Carry out one control order inside the caller's transaction."""
        code = order.control_code
        if code in (ControlCode.DEDUCT, ControlCode.FREEZE_DEDUCT) and not self.policy.amount_based:
            raise Refused(
                "unsupported_control_code",
                f"本机构不支持控制类型 {code.value}（扣划仅适用于存款）",
                status=400,
                field="control_code",
            )
        if not self.policy.amount_based and order.amount_fen is not None:
            raise Refused(
                "unexpected_field",
                f"{self.policy.words.freeze}{self.policy.words.asset}不按金额计算，请勿填写金额",
                status=400,
                field="amount_fen",
            )
        handler = {
            ControlCode.FREEZE: self._freeze,
            ControlCode.WAITING: self._freeze,
            ControlCode.RENEW: self._renew,
            ControlCode.RELEASE: self._release,
            ControlCode.RELEASE_WAITING: self._release_waiting,
            ControlCode.DEDUCT: self._deduct,
            ControlCode.FREEZE_DEDUCT: self._freeze_deduct,
        }[code]
        return handler(conn, order, now_ms)

    def _require_document(self, order: ControlOrder) -> None:
        if order.court.document_name is None:
            raise Refused("missing_field", "控制请求须载明法律文书名称", status=400, field="court.document_name")
        if order.court.document_no is None:
            raise Refused("missing_field", "控制请求须载明法律文书文号", status=400, field="court.document_no")

    def _term(self, order: ControlOrder) -> int:
        if order.term_days is None:
            raise Refused("missing_field", f"{self._word(order)}须载明期限（天）", status=400, field="term_days")
        if order.term_days > self.policy.max_term_days:
            raise Refused(
                "term_exceeds_limit",
                f"{self._word(order)}期限{order.term_days}天超过法定最长期限{self.policy.max_term_days}天"
                f"（{self.policy.term_rule}）",
                field="term_days",
            )
        return order.term_days

    def _word(self, order: ControlOrder) -> str:
        w = self.policy.words
        return {
            ControlCode.FREEZE: w.freeze,
            ControlCode.RENEW: w.renew,
            ControlCode.WAITING: w.waiting,
            ControlCode.RELEASE: w.release,
            ControlCode.RELEASE_WAITING: w.release_waiting,
            ControlCode.DEDUCT: "扣划",
            ControlCode.FREEZE_DEDUCT: "冻结并扣划",
        }[order.control_code]

    def _asset(self, conn: sqlite3.Connection, order: ControlOrder) -> Asset:
        if order.asset_id is None:
            raise Refused(
                "missing_field", f"{self._word(order)}须载明{self.policy.words.asset}", status=400, field="asset_id"
            )
        asset = self.book.asset(conn, order.asset_id)
        if asset is None:
            raise Refused(
                "asset_not_found", f"未找到{self.policy.words.asset}{order.asset_id}", status=404, field="asset_id"
            )
        if asset.owner_id_no != order.subject.id_no:
            raise Refused(
                "asset_not_owned",
                f"{self.policy.words.asset}{order.asset_id}不属于证件号码为{order.subject.id_no}的被执行人",
                field="asset_id",
            )
        return asset

    def _own_measure(self, conn: sqlite3.Connection, order: ControlOrder) -> sqlite3.Row:
        if order.measure_id is None:
            raise Refused("missing_field", f"{self._word(order)}须载明原措施编号", status=400, field="measure_id")
        row = conn.execute("SELECT * FROM measures WHERE measure_id = ?", (order.measure_id,)).fetchone()
        if row is None:
            raise Refused("measure_not_found", f"未找到措施{order.measure_id}", status=404, field="measure_id")
        if row["court_code"] != order.court.court_code:
            raise Refused(
                "not_measure_owner",
                f"措施{order.measure_id}由{row['court_name']}采取，本院无权{self._word(order)}",
                status=403,
                field="measure_id",
            )
        if row["owner_id_no"] != order.subject.id_no:
            raise Refused("asset_not_owned", f"措施{order.measure_id}的被执行人与请求不符", field="subject.id_no")
        assert isinstance(row, sqlite3.Row)
        return row

    def _result(
        self,
        conn: sqlite3.Connection,
        order: ControlOrder,
        now_ms: int,
        outcome: Outcome,
        measure_id: str | None,
        *,
        requested: int | None = None,
        controlled: int | None = None,
        transferred: int | None = None,
        reason: str | None = None,
        events: list[str] | None = None,
    ) -> ControlResult:
        return ControlResult(
            request_id=order.request_id,
            control_code=order.control_code,
            outcome=outcome,
            answered_at_ms=now_ms,
            measure=self.view(conn, measure_id) if measure_id is not None else None,
            requested_amount_fen=requested,
            controlled_amount_fen=controlled,
            transferred_amount_fen=transferred,
            reason=reason,
            events=tuple(events or ()),
        )

    def _holders(self, conn: sqlite3.Connection, asset_id: str) -> str:
        rows = conn.execute(
            "SELECT court_name, case_no FROM measures WHERE asset_id = ? AND status = 'active' ORDER BY seq",
            (asset_id,),
        ).fetchall()
        return "、".join(f"{r['court_name']}{r['case_no']}" for r in rows)

    def _shortfall_reason(self, conn: sqlite3.Connection, asset: Asset, requested: int, got: int) -> str | None:
        """Why an amount-based freeze got ``got`` < ``requested`` (余额不足 / 已被他案冻结)."""
        if got >= requested:
            return None
        assert asset.balance_fen is not None
        held = self.controlled_total(conn, asset.asset_id)
        w = self.policy.words.freeze
        if held == 0:
            return f"余额不足：账户余额{yuan(asset.balance_fen)}，请求{w}{yuan(requested)}"
        if asset.balance_fen >= requested:
            return f"已被他案{w}：{yuan(held)}已被{self._holders(conn, asset.asset_id)}在先{w}，可{w}余额{yuan(got)}"
        return (
            f"余额不足且已被他案{w}：账户余额{yuan(asset.balance_fen)}，其中{yuan(held)}已被"
            f"{self._holders(conn, asset.asset_id)}在先{w}"
        )

    def _freeze(self, conn: sqlite3.Connection, order: ControlOrder, now_ms: int) -> ControlResult:
        self._require_document(order)
        asset = self._asset(conn, order)
        term = self._term(order)
        waiting = order.control_code is ControlCode.WAITING
        requested = self._amount(order) if self.policy.amount_based else None
        if order.measure_id is not None:
            raise Refused(
                "unexpected_field", f"{self._word(order)}请求不应载明原措施编号", status=400, field="measure_id"
            )
        active = conn.execute(
            "SELECT COUNT(*) FROM measures WHERE asset_id = ? AND status = 'active'", (asset.asset_id,)
        ).fetchone()[0]

        def put(status: MeasureStatus, controlled: int | None, note: str | None) -> str:
            return self.insert(
                conn,
                asset=asset,
                court_code=order.court.court_code,
                court_name=order.court.court_name,
                case_no=order.court.case_no,
                status=status,
                term_days=term,
                now_ms=now_ms,
                requested=requested,
                controlled=controlled,
                note=note,
                request_id=order.request_id,
                document_no=order.court.document_no,
            )

        if waiting and active:
            holders = self._holders(conn, asset.asset_id)
            note = f"{self.policy.words.waiting}：排在{holders}之后，在先措施解除或失效后自动生效"
            mid = put(MeasureStatus.WAITING, None, note)
            return self._result(conn, order, now_ms, Outcome.QUEUED, mid, requested=requested, controlled=0)
        if self.policy.amount_based:
            assert requested is not None and asset.balance_fen is not None
            free = max(asset.balance_fen - self.controlled_total(conn, asset.asset_id), 0)
            got = min(requested, free)
            reason = self._shortfall_reason(conn, asset, requested, got)
            if got == 0:
                return self._result(
                    conn, order, now_ms, Outcome.NOT_CONTROLLED, None, requested=requested, controlled=0, reason=reason
                )
            mid = put(MeasureStatus.ACTIVE, got, "轮候冻结：无在先冻结，直接生效" if waiting else None)
            outcome = Outcome.CONTROLLED if got == requested else Outcome.PARTIALLY_CONTROLLED
            return self._result(conn, order, now_ms, outcome, mid, requested=requested, controlled=got, reason=reason)
        if active:
            w = self.policy.words
            holders = self._holders(conn, asset.asset_id)
            reason = f"已被他案{w.freeze}：该{w.asset}已被{holders}在先{w.freeze}，可申请{w.waiting}"
            return self._result(conn, order, now_ms, Outcome.NOT_CONTROLLED, None, reason=reason)
        direct = f"{self.policy.words.waiting}：无在先{self.policy.words.freeze}，直接生效"
        mid = put(MeasureStatus.ACTIVE, None, direct if waiting else None)
        return self._result(conn, order, now_ms, Outcome.CONTROLLED, mid)

    def _amount(self, order: ControlOrder) -> int:
        if order.amount_fen is None:
            raise Refused("missing_field", f"{self._word(order)}须载明金额（分）", status=400, field="amount_fen")
        return order.amount_fen

    def _renew(self, conn: sqlite3.Connection, order: ControlOrder, now_ms: int) -> ControlResult:
        self._require_document(order)
        row = self._own_measure(conn, order)
        term = self._term(order)
        w = self.policy.words
        status = MeasureStatus(row["status"])
        if status is MeasureStatus.LAPSED:
            raise Refused(
                "measure_lapsed",
                f"措施{row['measure_id']}已于{day_text(row['expires_at'])}期限届满失效，不能{w.renew}；如需控制请重新{w.freeze}",
                field="measure_id",
            )
        if status is not MeasureStatus.ACTIVE:
            raise Refused(
                "measure_not_active",
                f"措施{row['measure_id']}当前状态为{status.value}，不能{w.renew}",
                field="measure_id",
            )
        new_expiry = int(row["expires_at"]) + term * DAY_MS
        note = f"{w.renew}{term}天，期限至{day_text(new_expiry)}"
        conn.execute(
            "UPDATE measures SET expires_at = ?, term_days = ?, renewals = renewals + 1, note = ? WHERE measure_id = ?",
            (new_expiry, term, note, row["measure_id"]),
        )
        self._event(conn, row["measure_id"], now_ms, "renewed", note)
        return self._result(
            conn, order, now_ms, Outcome.RENEWED, row["measure_id"], controlled=row["controlled_amount"]
        )

    def _release(self, conn: sqlite3.Connection, order: ControlOrder, now_ms: int) -> ControlResult:
        self._require_document(order)
        row = self._own_measure(conn, order)
        w = self.policy.words
        status = MeasureStatus(row["status"])
        if status is MeasureStatus.WAITING:
            raise Refused(
                "measure_waiting",
                f"措施{row['measure_id']}为轮候措施，请使用控制类型05{w.release_waiting}",
                field="control_code",
            )
        if status is not MeasureStatus.ACTIVE:
            raise Refused(
                "measure_not_active",
                f"措施{row['measure_id']}当前状态为{status.value}，无需{w.release}",
                field="measure_id",
            )
        controlled = row["controlled_amount"]
        if self.policy.amount_based and order.amount_fen is not None and order.amount_fen < controlled:
            remaining = int(controlled) - order.amount_fen
            note = f"部分{w.release}{yuan(order.amount_fen)}，继续{w.freeze}{yuan(remaining)}"
            conn.execute(
                "UPDATE measures SET controlled_amount = ?, note = ? WHERE measure_id = ?",
                (remaining, note, row["measure_id"]),
            )
            self._event(conn, row["measure_id"], now_ms, "partially_released", note)
            events = self._promote(conn, row["asset_id"], now_ms)
            return self._result(
                conn, order, now_ms, Outcome.RELEASED, row["measure_id"], controlled=remaining, events=events
            )
        self._end(conn, row["measure_id"], MeasureStatus.RELEASED, now_ms, f"已{w.release}")
        events = self._promote(conn, row["asset_id"], now_ms)
        return self._result(conn, order, now_ms, Outcome.RELEASED, row["measure_id"], controlled=0, events=events)

    def _release_waiting(self, conn: sqlite3.Connection, order: ControlOrder, now_ms: int) -> ControlResult:
        self._require_document(order)
        row = self._own_measure(conn, order)
        if row["status"] != MeasureStatus.WAITING:
            raise Refused(
                "measure_not_waiting",
                f"措施{row['measure_id']}不是轮候中的措施（当前状态{row['status']}），请使用控制类型04",
                field="control_code",
            )
        self._end(conn, row["measure_id"], MeasureStatus.CANCELLED, now_ms, f"已{self.policy.words.release_waiting}")
        return self._result(conn, order, now_ms, Outcome.CANCELLED, row["measure_id"])

    def _deduct(self, conn: sqlite3.Connection, order: ControlOrder, now_ms: int) -> ControlResult:
        self._require_document(order)
        requested = self._amount(order)
        if order.measure_id is None:
            # Direct deduction (直接扣划) from the free balance.
            asset = self._asset(conn, order)
            return self._transfer_free(conn, order, asset, requested, now_ms, record=False)
        row = self._own_measure(conn, order)
        if row["status"] != MeasureStatus.ACTIVE:
            raise Refused(
                "measure_not_active", f"措施{row['measure_id']}当前状态为{row['status']}，不能扣划", field="measure_id"
            )
        if order.asset_id is not None and order.asset_id != row["asset_id"]:
            raise Refused("asset_mismatch", f"措施{row['measure_id']}不在账户{order.asset_id}上", field="asset_id")
        controlled = int(row["controlled_amount"])
        amount = min(requested, controlled)
        reason = None if amount == requested else f"扣划金额超过本案冻结金额，仅扣划已冻结的{yuan(amount)}"
        self.book.debit(conn, row["asset_id"], amount, now_ms, f"{order.court.court_name}扣划 {order.court.case_no}")
        remaining = controlled - amount
        events: list[str] = []
        if remaining == 0:
            self._end(conn, row["measure_id"], MeasureStatus.DEDUCTED, now_ms, f"已扣划{yuan(amount)}，冻结终结")
            events = self._promote(conn, row["asset_id"], now_ms)
        else:
            note = f"已扣划{yuan(amount)}，继续冻结{yuan(remaining)}"
            conn.execute(
                "UPDATE measures SET controlled_amount = ?, note = ? WHERE measure_id = ?",
                (remaining, note, row["measure_id"]),
            )
            self._event(conn, row["measure_id"], now_ms, "deducted", note)
        outcome = Outcome.TRANSFERRED if amount == requested else Outcome.PARTIALLY_TRANSFERRED
        return self._result(
            conn,
            order,
            now_ms,
            outcome,
            row["measure_id"],
            requested=requested,
            controlled=remaining,
            transferred=amount,
            reason=reason,
            events=events,
        )

    def _freeze_deduct(self, conn: sqlite3.Connection, order: ControlOrder, now_ms: int) -> ControlResult:
        self._require_document(order)
        asset = self._asset(conn, order)
        return self._transfer_free(conn, order, asset, self._amount(order), now_ms, record=True)

    def _transfer_free(
        self, conn: sqlite3.Connection, order: ControlOrder, asset: Asset, requested: int, now_ms: int, *, record: bool
    ) -> ControlResult:
        assert asset.balance_fen is not None
        free = max(asset.balance_fen - self.controlled_total(conn, asset.asset_id), 0)
        amount = min(requested, free)
        reason = self._shortfall_reason(conn, asset, requested, amount)
        if reason is not None:
            reason = reason.replace("请求冻结", "请求扣划")
        if amount == 0:
            return self._result(
                conn, order, now_ms, Outcome.NOT_TRANSFERRED, None, requested=requested, transferred=0, reason=reason
            )
        self.book.debit(conn, asset.asset_id, amount, now_ms, f"{order.court.court_name}扣划 {order.court.case_no}")
        mid = None
        if record:
            mid = self.insert(
                conn,
                asset=asset,
                court_code=order.court.court_code,
                court_name=order.court.court_name,
                case_no=order.court.case_no,
                status=MeasureStatus.DEDUCTED,
                term_days=0,
                now_ms=now_ms,
                requested=requested,
                controlled=0,
                note=f"冻结并扣划{yuan(amount)}",
                request_id=order.request_id,
                document_no=order.court.document_no,
            )
        outcome = Outcome.TRANSFERRED if amount == requested else Outcome.PARTIALLY_TRANSFERRED
        return self._result(
            conn, order, now_ms, outcome, mid, requested=requested, controlled=0, transferred=amount, reason=reason
        )
