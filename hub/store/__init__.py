"""The node's store: SQLite (WAL) by default, PostgreSQL by URL.

All writes go through one dedicated writer thread. Callers submit a function that takes a
connection; the writer drains whatever is queued into one transaction (group commit), running
each function inside its own savepoint so one failing write cannot spoil the others, and commits
once. A burst of frames from several links therefore costs one fsync, not one per frame. Reads run
on a small thread pool with their own connections (WAL lets them proceed during a write).

The event loop never blocks on the database: ``await store.write(fn)`` / ``await store.read(fn)``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from hub.errors import StoreError

T = TypeVar("T")
WriteFn = Callable[[Connection], T]

# Upper bound on writes coalesced into one transaction; keeps latency bounded under load.
MAX_GROUP = 256


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """Create the engine with the pragmas durability needs (WAL, synchronous=FULL on SQLite)."""
    if url.startswith("sqlite"):
        # A pooled connection is used by one thread at a time; reusing it saves the ~1.7 ms of
        # opening a SQLite file and setting its pragmas on every read (the link pump reads often).
        engine = create_engine(
            url, poolclass=QueuePool, pool_size=4, max_overflow=8, connect_args={"check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (savepoints need it).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Writers take the write lock up front: another process (a worker, the CLI) may write
            # too, and a deferred transaction that later upgrades to a write can deadlock.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("writer") else "BEGIN")

        return engine
    return create_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=True)


class _Job:
    __slots__ = ("fn", "future", "loop")

    def __init__(self, fn: WriteFn[Any], future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop


def _resolve(future: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


class Store:
    """Async facade over a synchronous engine, with a single writer thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-read")
        self.commits = 0  # transactions committed by the writer (for metrics and benchmarks)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def migrate(self) -> None:
        """Apply Alembic migrations up to head (idempotent)."""
        from hub.store.migrate import upgrade

        upgrade(self.engine)

    def start(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._run_writer, name="store-writer", daemon=True)
            self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        self._readers.shutdown(wait=True)
        self.engine.dispose()

    async def write(self, fn: WriteFn[T]) -> T:
        """Run ``fn(conn)`` in the writer's next transaction; returns after the commit."""
        return await self.submit(fn)

    def submit(self, fn: WriteFn[T]) -> asyncio.Future[T]:
        """Queue ``fn`` now and return a future resolved after its commit.

        Writes are committed in the order they are submitted, so a caller can queue several
        (one per received batch) and await them in order without serialising their commits.
        """
        if self._writer is None:
            raise StoreError("store writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, future, loop))
        return future

    async def read(self, fn: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_sync, fn)

    def read_sync(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            return fn(conn)

    def write_sync(self, fn: WriteFn[T]) -> T:
        """One transaction outside the writer thread (CLI commands while the node is stopped)."""
        try:
            with self.engine.connect() as conn:
                conn.info["writer"] = True
                with conn.begin():
                    return fn(conn)
        except OperationalError as exc:
            raise StoreError(f"store write failed: {exc.orig}") from None

    def _connect_writer(self) -> Connection:
        conn = self.engine.connect()
        conn.info["writer"] = True
        return conn

    def _run_writer(self) -> None:
        conn = self._connect_writer()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < MAX_GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                conn = self._commit_group(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit_group(self, conn: Connection, batch: list[_Job]) -> Connection:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            with conn.begin() as trans:
                if len(batch) == 1:
                    # Alone in the transaction, a write needs no savepoint: its failure rolls back
                    # the transaction, which holds nothing else.
                    try:
                        outcomes.append((batch[0].fn(conn), None))
                    except Exception as failure:
                        outcomes.append((None, failure))
                        trans.rollback()
                else:
                    for job in batch:
                        try:
                            with conn.begin_nested():
                                outcomes.append((job.fn(conn), None))
                        except Exception as failure:  # one write's failure is that caller's alone
                            outcomes.append((None, failure))
            self.commits += 1
        except SQLAlchemyError as exc:
            # The commit itself failed (disk full, lost connection): nothing of the group is kept.
            err = StoreError(f"store commit failed: {getattr(exc, 'orig', exc)}")
            for job in batch:
                job.loop.call_soon_threadsafe(_resolve, job.future, None, err)
            try:
                conn.close()
            finally:
                conn = self._connect_writer()
            return conn
        for job, (value, error) in zip(batch, outcomes, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.future, value, error)
        return conn
