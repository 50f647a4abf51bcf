"""The store: migrations match the table metadata, and the writer's group commit keeps its promises.

Runs on a real SQLite file and on a real throwaway PostgreSQL database (``fresh_postgres_url``).
Group commit: concurrent writes share transactions, one failing write (a Python exception or a
database error) loses only its own changes, writes commit in submission order, and nothing queued
before ``close`` is lost while nothing is accepted after it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, MetaData, func, insert, inspect, select
from sqlalchemy.exc import IntegrityError

import hub.store.agency_schema  # registers agency_jobs on the shared metadata, as hub.jobs does
from hub.errors import StoreError
from hub.store import Store, sqlite_url
from hub.store.schema import metadata, node_meta

assert hub.store.agency_schema.agency_jobs.metadata is metadata


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "store.db")
    fresh: str = request.getfixturevalue("fresh_postgres_url")
    return fresh


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = Store(url)
    s.migrate()
    s.start()
    yield s
    s.close()


def _count(store: Store) -> int:
    return int(store.read_sync(lambda c: c.execute(select(func.count()).select_from(node_meta)).scalar_one()))


def _keys(store: Store) -> set[str]:
    return set(store.read_sync(lambda c: c.execute(select(node_meta.c.key)).scalars().all()))


def _put(key: str, value: str = "v") -> Any:
    def fn(conn: Connection) -> str:
        conn.execute(insert(node_meta).values(key=key, value=value))
        return key

    return fn


# --------------------------------------------------------------------------- schema


def _described(md: MetaData) -> dict[str, dict[str, object]]:
    return {
        name: {
            "columns": {c.name: c.nullable for c in table.columns},
            "primary_key": [c.name for c in table.primary_key.columns],
            "indexes": sorted((ix.name, tuple(c.name for c in ix.columns)) for ix in table.indexes if ix.name),
        }
        for name, table in md.tables.items()
    }


def _migrated(store: Store) -> dict[str, dict[str, object]]:
    insp = inspect(store.engine)
    out: dict[str, dict[str, object]] = {}
    for name in insp.get_table_names():
        if name == "alembic_version":
            continue
        out[name] = {
            "columns": {c["name"]: c["nullable"] for c in insp.get_columns(name)},
            "primary_key": list(insp.get_pk_constraint(name)["constrained_columns"]),
            "indexes": sorted(
                (str(ix["name"]), tuple(str(c) for c in ix["column_names"])) for ix in insp.get_indexes(name)
            ),
        }
    return out


def test_migrations_create_exactly_the_metadata_tables(url: str) -> None:
    s = Store(url)
    try:
        s.migrate()
        s.migrate()  # idempotent
        migrated, expected = _migrated(s), _described(metadata)
        for name in sorted(set(expected) & set(migrated)):
            assert migrated[name] == expected[name], name
        assert sorted(migrated) == sorted(expected), (
            f"tables missing from migrations: {sorted(set(expected) - set(migrated))}; "
            f"tables not in metadata: {sorted(set(migrated) - set(expected))}"
        )
    finally:
        s.close()


# --------------------------------------------------------------------------- group commit


async def test_concurrent_writes_all_commit_in_shared_transactions(store: Store) -> None:
    before = store.commits
    results = await asyncio.gather(*(store.write(_put(f"k{i:03d}", str(i))) for i in range(200)))
    assert results == [f"k{i:03d}" for i in range(200)]
    assert _count(store) == 200
    commits = store.commits - before
    assert 1 <= commits < 200, commits


async def _hold_writer(store: Store) -> tuple[asyncio.Future[None], threading.Event]:
    """Occupy the writer thread until the returned event is set, so later submits share one group."""
    started, release = threading.Event(), threading.Event()

    def block(_conn: Connection) -> None:
        started.set()
        release.wait(10)

    fut = store.submit(block)
    assert await asyncio.to_thread(started.wait, 10)
    return fut, release


async def test_failing_write_does_not_spoil_its_group(store: Store) -> None:
    blocker, release = await _hold_writer(store)
    commits = store.commits

    def raises(conn: Connection) -> None:
        conn.execute(insert(node_meta).values(key="b1", value="x"))
        conn.execute(insert(node_meta).values(key="b2", value="x"))
        raise ValueError("business rule refused")

    futures = [
        store.submit(_put("a")),
        store.submit(raises),
        store.submit(_put("c")),
        store.submit(_put("a", "duplicate")),  # a database error (primary key) after a's insert
        store.submit(_put("e")),
    ]
    release.set()
    await blocker
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert store.commits == commits + 2  # the blocker's group, then one group for all five
    assert outcomes[0] == "a" and outcomes[2] == "c" and outcomes[4] == "e"
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "business rule refused"
    assert isinstance(outcomes[3], IntegrityError), outcomes[3]
    assert _keys(store) == {"a", "c", "e"}
    value = store.read_sync(lambda c: c.execute(select(node_meta.c.value).where(node_meta.c.key == "a")).scalar())
    assert value == "v"
    # The writer is healthy afterwards.
    assert await store.write(_put("f")) == "f"


async def test_submit_preserves_order(store: Store) -> None:
    ran: list[int] = []

    def step(i: int) -> Any:
        def fn(conn: Connection) -> int:
            ran.append(i)
            seen = int(conn.execute(select(func.count()).select_from(node_meta)).scalar_one())
            conn.execute(insert(node_meta).values(key=f"k{i:03d}", value=str(seen)))
            return seen

        return fn

    futures = [store.submit(step(i)) for i in range(150)]
    # Awaited in reverse: order comes from submission, not from awaiting.
    results = [await f for f in reversed(futures)][::-1]
    assert ran == list(range(150))
    assert results == list(range(150))  # each write saw exactly the ones submitted before it


async def test_close_commits_what_was_queued_and_refuses_later_writes(url: str) -> None:
    s = Store(url)
    s.migrate()
    s.start()
    futures = [s.submit(_put(f"q{i}")) for i in range(50)]
    s.close()
    assert [await f for f in futures] == [f"q{i}" for i in range(50)]
    with pytest.raises(StoreError):
        await s.write(_put("late"))
    with pytest.raises(StoreError):
        s.submit(_put("late"))
    reopened = Store(url)
    try:
        assert _keys(reopened) == {f"q{i}" for i in range(50)}
    finally:
        reopened.close()


async def test_write_before_start_is_refused(url: str) -> None:
    s = Store(url)
    try:
        with pytest.raises(StoreError):
            await s.write(_put("early"))
    finally:
        s.close()


async def test_reads_see_committed_writes(store: Store) -> None:
    await store.write(_put("x", "1"))
    value = await store.read(lambda c: c.execute(select(node_meta.c.value).where(node_meta.c.key == "x")).scalar())
    assert value == "1"
