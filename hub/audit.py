"""The audit chain (全程留痕): a hash-chained, append-only log of what the node sent, relayed,
received, rejected and decided, with the raw sealed envelopes.

``hash(n) = SHA-256(hash(n-1) ‖ canonical JSON of entry n)``, where the entry includes the SHA-256
of its raw envelope. Changing, inserting or deleting any row breaks every later hash;
``verify`` re-checks the chain and every seal offline and names the first bad entry. A node sends
its signed chain head to its parent, so rewriting a child's whole history is detectable upstream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from hub.store.schema import audit

GENESIS = "0" * 64


def _entry_hash(prev: str, seq: int, at_ms: int, action: str, fields: dict[str, Any], raw: bytes | None) -> str:
    doc = {
        "seq": seq,
        "at": at_ms,
        "action": action,
        "envelope_id": fields.get("envelope_id"),
        "kind": fields.get("kind"),
        "origin": fields.get("origin"),
        "peer": fields.get("peer"),
        "detail": fields.get("detail") or "{}",
        "raw": hashlib.sha256(raw).hexdigest() if raw is not None else None,
    }
    canonical = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(prev.encode("ascii") + canonical.encode("utf-8")).hexdigest()


class AuditLog:
    """Appends entries inside the caller's transaction, reading the chain head once.

    Entries are buffered and written by ``flush`` in one statement: a received batch of a hundred
    envelopes costs one insert, not a hundred.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.seq, self.head = head(conn)
        self._rows: list[dict[str, Any]] = []

    def append(
        self,
        action: str,
        at_ms: int,
        *,
        envelope_id: str | None = None,
        kind: str | None = None,
        origin: str | None = None,
        peer: str | None = None,
        detail: dict[str, Any] | None = None,
        raw: bytes | None = None,
    ) -> int:
        seq = self.seq + 1
        fields = {
            "envelope_id": envelope_id,
            "kind": kind,
            "origin": origin,
            "peer": peer,
            "detail": json.dumps(detail or {}, sort_keys=True, ensure_ascii=False),
        }
        digest = _entry_hash(self.head, seq, at_ms, action, fields, raw)
        self._rows.append(
            {"seq": seq, "at_ms": at_ms, "action": action, "raw": raw, "prev_hash": self.head, "hash": digest, **fields}
        )
        self.seq, self.head = seq, digest
        return seq

    def mark(self) -> tuple[int, str, int]:
        """A point to roll the buffer back to if the work since then is undone (a savepoint)."""
        return self.seq, self.head, len(self._rows)

    def rollback(self, mark: tuple[int, str, int]) -> None:
        self.seq, self.head, n = mark
        del self._rows[n:]

    def flush(self) -> None:
        """Write the buffered entries (one multi-row insert); call before the transaction ends."""
        if self._rows:
            self.conn.execute(insert(audit), self._rows)
            self._rows.clear()


def head(conn: Connection) -> tuple[int, str]:
    """The chain head: (last seq, its hash), or (0, GENESIS) for an empty log.

    Read in every transaction that appends, so it is plain SQL: the statement machinery of a
    Core ``select`` cost more than the query itself on the envelope path.
    """
    row = conn.exec_driver_sql("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


@dataclass
class VerifyResult:
    entries: int
    seals_checked: int
    ok: bool
    bad_seq: int | None = None
    problem: str = ""


def iter_entries(conn: Connection, batch: int = 1000) -> Iterator[Any]:
    last = 0
    while True:
        rows = conn.execute(select(audit).where(audit.c.seq > last).order_by(audit.c.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(conn: Connection, check_seal: Callable[[bytes], None]) -> VerifyResult:
    """Re-check the chain and, for entries with a raw envelope, its seal (``check_seal`` raises)."""
    prev, expected_seq, seals = GENESIS, 1, 0
    count = 0
    for row in iter_entries(conn):
        count += 1
        if row.seq != expected_seq:
            return VerifyResult(count, seals, False, row.seq, f"entry {expected_seq} is missing (found {row.seq})")
        if row.prev_hash != prev:
            return VerifyResult(count, seals, False, row.seq, "previous-hash link does not match the entry before")
        fields = {k: getattr(row, k) for k in ("envelope_id", "kind", "origin", "peer", "detail")}
        if _entry_hash(prev, row.seq, row.at_ms, row.action, fields, row.raw) != row.hash:
            return VerifyResult(count, seals, False, row.seq, "content does not match its hash (entry altered)")
        if row.raw is not None:
            try:
                check_seal(row.raw)
            except Exception as exc:
                return VerifyResult(count, seals, False, row.seq, f"seal check failed: {exc}")
            seals += 1
        prev, expected_seq = row.hash, expected_seq + 1
    return VerifyResult(count, seals, True)
