"""``court-hub bench inquiry``: 立案即查 through the node (bus, queue, store) vs plugins called directly.

Set-up: the four reference simulators as processes (zero simulated delay) and one node process
(``court-hub run``) with the four connectors configured.

1. Through the node: ``n`` cases are filed in one burst over the admin socket. Each filing commits
   the case, the ``case.filed`` bus event starts one inquiry per agency, each inquiry is a job on
   the node's JetStream work queue, a worker calls the plugin, the answer is committed and settled
   onto the case. Per case: from its filing (the node's timestamp) to the commit of its last
   answer. Throughput: cases divided by the time from the first filing to the last answer.
2. Directly: the same ``n`` cases with the same plugins called through a
   :class:`~hub.plugins.host.PluginHost` in this process — no bus, no queue, no store — with the
   same number of calls in flight per plugin as the node's worker. Same figures.

The ratio is bus throughput / direct throughput, measured side by side in one run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from hub.bench.link import percentile
from hub.config import Home
from hub.localtree import LocalTree, NodeSpec
from hub.plugins.host import PluginHost
from hub.plugins.models import CourtInfo, InquiryRequest, Subject
from hub.proto.courthub.v1 import admin_pb2 as apb
from hub.proto.courthub.v1 import admin_pb2_grpc as agrpc
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import seeded_subjects

KINDS = ("bank", "land", "public_security", "telecom")
COURT = "豫"
COURT_NAME = "河南省高级人民法院"
SEED = 1
CONCURRENCY = 32  # calls in flight per plugin, in the node's worker and in the direct run
JUDGE, PHONE, OFFICERS = "李明", "0370-3211234", ("豫-0001", "豫-0002")
AGENCY: dict[str, Any] = {
    "judge_name": JUDGE,
    "judge_phone": PHONE,
    "officer_ids": list(OFFICERS),
    "worker_concurrency": CONCURRENCY,
}


def _case_number(prefix: int, i: int) -> str:
    return f"（2026）{COURT}执{prefix * 10_000 + i}号"


def _subjects(n: int) -> list[Subject]:
    people = [s for s in seeded_subjects(SEED) if s.id_type == "resident_id"]
    return [Subject(p.name, p.id_no) for p in (people[i % len(people)] for i in range(n))]


async def _file_burst(socket: Path, numbers: list[str], subjects: list[Subject]) -> None:
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        stub = agrpc.AdminServiceStub(channel)

        async def file(number: str, subject: Subject) -> None:
            args = {"number": number, "party": subject.name, "id_number": subject.id_no, "show": False}
            await stub.Call(apb.CallRequest(method="case.file", args_json=json.dumps(args, ensure_ascii=False)))

        await asyncio.gather(*(file(n, s) for n, s in zip(numbers, subjects, strict=True)))


def _settled(tree: LocalTree, numbers: set[str]) -> list[dict[str, Any]] | None:
    cases = [c for c in tree.call(COURT, "case.list", {"limit": 100_000}) if c["case_number"] in numbers]
    if len(cases) < len(numbers):
        return None
    for c in cases:
        if c["inquiries_started_at_ms"] is None or c["inquiries"]["pending"]:
            return None
    return cases


def through_node(tree: LocalTree, n: int, prefix: int) -> dict[str, Any]:
    numbers = [_case_number(prefix, i) for i in range(1, n + 1)]
    socket = Home(tree.homes[COURT]).admin_socket
    wall = time.perf_counter()
    asyncio.run(_file_burst(socket, numbers, _subjects(n)))
    done: list[dict[str, Any]] = []

    def check() -> bool:
        found = _settled(tree, set(numbers))
        if found is None:
            return False
        done.extend(found)
        return True

    deadline = time.monotonic() + 300
    while not check():  # latencies come from the node's timestamps: poll gently
        if time.monotonic() > deadline:
            raise TimeoutError(f"answers to {n} cases not complete after 300 s")
        time.sleep(0.5)
    wall_s = time.perf_counter() - wall
    latencies = [float(c["last_answer_at_ms"] - c["filed_at_ms"]) for c in done]
    first = min(c["filed_at_ms"] for c in done)
    last = max(c["last_answer_at_ms"] for c in done)
    answered = sum(c["inquiries"]["answered"] for c in done)
    other = sum(c["inquiries"]["failed"] + c["inquiries"]["timed_out"] for c in done)
    span_s = max((last - first) / 1000, 1e-3)
    return {
        "cases_per_s": n / span_s,
        "span_s": span_s,
        "wall_s": wall_s,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies),
        "answered": answered,
        "not_answered": other,
    }


async def _direct(urls: dict[str, str], n: int) -> dict[str, Any]:
    host = PluginHost({k: {"url": u} for k, u in urls.items()})
    host.load_entry_points()
    missing = [k for k in KINDS if k not in host.names()]
    if missing:
        raise RuntimeError(f"plugins not active for the direct run: {missing}")
    court = CourtInfo(
        COURT,
        COURT_NAME,
        AGENCY["judge_name"],
        AGENCY["judge_phone"],
        tuple(AGENCY["officer_ids"]),
        "协助查询财产通知书",
    )
    limits = {k: asyncio.Semaphore(CONCURRENCY) for k in KINDS}
    subjects = _subjects(n)
    answered = 0

    async def ask(kind: str, number: str, subject: Subject) -> None:
        nonlocal answered
        request = InquiryRequest(uuid.uuid4().hex, f"{kind}.inquiry", number, court, subject)
        async with limits[kind]:
            outcome = await host.call_inquire(kind, request)
        answered += outcome.ok

    async def one_case(i: int) -> float:
        number = _case_number(9, i + 1)
        t0 = time.perf_counter()
        await asyncio.gather(*(ask(k, number, subjects[i]) for k in KINDS))
        return (time.perf_counter() - t0) * 1000

    for i in range(min(n, 8)):  # warm-up: connections, caches
        await one_case(i)
    answered = 0
    started = time.perf_counter()
    latencies = list(await asyncio.gather(*(one_case(i) for i in range(n))))
    span_s = time.perf_counter() - started
    for name in host.names():
        close = getattr(host.plugin(name), "aclose", None)
        if close is not None:
            await close()
    return {
        "cases_per_s": n / span_s,
        "span_s": span_s,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies),
        "answered": answered,
        "not_answered": n * len(KINDS) - answered,
    }


def run(n: int = 100, base: Path | None = None) -> dict[str, Any]:
    base = base or Path(tempfile.mkdtemp(prefix="court-hub-bench-inquiry-"))
    sims = {k: SimulatorProcess.start(k, seed=SEED) for k in KINDS}
    try:
        urls = {k: s.url for k, s in sims.items()}
        spec = NodeSpec(COURT, COURT_NAME, plugins={k: {"url": u} for k, u in urls.items()}, agency=AGENCY)
        with LocalTree(base / "node", [spec]) as tree:
            tree.start_all()
            through_node(tree, min(n, 10), prefix=1)  # warm-up
            bus = through_node(tree, n, prefix=2)
        direct = asyncio.run(_direct(urls, n))
    finally:
        for s in sims.values():
            s.stop()
    return {
        "cases": n,
        "inquiries": n * len(KINDS),
        "bus_cases_per_s": round(bus["cases_per_s"], 1),
        "bus_p50_ms": round(bus["p50_ms"], 1),
        "bus_p99_ms": round(bus["p99_ms"], 1),
        "bus_answered": bus["answered"],
        "bus_not_answered": bus["not_answered"],
        "bus_span_s": round(bus["span_s"], 3),
        "direct_cases_per_s": round(direct["cases_per_s"], 1),
        "direct_p50_ms": round(direct["p50_ms"], 1),
        "direct_p99_ms": round(direct["p99_ms"], 1),
        "direct_answered": direct["answered"],
        "ratio": round(bus["cases_per_s"] / direct["cases_per_s"], 3),
        "target_p99_ms": 1000,
        "target_ratio": 0.5,
        "concurrency_per_plugin": CONCURRENCY,
    }
