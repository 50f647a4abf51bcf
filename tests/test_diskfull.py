"""Disk full on a node's volume (issue 6, item 3): writes fail cleanly, nothing accepted is lost,
writes resume when space returns — without a restart.

The child's database lives on a real, small tmpfs (``mount -t tmpfs -o size=…``), filled to the
last byte with a ballast file; deleting the ballast frees the space. Where mounting is not
permitted, the same SQLITE_FULL path is reached by capping the database with
``PRAGMA max_page_count`` on every store connection (never skipped).

What must hold while the disk is full: the node's own writes raise ``StoreError`` naming the disk
and the database; a batch from the parent is not committed, hence not acked — the link closes and
the parent keeps the envelopes; reads (status, inbox) go on. After the ballast is gone: the parent
resends, every envelope is delivered exactly once, the node's own writes work, ``PRAGMA
integrity_check`` is ok and ``court-hub audit verify`` finds the chain intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from inproc import count, until
from sqlalchemy import event

from hub import provision
from hub.clock import FixedClock, SystemClock
from hub.config import Home
from hub.errors import StoreError
from hub.federation.envelope import Target
from hub.netutil import free_port
from hub.node import Node
from hub.proto.courthub.v1 import payloads_pb2 as ppb
from hub.store import Store
from hub.store.schema import audit, inbox, outbox

VOLUME_BYTES = 24 << 20
BEFORE, DURING = 20, 150


class Volume:
    """A small volume for one database: a real tmpfs if this process may mount, else a page cap."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ballast = path / "ballast"
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={VOLUME_BYTES}", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        self.mounted = done.returncode == 0
        self._cap: int | None = None  # fallback: max_page_count applied to each store connection

    def database_url(self) -> str:
        return f"sqlite:///{self.path / 'store.db'}"

    def watch(self, store: Store) -> None:
        """Fallback only: every connection of ``store`` gets the current cap when checked out
        (the writer takes a pooled connection again after a failed group)."""

        @event.listens_for(store.engine, "checkout")
        def _cap(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            dbapi_conn.execute(f"PRAGMA max_page_count={self._cap or 1073741823}")

    async def fill(self, store: Store) -> None:
        if self.mounted:
            fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT, 0o600)
            block = b"\0" * (1 << 16)
            try:
                while True:
                    os.write(fd, block)
            except OSError as exc:
                assert exc.errno == 28  # ENOSPC: the volume is full
                # What is left (less than one block) goes too, byte by byte in 4 KiB steps.
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, block[:4096])
            finally:
                os.close(fd)
            return
        pages = await store.read(lambda c: int(c.exec_driver_sql("PRAGMA page_count").scalar_one()))
        self._cap = pages
        await store.write(lambda c: c.exec_driver_sql(f"PRAGMA max_page_count={pages}"))

    async def free(self, store: Store) -> None:
        if self.mounted:
            self.ballast.unlink()
            return
        self._cap = None
        await store.write(lambda c: c.exec_driver_sql("PRAGMA max_page_count=1073741823"))

    def close(self) -> None:
        if self.mounted:
            done = subprocess.run(["umount", str(self.path)], capture_output=True, check=False)
            if done.returncode != 0:  # something still holds a file: detach it anyway
                subprocess.run(["umount", "-l", str(self.path)], check=True)


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Volume]:
    vol = Volume(tmp_path / "vol")
    try:
        yield vol
    finally:
        vol.close()


@contextlib.asynccontextmanager
async def pair(base: Path, child_store_url: str) -> AsyncIterator[tuple[Node, Node]]:
    """豫 and its child 豫14 (whose database is at ``child_store_url``), started in this loop."""
    clock = FixedClock(SystemClock().now_ms())
    nodes: list[Node] = []
    try:
        parent_home = base / "豫"
        provision.init_node(parent_home, "豫", "河南省高级人民法院", f"127.0.0.1:{free_port()}", root=True)
        child_home = base / "豫14"
        provision.init_node(
            child_home, "豫14", "商丘市中级人民法院", f"127.0.0.1:{free_port()}", store_url=child_store_url
        )
        parent = Node(Home(parent_home), clock=clock)
        await parent.start()
        nodes.append(parent)
        token = await asyncio.to_thread(provision.issue_token, parent_home, "豫14", 600)
        await provision.join(child_home, token.token)
        home = Home(child_home)
        config = home.load()
        config.federation.reconnect_max_s = 0.5  # redial quickly once the disk has room again
        home.save(config)
        child = Node(home, clock=clock)
        await child.start()
        nodes.append(child)
        yield parent, child
    finally:
        for node in reversed(nodes):
            await node.stop(0.5)


