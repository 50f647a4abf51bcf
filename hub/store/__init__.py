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
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from hub.errors import StoreError

T = TypeVar("T")
log = logging.getLogger(__name__)
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
            raise self._write_error(exc) from None

    @property
    def where(self) -> str:
        """The database named in errors: its file for SQLite, its URL without password otherwise."""
        url = self.engine.url
        if self.is_sqlite:
            return str(url.database or ":memory:")
        return url.render_as_string(hide_password=True)

    def _write_error(self, exc: BaseException) -> StoreError:
        """The StoreError for a failed write: disk full is named as such, with the database."""
        cause = _root_cause(exc)
        if _is_disk_full(exc):
            return StoreError(
                f"disk full: the store {self.where} cannot grow ({cause}); writes are refused until space is "
                "freed, reads go on",
                reason="disk_full",
            )
        return StoreError(f"store commit failed on {self.where}: {cause}")

    def _connect_writer(self) -> Connection:
        conn = self.engine.connect()
        conn.info["writer"] = True
        return conn

    def _run_writer(self) -> None:
        conn: Connection | None = None
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
            if conn is not None:
                conn.close()

    def _commit_group(self, conn: Connection | None, batch: list[_Job]) -> Connection | None:
        """Commit one group of jobs; returns the connection for the next group (None: reconnect).

        Never raises: whatever goes wrong fails this group's jobs and the writer carries on, so a
        full disk refuses writes while it lasts and they resume, without a restart, once space is
        freed. A job's own error is that caller's alone — unless the database has rolled back the
        whole transaction under it (SQLite does so on SQLITE_FULL inside a statement): then the
        jobs before it, whose savepoints were released, are gone too, and every job of the group
        must fail rather than be reported committed.
        """
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            if conn is None:
                conn = self._connect_writer()
            with conn.begin() as trans:
                if len(batch) == 1:
                    # Alone in the transaction, a write needs no savepoint: its failure rolls back
                    # the transaction, which holds nothing else.
                    try:
                        outcomes.append((batch[0].fn(conn), None))
                    except Exception as failure:
                        if _is_disk_full(failure):
                            raise _GroupLost(failure) from failure
                        outcomes.append((None, failure))
                        trans.rollback()
                else:
                    for job in batch:
                        try:
                            with conn.begin_nested():
                                outcomes.append((job.fn(conn), None))
                        except Exception as failure:  # one write's failure is that caller's alone
                            if _is_disk_full(failure) or not _in_transaction(conn):
                                raise _GroupLost(failure) from failure
                            outcomes.append((None, failure))
            self.commits += 1
        except Exception as exc:
            # The group failed as a whole (disk full, lost connection): nothing of it is kept.
            cause = exc.failure if isinstance(exc, _GroupLost) else exc
            err = self._write_error(cause)
            log.warning("store writer: %s (%d writes refused)", err, len(batch))
            for job in batch:
                job.loop.call_soon_threadsafe(_resolve, job.future, None, err)
            if conn is not None:
                try:
                    conn.close()
                except Exception as close_exc:  # the next group reconnects either way
                    log.warning("store writer: closing the failed connection: %s", close_exc)
            return None
        for job, (value, error) in zip(batch, outcomes, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.future, value, error)
        return conn


class _GroupLost(Exception):
    """The database dropped the group's whole transaction; every job of the group fails."""

    def __init__(self, failure: BaseException) -> None:
        super().__init__(str(failure))
        self.failure = failure


# SQLite's primary result code for "database or disk is full"; PostgreSQL's SQLSTATE disk_full.
SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (a failed savepoint
    rollback hides the SQLITE_FULL that caused it in its context)."""
    out: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop(0)
        if any(cur is seen for seen in out):
            continue
        out.append(cur)
        for nxt in (getattr(cur, "orig", None), cur.__cause__, cur.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return out


def _is_disk_full(exc: BaseException) -> bool:
    for e in _chain(exc):
        if getattr(e, "sqlite_errorcode", None) == SQLITE_FULL or getattr(e, "pgcode", None) == PG_DISK_FULL:
            return True
        text = str(e)
        if "database or disk is full" in text or "No space left on device" in text:
            return True
    return False


def _root_cause(exc: BaseException) -> str:
    """The driver's message for the first disk-full error in the chain, else the outermost's."""
    chain = _chain(exc)
    for e in chain:
        if getattr(e, "sqlite_errorcode", None) == SQLITE_FULL or getattr(e, "pgcode", None) == PG_DISK_FULL:
            return str(e).strip()
    first = chain[0]
    orig = getattr(first, "orig", None)
    return str(orig if orig is not None else first).strip()


def _in_transaction(conn: Connection) -> bool:
    """Whether the database (not SQLAlchemy's bookkeeping) still has the transaction open."""
    dbapi = conn.connection.dbapi_connection
    state = getattr(dbapi, "in_transaction", None)
    return True if state is None else bool(state)
