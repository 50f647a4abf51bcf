"""The audit chain in a real SQLite store: append, verify, and every kind of tampering detected.

Entries with a raw envelope carry a real sealed envelope, and ``verify`` is given a real seal
check, so a forger who rewrites the chain hashes consistently is still caught by the seals.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Executable, delete, func, select, update

from hub.audit import GENESIS, AuditLog, head, verify
from hub.codes import CourtCode
from hub.federation.envelope import Target, build
from hub.keys import CourtKey
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.proto.courthub.v1 import payloads_pb2 as pb
from hub.seal import seal
from hub.seal import verify as verify_seal
from hub.store import Store, sqlite_url
from hub.store.schema import audit

ORIGIN = CourtCode.parse("豫1402")
KEY = CourtKey.generate()
T0 = 1_780_000_000_000


def _sealed(n: int) -> bytes:
    env = build(KEY, ORIGIN, "ping", Target.to_court(CourtCode.parse("豫14")), pb.PingPayload(sent_at_ms=n), now_ms=T0)
    return env.SerializeToString()


def check_seal(raw: bytes) -> None:
    env = epb.Envelope()
    env.ParseFromString(raw)
    verify_seal(env.seal, env.header, KEY.public, kid=str(ORIGIN))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(sqlite_url(tmp_path / "store.db"))
    s.migrate()
    yield s
    s.close()


def _append(store: Store, n: int, *, start: int = 0) -> list[int]:
    """Append ``n`` entries in one transaction; every third carries a sealed envelope."""

    def work(conn: Connection) -> list[int]:
        log = AuditLog(conn)
        seqs = []
        for i in range(start, start + n):
            seqs.append(
                log.append(
                    "received" if i % 3 == 0 else "sent",
                    T0 + i,
                    envelope_id=f"{i:032x}",
                    kind="ping",
                    origin=str(ORIGIN),
                    peer="豫14",
                    detail={"n": i, "note": "送达"},
                    raw=_sealed(i) if i % 3 == 0 else None,
                )
            )
        log.flush()
        return seqs

    return store.write_sync(work)


def _verify(store: Store) -> tuple[bool, int | None, str, int, int]:
    r = store.read_sync(lambda conn: verify(conn, check_seal))
    return r.ok, r.bad_seq, r.problem, r.entries, r.seals_checked


def _exec(store: Store, stmt: Executable) -> None:
    store.write_sync(lambda conn: conn.execute(stmt))


# --------------------------------------------------------------------------- building the chain


def test_empty_log_verifies(store: Store) -> None:
    assert _verify(store) == (True, None, "", 0, 0)


def test_append_and_verify(store: Store) -> None:
    assert store.read_sync(head) == (0, GENESIS)
    assert _append(store, 10) == list(range(1, 11))
    assert _append(store, 5, start=10) == list(range(11, 16))  # a new AuditLog continues the chain
    ok, bad, problem, entries, seals = _verify(store)
    assert (ok, bad, problem, entries) == (True, None, "", 15)
    assert seals == 5  # entries 0, 3, 6, 9, 12 carry raw envelopes
    rows = store.read_sync(lambda c: c.execute(select(audit).order_by(audit.c.seq)).all())
    assert rows[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash
    assert store.read_sync(head) == (15, rows[-1].hash)
    assert len({r.hash for r in rows}) == 15


def test_verify_across_read_batches(store: Store) -> None:
    _append(store, 1200)
    assert _verify(store)[:2] == (True, None)
    _exec(store, update(audit).where(audit.c.seq == 1100).values(detail='{"n": 0}'))
    ok, bad, *_ = _verify(store)
    assert (ok, bad) == (False, 1100)


def test_flush_is_one_multi_row_write_inside_the_callers_transaction(store: Store) -> None:
    _append(store, 3)

    def work_then_fail(conn: Connection) -> None:
        log = AuditLog(conn)
        log.append("sent", T0, detail={"x": 1})
        log.flush()
        raise RuntimeError("business change failed")

    with pytest.raises(RuntimeError):
        store.write_sync(work_then_fail)
    # The entry went with the transaction that failed.
    assert store.read_sync(lambda c: c.execute(select(func.count()).select_from(audit)).scalar()) == 3
    assert _verify(store)[:2] == (True, None)


# --------------------------------------------------------------------------- tampering


def test_updated_detail_is_detected(store: Store) -> None:
    _append(store, 8)
    _exec(store, update(audit).where(audit.c.seq == 5).values(detail='{"n": 999}'))
    ok, bad, problem, *_ = _verify(store)
    assert (ok, bad) == (False, 5)
    assert "altered" in problem


@pytest.mark.parametrize("column", ["action", "at_ms", "envelope_id", "kind", "origin", "peer"])
def test_any_updated_field_is_detected(store: Store, column: str) -> None:
    _append(store, 6)
    value: object = 1 if column == "at_ms" else "x"
    _exec(store, update(audit).where(audit.c.seq == 4).values({column: value}))
    assert _verify(store)[:2] == (False, 4)


def test_deleted_middle_row_is_detected(store: Store) -> None:
    _append(store, 8)
    _exec(store, delete(audit).where(audit.c.seq == 4))
    ok, bad, problem, *_ = _verify(store)
    assert not ok
    assert bad == 5  # the first row found out of line
    assert "entry 4 is missing" in problem


def test_deleted_first_row_is_detected(store: Store) -> None:
    _append(store, 4)
    _exec(store, delete(audit).where(audit.c.seq == 1))
    ok, bad, problem, *_ = _verify(store)
    assert (ok, bad) == (False, 2)
    assert "entry 1 is missing" in problem


def test_renumbered_rows_after_deletion_are_detected(store: Store) -> None:
    # Delete entry 4 and shift the later ones down so the sequence looks unbroken.
    _append(store, 8)
    _exec(store, delete(audit).where(audit.c.seq == 4))
    for seq in range(5, 9):
        _exec(store, update(audit).where(audit.c.seq == seq).values(seq=seq - 1))
    ok, bad, *_ = _verify(store)
    assert (ok, bad) == (False, 4)


def test_changed_raw_blob_is_detected(store: Store) -> None:
    _append(store, 8)  # entries 1, 4, 7 carry raw envelopes
    raw = store.read_sync(lambda c: c.execute(select(audit.c.raw).where(audit.c.seq == 4)).scalar_one())
    assert raw is not None
    _exec(store, update(audit).where(audit.c.seq == 4).values(raw=raw[:-1] + bytes([raw[-1] ^ 1])))
    ok, bad, problem, *_ = _verify(store)
    assert (ok, bad) == (False, 4)
    assert "altered" in problem


def test_rechained_forgery_is_caught_by_the_seal(store: Store) -> None:
    # A forger with database access replaces a raw envelope and recomputes every hash after it:
    # the chain is consistent again, but the forged envelope's seal does not verify.
    env = epb.Envelope()
    env.ParseFromString(_sealed(0))
    mallory = CourtKey.generate()
    forged = epb.Envelope(header=env.header, payload=env.payload, seal=seal(mallory, str(ORIGIN), env.header))

    def rewrite(conn: Connection) -> None:
        log = AuditLog(conn)
        log.append("received", T0, envelope_id="0" * 32, raw=forged.SerializeToString())
        log.append("sent", T0 + 1, detail={"n": 1})
        log.flush()

    store.write_sync(rewrite)
    ok, bad, problem, _entries, seals = _verify(store)
    assert (ok, bad, seals) == (False, 1, 0)
    assert "seal check failed" in problem


def test_swapped_hashes_are_detected(store: Store) -> None:
    _append(store, 8)
    rows = dict(store.read_sync(lambda c: c.execute(select(audit.c.seq, audit.c.hash)).all()))
    _exec(store, update(audit).where(audit.c.seq == 3).values(hash=rows[6]))
    _exec(store, update(audit).where(audit.c.seq == 6).values(hash=rows[3]))
    ok, bad, *_ = _verify(store)
    assert (ok, bad) == (False, 3)


def test_swapped_rows_are_detected(store: Store) -> None:
    _append(store, 8)
    _exec(store, update(audit).where(audit.c.seq == 3).values(seq=-3))
    _exec(store, update(audit).where(audit.c.seq == 6).values(seq=3))
    _exec(store, update(audit).where(audit.c.seq == -3).values(seq=6))
    ok, bad, *_ = _verify(store)
    assert (ok, bad) == (False, 3)


def test_inserted_row_is_detected(store: Store) -> None:
    _append(store, 5)
    row = store.read_sync(lambda c: c.execute(select(audit).where(audit.c.seq == 5)).one())
    for seq in (5, 4):
        _exec(store, update(audit).where(audit.c.seq == seq).values(seq=seq + 1))
    forged = {**row._asdict(), "seq": 4, "action": "decided", "detail": '{"forged": true}'}
    _exec(store, audit.insert().values(forged))
    ok, bad, *_ = _verify(store)
    assert (ok, bad) == (False, 4)


# --------------------------------------------------------------------------- mark and rollback


def test_mark_and_rollback_keep_the_chain_consistent(store: Store) -> None:
    _append(store, 2)

    def work(conn: Connection) -> list[int]:
        log = AuditLog(conn)
        a = log.append("sent", T0, detail={"keep": 1})
        mark = log.mark()
        log.append("decided", T0, detail={"undone": 1})
        log.append("decided", T0, detail={"undone": 2}, raw=_sealed(7))
        log.rollback(mark)
        b = log.append("rejected", T0, detail={"keep": 2})
        # A mark with nothing after it is a no-op to roll back to.
        log.rollback(log.mark())
        c = log.append("sent", T0, detail={"keep": 3})
        log.flush()
        return [a, b, c]

    assert store.write_sync(work) == [3, 4, 5]
    assert _verify(store)[:2] == (True, None)
    details = store.read_sync(lambda c: c.execute(select(audit.c.detail).order_by(audit.c.seq)).scalars().all())
    assert details[2:] == ['{"keep": 1}', '{"keep": 2}', '{"keep": 3}']
    assert _append(store, 1, start=100) == [6]
    assert _verify(store)[:2] == (True, None)


def test_rollback_after_a_flush_inside_a_savepoint(store: Store) -> None:
    # The pattern exchange._deliver uses: flush, mark, write in a savepoint, roll both back.
    def work(conn: Connection) -> None:
        log = AuditLog(conn)
        log.append("received", T0, detail={"n": 1})
        log.flush()
        mark = log.mark()
        try:
            with conn.begin_nested():
                log.append("decided", T0, detail={"n": 2})
                log.flush()
                raise ValueError("handler failed")
        except ValueError:
            log.rollback(mark)
        log.append("rejected", T0, detail={"n": 3})
        log.flush()

    store.write_sync(work)
    assert _verify(store)[:4] == (True, None, "", 2)