async def test_disk_full_refuses_writes_keeps_reads_and_recovers_without_restart(
    tmp_path: Path, volume: Volume, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    database = volume.path / "store.db"
    async with pair(tmp_path, volume.database_url()) as (parent, child):
        if not volume.mounted:
            volume.watch(child.store)
        await until(lambda: parent.router.parent is None and child.router.parent in child.sessions, "link up")
        to_parent = Target.to_court(parent.me)
        own_to_parent = count(outbox, outbox.c.next_hop == str(parent.me), outbox.c.kind == "bench")
        own_sent = count(audit, audit.c.action == "sent", audit.c.kind == "bench")

        async def bench_at_child() -> int:
            n: int = await child.store.read(count(inbox, inbox.c.kind == "bench"))
            return n

        async def pending_at_parent() -> int:
            hop = str(child.me)
            n: int = await parent.store.read(count(outbox, outbox.c.next_hop == hop, outbox.c.state == "pending"))
            return n

        await parent.bench.emit({"count": BEFORE, "size": 512, "to": str(child.me), "wait": True})
        await until(lambda: child.bench.received == BEFORE, "the first envelopes at the child")

        # -- the disk fills ---------------------------------------------------------------------
        await volume.fill(child.store)
        refused: StoreError | None = None
        written = 0
        for _ in range(200):  # the WAL may still have room for a few pages; large writes use it up
            try:
                await child.exchange.originate("bench", to_parent, ppb.BenchPayload(pad=os.urandom(60_000)))
                written += 1
            except StoreError as exc:
                refused = exc
                break
        assert refused is not None, "the child's writes kept succeeding on a full disk"
        assert refused.reason == "disk_full"
        assert str(refused).startswith("disk full:") and str(database) in str(refused)
        # A refused write is refused whole: no outbox row, no audit entry of it.
        own = await child.store.read(own_to_parent)
        assert own == written
        assert await child.store.read(own_sent) == written
        # The parent's batches cannot be committed at the child, so they are not acked: the link
        # closes with the reason, and the parent keeps every envelope pending.
        await parent.bench.emit({"count": DURING, "size": 8192, "chunk": 50, "to": str(child.me), "wait": True})
        await until(
            lambda: any(
                "could not commit batch" in r.getMessage() and "disk full" in r.getMessage() for r in caplog.records
            ),
            "the child refusing a batch for disk full",
        )
        assert await pending_at_parent() > 0

        # Reads go on: status (outbox backlog, audit head) and the inbox.
        status = await child.status()
        assert status["court"] == "豫14"
        assert await bench_at_child() >= BEFORE

        # -- space returns: no restart -------------------------------------------------------------
        await volume.free(child.store)
        await until(lambda: child.bench.received == BEFORE + DURING, "the backlog delivered after space returned")
        await until(lambda: _zero(pending_at_parent), "every envelope acked at the parent")
        assert await bench_at_child() == BEFORE + DURING  # each id once (it is the inbox key) …
        executed = await child.store.read(count(audit, audit.c.action == "received", audit.c.kind == "bench"))
        assert executed == BEFORE + DURING  # … and each executed once, resends deduped
        # The node's own writes work again, on the same writer.
        await child.exchange.originate("bench", to_parent, ppb.BenchPayload(pad=b"after"))
        assert await child.store.read(own_to_parent) == written + 1
        assert await child.store.read(own_sent) == written + 1
        check = await child.store.read(lambda c: [r[0] for r in c.exec_driver_sql("PRAGMA integrity_check")])
        assert check == ["ok"]
    # Stopped: the audit chain of the node that ran out of space verifies, every seal in it too.
    verdict = await asyncio.to_thread(audit_verify, tmp_path / "豫14")
    assert verdict["ok"] is True and verdict["entries"] > BEFORE + DURING


def audit_verify(home: Path) -> Any:
    """``court-hub audit verify --json`` on a stopped node's home."""
    cmd = [sys.executable, "-m", "hub", "audit", "verify", "--home", str(home), "--json"]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


async def _zero(read: Any) -> bool:
    return bool(await read() == 0)


async def test_a_full_disk_inside_a_grouped_transaction_fails_every_write_of_the_group(volume: Volume) -> None:
    """SQLite rolls the whole transaction back when a statement hits SQLITE_FULL. The writes grouped
    before it in that transaction are gone too, so none of them may be reported committed (that
    would ack an envelope that is not stored); every one fails with the disk-full error, and the
    writer goes on afterwards."""
    store = Store(volume.database_url())
    await asyncio.to_thread(store.migrate)
    store.start()
    try:
        if not volume.mounted:
            volume.watch(store)
        await volume.fill(store)

        def rows(prefix: str, n: int) -> Any:
            def write(conn: Any) -> str:
                for i in range(n):
                    conn.exec_driver_sql(
                        "INSERT INTO node_meta (key, value) VALUES (?, ?)", (f"{prefix}-{i}", os.urandom(25_000).hex())
                    )
                return prefix

            return write

        # Queued together, so the writer groups them: small, large (overflows mid-statement), small.
        futures = [store.submit(rows("a", 1)), store.submit(rows("b", 400)), store.submit(rows("c", 1))]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(o, StoreError) and o.reason == "disk_full" for o in outcomes), outcomes
        group = "SELECT count(*) FROM node_meta WHERE key GLOB '[abc]-*'"
        kept = await store.read(lambda c: c.exec_driver_sql(group).scalar())
        assert kept == 0  # nothing of the group is there — and nothing was reported committed

        await volume.free(store)
        assert await store.write(rows("after", 1)) == "after"
        check = await store.read(lambda c: [r[0] for r in c.exec_driver_sql("PRAGMA integrity_check")])
        assert check == ["ok"]
    finally:
        await asyncio.to_thread(store.close)
