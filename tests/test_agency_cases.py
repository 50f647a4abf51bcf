"""Case rows (:mod:`hub.agency.cases`) against a SQLite store: filing is one statement when the
case is new, the same filing again is a no-op, and a 案号 never names two parties."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event

from hub.agency import cases as case_rows
from hub.errors import InvalidInput
from hub.plugins.models import Subject
from hub.store import Store, sqlite_url
from hub.store.schema import metadata

NUMBER = "（2026）豫执1号"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(sqlite_url(tmp_path / "hub.db"))
    metadata.create_all(s.engine)
    yield s
    s.close()


def record(party: Subject, filed_at_ms: int = 1_000) -> case_rows.CaseRecord:
    return case_rows.CaseRecord(
        case_number=NUMBER,
        court="豫",
        party=party,
        amount_fen=500_000,
        judge_name="李明",
        judge_phone="0370-3211234",
        officer_ids=("豫-0001",),
        filed_at_ms=filed_at_ms,
    )


def test_filing_once_again_and_with_another_party(store: Store) -> None:
    zhang = Subject("张三", "410102199001011234")
    li = Subject("李四", "410102199202021234")
    statements: list[str] = []

    def insert(conn: Connection, rec: case_rows.CaseRecord) -> bool:
        statements.clear()
        conn.info["trace"] = True
        return case_rows.insert_case(conn, rec)

    @event.listens_for(store.engine, "before_cursor_execute")
    def trace(conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if conn.info.get("trace"):
            statements.append(statement)

    assert store.write_sync(lambda conn: insert(conn, record(zhang))) is True
    assert len(statements) == 1 and statements[0].startswith("INSERT")
    # The same filing again (e.g. a retried admin call): stored once, nothing changes.
    assert store.write_sync(lambda conn: insert(conn, record(zhang, filed_at_ms=2_000))) is False
    stored = store.read_sync(lambda conn: case_rows.load_case(conn, NUMBER))
    assert stored is not None and stored.party == zhang and stored.filed_at_ms == 1_000
    with pytest.raises(InvalidInput, match="already filed with 被执行人 张三"):
        store.write_sync(lambda conn: insert(conn, record(li)))
    stored = store.read_sync(lambda conn: case_rows.load_case(conn, NUMBER))
    assert stored is not None and stored.party == zhang
