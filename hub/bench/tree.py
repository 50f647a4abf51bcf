"""``court-hub bench tree``: a directive broadcast to a whole tree until every receipt is back.

Ours: a real-process tree of 1 + f + f² nodes (:func:`hub.localtree.wide_tree`: a province, its
cities, their basic courts; TLS links, SQLite stores, embedded nats-servers). Each round the root
sends one directive (~1 KB body) to its whole subtree — the directive row, its outbox rows and the
per-recipient workflow items in one transaction — every court commits it (inbox, audit chain, its
own workflow item) and answers with a signed delivery receipt that travels back up; the round
ends when the root has committed a receipt from every court below it. Timed inside the root
process (admin operation ``bench.broadcast``) from just before the sending transaction to the
commit of the last receipt.

Baseline: the same fan-out with raw gRPC — one process per court below the root, in the same
shape, plain ``grpc.aio`` unary calls on loopback without TLS, storage or seals: a court forwards
the message to its children concurrently and answers once they have; the round ends when the
root's calls to its cities have returned a receipt count equal to the number of courts.

Rounds alternate (ours, baseline, ours, …) so that drift in the machine's load hits both; p50 and
p99 over the rounds, and their ratio, are reported. Target: p99 < 1 s for ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from sqlalchemy import select

from hub.bench.link import percentile
from hub.errors import InvalidInput, Unavailable
from hub.localtree import LocalTree, NodeSpec, wide_tree
from hub.netutil import free_port, wait_for_port
from hub.store.schema import deliveries

if TYPE_CHECKING:
    from hub.node import Node

METHOD = "/courthub.bench.Tree/Deliver"
TARGET_P99_MS = 1000.0


# -- ours: the node side ---------------------------------------------------------------------------


async def broadcast(node: Node, args: dict[str, Any]) -> dict[str, Any]:
    """Admin ``bench.broadcast``: one directive to this court's whole subtree, timed until the
    receipt of every court below has been committed here."""
    size = int(args.get("size", 1024))
    timeout_s = float(args.get("timeout_s", 30))
    if not 0 <= size <= 65536 or not 0 < timeout_s <= 600:
        raise InvalidInput("bench.broadcast: size 0–65,536 bytes, timeout_s up to 600")
    body = "执" * (size // 3)  # three bytes each in UTF-8
    arrived = asyncio.Event()

    async def on_receipt(_msg: Any) -> None:
        arrived.set()

    nc = node.bus.nc
    sub = await nc.subscribe(node.bus.subject("receipt"), cb=on_receipt) if nc is not None else None
    started = time.perf_counter()
    eid, recipients = await node.directives.send(node.me, True, f"压力测试 {uuid.uuid4().hex[:8]}", body)
    committed = time.perf_counter()

    def read(conn: Any) -> list[Any]:
        return list(conn.execute(select(deliveries.c.state).where(deliveries.c.envelope_id == eid)).scalars())

    seen: list[float] = []  # when each receipt was first seen committed here (ms since the start)
    try:
        while True:
            states = await node.store.read(read)
            done = [s for s in states if s != "pending"]
            now_ms = (time.perf_counter() - started) * 1000
            seen.extend([round(now_ms, 1)] * (len(done) - len(seen)))
            if len(done) >= len(recipients):
                break
            if time.perf_counter() - started > timeout_s:
                raise Unavailable(f"bench.broadcast: {len(done)} of {len(recipients)} receipts after {timeout_s}s")
            # Woken by the bus event each committed receipt raises; a slow poll as a safety net.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), 0.05)
            arrived.clear()
    finally:
        if sub is not None:
            await sub.unsubscribe()
    finished = time.perf_counter()
    return {
        "envelope_id": eid,
        "recipients": len(recipients),
        "delivered": sum(1 for s in states if s == "delivered"),
        "rejected": sum(1 for s in states if s == "rejected"),
        "commit_ms": round((committed - started) * 1000, 3),
        "ms": round((finished - started) * 1000, 3),
        "receipts_seen_ms": seen,
    }


# -- the baseline: raw gRPC ------------------------------------------------------------------------


async def _serve_raw(port: int, children: list[int]) -> None:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in children]
    calls = [c.unary_unary(METHOD, request_serializer=None, response_deserializer=None) for c in channels]

    async def deliver(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        replies = await asyncio.gather(*(call(request, timeout=30) for call in calls))
        return (1 + sum(int.from_bytes(r, "big") for r in replies)).to_bytes(4, "big")

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "courthub.bench.Tree",
                {"Deliver": grpc.unary_unary_rpc_method_handler(deliver, None, None)},
            )
        ]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


class RawTree:
    """One raw gRPC process per court below the root, in the shape of ``specs``."""

    def __init__(self, specs: list[NodeSpec]) -> None:
        root = specs[0].court
        self.ports = {s.court: free_port() for s in specs[1:]}
        kids: dict[str, list[str]] = {}
        for s in specs[1:]:
            kids.setdefault(s.parent or root, []).append(s.court)
        self.top = [self.ports[c] for c in kids.get(root, [])]
        self.expected = len(specs) - 1
        self.procs = []
        for court, port in self.ports.items():
            args = [
                sys.executable,
                "-m",
                "hub.bench.tree",
                str(port),
                *(str(self.ports[c]) for c in kids.get(court, [])),
            ]
            self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in self.ports.values():
            if not wait_for_port("127.0.0.1", port, 20):
                self.stop()
                raise RuntimeError("raw gRPC tree did not start")
        self.loop = asyncio.new_event_loop()
        self.channels = self.loop.run_until_complete(self._open())

    async def _open(self) -> list[grpc.aio.Channel]:
        return [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in self.top]

    def round(self, size: int) -> tuple[float, int]:
        """One broadcast; (milliseconds, receipts counted)."""
        return self.loop.run_until_complete(self._round(b"\x01" * size))

    async def _round(self, body: bytes) -> tuple[float, int]:
        calls = [c.unary_unary(METHOD, request_serializer=None, response_deserializer=None) for c in self.channels]
        started = time.perf_counter()
        replies = await asyncio.gather(*(call(body, timeout=30) for call in calls))
        elapsed = (time.perf_counter() - started) * 1000
        return elapsed, sum(int.from_bytes(r, "big") for r in replies)

    def stop(self) -> None:
        if hasattr(self, "loop"):
            for c in self.channels:
                self.loop.run_until_complete(c.close())
            self.loop.close()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


# -- the run ---------------------------------------------------------------------------------------


def _wait_topology(tree: LocalTree, root: str, courts: set[str], timeout: float) -> None:
    def known() -> bool:
        return courts <= set(tree.status(root)["routes"]) | {root}

    tree.wait_until(known, timeout, "every court announced to the root")


def run(
    fanout: int = 3, rounds: int = 100, size: int = 1024, base: Path | None = None, warmup: int = 5, gap_s: float = 0.02
) -> dict[str, Any]:
    if not 1 <= fanout <= 6 or rounds < 1:
        raise InvalidInput("bench tree: fanout 1–6, at least one round")
    if base is None:
        with tempfile.TemporaryDirectory(prefix="court-hub-bench-tree-") as tmp:
            return run(fanout, rounds, size, Path(tmp), warmup, gap_s)
    specs = wide_tree(fanout)
    root = specs[0].court
    ours: list[float] = []
    commits: list[float] = []
    raw: list[float] = []
    complete = True
    started = time.perf_counter()
    with LocalTree(base / "tree", specs) as tree:
        tree.start_all()
        _wait_topology(tree, root, {s.court for s in specs}, 60)
        setup_s = time.perf_counter() - started
        baseline = RawTree(specs)
        try:
            for i in range(warmup + rounds):
                result = tree.call(root, "bench.broadcast", {"size": size})
                ok = result["delivered"] == len(specs) - 1 == result["recipients"]
                elapsed, receipts = baseline.round(size)
                if i < warmup:
                    continue
                complete = complete and ok and receipts == len(specs) - 1
                ours.append(float(result["ms"]))
                commits.append(float(result["commit_ms"]))
                raw.append(elapsed)
                time.sleep(gap_s)
        finally:
            baseline.stop()
    p50, p99 = percentile(ours, 50), percentile(ours, 99)
    r50, r99 = percentile(raw, 50), percentile(raw, 99)
    return {
        "nodes": len(specs),
        "fanout": fanout,
        "recipients": len(specs) - 1,
        "rounds": rounds,
        "size_bytes": size,
        "receipts_complete": complete,
        "tree_p50_ms": round(p50, 2),
        "tree_p99_ms": round(p99, 2),
        "tree_mean_ms": round(statistics.fmean(ours), 2),
        "tree_max_ms": round(max(ours), 2),
        "tree_send_commit_p50_ms": round(percentile(commits, 50), 2),
        "raw_grpc_p50_ms": round(r50, 2),
        "raw_grpc_p99_ms": round(r99, 2),
        "raw_grpc_mean_ms": round(statistics.fmean(raw), 2),
        "ratio_p50": round(p50 / r50, 2) if r50 else None,
        "ratio_p99": round(p99 / r99, 2) if r99 else None,
        "target_p99_ms": TARGET_P99_MS,
        "p99_within_target": p99 < TARGET_P99_MS,
        "setup_s": round(setup_s, 1),
    }


if __name__ == "__main__":
    asyncio.run(_serve_raw(int(sys.argv[1]), [int(p) for p in sys.argv[2:]]))
