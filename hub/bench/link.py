"""``court-hub bench link``: raw grpc.aio vs this project's durable, sealed relay, in one run.

1. Raw: :mod:`hub.bench.raw` — one 1 KB message per write, pipelined, acked one by one.
2. Relay: two real node processes (child → parent, TLS). The child originates ``n`` sealed
   envelopes (outbox commit), the link carries them in batches, the parent checks each seal,
   commits each to its inbox and audit chain, and acks; the figure is envelopes per second from the
   first origination until the parent has committed the last.
3. Latency: a five-node tree; single envelopes county → city → province → city → county, spaced
   so the path is idle; one-way time from sealing at the origin to the commit at the destination.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.bench.raw import throughput
from hub.localtree import LocalTree, NodeSpec
from hub.netutil import free_port, wait_for_port

PAIR = [NodeSpec("豫", "河南省高级人民法院"), NodeSpec("豫14", "商丘市中级人民法院", "豫")]
FIVE = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫01", "郑州市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫0102", "郑州市中原区人民法院", "豫01"),
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class RawServer:
    """The baseline's server as its own process, like the relay's parent node."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "hub.bench.raw", str(self.port)], stdout=subprocess.DEVNULL)
        if not wait_for_port("127.0.0.1", self.port, 20):
            self.proc.kill()
            raise RuntimeError("raw gRPC server did not start")

    def measure(self, n: int, size: int) -> float:
        return asyncio.run(throughput(self.port, n, size))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def relay_round(tree: LocalTree, n: int, size: int) -> tuple[float, list[float]]:
    """Envelopes/s from the first origination at 豫14 until 豫 has committed the last."""
    tree.call("豫", "bench.stats", {"reset": True})
    started = time.perf_counter()
    tree.call("豫14", "bench.emit", {"count": n, "size": size, "to": "豫"})
    tree.wait_until(_arrived(tree, "豫", n), 600, f"{n} envelopes at 豫")
    elapsed = time.perf_counter() - started
    return n / elapsed, list(tree.call("豫", "bench.stats")["latencies_ms"])


def throughput_rounds(base: Path, n: int, size: int, rounds: int) -> dict[str, Any]:
    """Raw and relay measured in turn (A B A B …) so that a drift in the machine's load hits both."""
    raw_rates: list[float] = []
    relay_rates: list[float] = []
    latencies: list[float] = []
    raw = RawServer()
    try:
        with LocalTree(base / "pair", PAIR) as tree:
            tree.start_all()
            warm = min(n, 2000)
            raw.measure(warm, size)
            relay_round(tree, warm, size)
            for _ in range(rounds):
                raw_rates.append(raw.measure(n, size))
                rate, lat = relay_round(tree, n, size)
                relay_rates.append(rate)
                latencies.extend(lat)
    finally:
        raw.stop()
    return {
        "raw": raw_rates,
        "relay": relay_rates,
        "ratios": [r / b for r, b in zip(relay_rates, raw_rates, strict=True)],
        "p50_ms_under_load": percentile(latencies, 50),
    }


def four_hop_latency(base: Path, rounds: int, size: int) -> dict[str, float]:
    with LocalTree(base / "five", FIVE) as tree:
        tree.start_all()
        for _ in range(20):  # warm the path (connections, caches)
            tree.call("豫1402", "bench.emit", {"count": 1, "size": size, "to": "豫0102", "wait": True})
        tree.wait_until(lambda: tree.call("豫0102", "bench.stats")["received"] >= 20, 60, "warm-up")
        tree.call("豫0102", "bench.stats", {"reset": True})
        for i in range(rounds):
            tree.call("豫1402", "bench.emit", {"count": 1, "size": size, "to": "豫0102", "wait": True})
            tree.wait_until(_arrived(tree, "豫0102", i + 1), 30, "delivery")
            time.sleep(0.01)
        lat = tree.call("豫0102", "bench.stats")["latencies_ms"]
        return {
            "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99),
            "mean_ms": statistics.fmean(lat),
            "samples": len(lat),
        }


def _arrived(tree: LocalTree, court: str, count: int) -> Callable[[], bool]:
    return lambda: bool(tree.call(court, "bench.stats")["received"] >= count)


def run(
    n: int = 20_000, size: int = 1024, rounds: int = 200, base: Path | None = None, repeats: int = 3
) -> dict[str, Any]:
    base = base or Path(tempfile.mkdtemp(prefix="court-hub-bench-"))
    tp = throughput_rounds(base, n, size, repeats)
    latency = four_hop_latency(base, rounds, size)
    raw, relay = statistics.median(tp["raw"]), statistics.median(tp["relay"])
    return {
        "messages": n,
        "size_bytes": size,
        "repeats": repeats,
        "raw_grpc_bidi_msgs_per_s": round(raw),
        "durable_sealed_relay_msgs_per_s": round(relay),
        "ratio": round(statistics.median(tp["ratios"]), 3),
        "ratios_per_round": [round(r, 3) for r in tp["ratios"]],
        "target_ratio": 0.8,
        "relay_p50_ms_under_load": round(tp["p50_ms_under_load"], 2),
        "four_hop_p50_ms": round(latency["p50_ms"], 2),
        "four_hop_p99_ms": round(latency["p99_ms"], 2),
        "four_hop_samples": latency["samples"],
        "target_four_hop_p99_ms": 50,
    }
