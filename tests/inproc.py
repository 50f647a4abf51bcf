"""In-process federations: real Node objects (TLS gRPC on loopback, embedded nats-server, SQLite)
running in the test's event loop, each with a clock the test controls. For workflow rules and time
limits, where a test must move time forward instead of sleeping; process-level behaviour (crashes,
restarts) is tested with ``hub.localtree``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from hub import provision
from hub.clock import FixedClock, SystemClock
from hub.config import Home
from hub.localtree import NodeSpec
from hub.netutil import free_port
from hub.node import Node


class InProcTree:
    def __init__(self, nodes: dict[str, Node], clock: FixedClock) -> None:
        self.nodes = nodes
        self.clock = clock

    def __getitem__(self, court: str) -> Node:
        return self.nodes[court]

    async def settle(self, predicate: object, limit_s: float = 20.0) -> None:
        """Wait (in real time) until ``predicate()`` (sync or async) is true."""
        await until(predicate, "condition", limit_s)


async def until(predicate: Any, what: str, limit_s: float = 60.0) -> None:
    """Wait (in real time) until ``predicate()`` (sync or async) is true; TimeoutError naming
    ``what`` otherwise."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"not reached within {limit_s}s: {what}")
        await asyncio.sleep(0.05)


def count(table: Any, *where: Any) -> Callable[[Connection], int]:
    """A read returning how many rows of ``table`` match ``where``."""
    return lambda conn: int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


@asynccontextmanager
async def inproc_tree(base: Path, specs: list[NodeSpec], start_ms: int | None = None) -> AsyncIterator[InProcTree]:
    clock = FixedClock(start_ms if start_ms is not None else SystemClock().now_ms())
    nodes: dict[str, Node] = {}
    try:
        for i, spec in enumerate(specs):
            path = base / f"node-{i:02d}"
            provision.init_node(path, spec.court, spec.name, f"127.0.0.1:{free_port()}", root=spec.parent is None)
            if spec.parent is not None:
                token = await asyncio.to_thread(provision.issue_token, nodes[spec.parent].home.path, spec.court, 600)
                await provision.join(path, token.token)
            node = Node(Home(path), clock=clock)
            await node.start()
            nodes[spec.court] = node
        tree = InProcTree(nodes, clock)
        await tree.settle(lambda: all(n.router.parent is None or n.router.parent in n.sessions for n in nodes.values()))
        yield tree
    finally:
        for node in reversed(list(nodes.values())):
            await node.stop(0.5)
