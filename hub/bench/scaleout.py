"""``court-hub bench scaleout``: one court's node as several processes, and what survives a crash.

The deployment (docs/scale-out.md), every piece a real process started here:

* PostgreSQL (``initdb``/``pg_ctl``, :class:`hub.pgserver.TempPostgres`, or a given URL) — the
  node's store, shared by the node and the workers;
* three ``nats-server`` processes in one JetStream cluster on loopback
  (:class:`hub.natsserver.NatsCluster`); the node's streams keep three replicas;
* the four reference agency simulators (bank, land, public security, telecom), each with its own
  ledger (SQLite) that records every request id it applied;
* ``court-hub run`` for 河南省高级人民法院 (``豫``) with ``[store] url`` = PostgreSQL,
  ``[bus] nats_url`` = the three servers, the four connectors, and ``[agency] node_worker =
  false``: the node files cases, submits jobs, settles answers and sweeps, **but calls no
  agency itself** — every call is made by ``court-hub worker`` processes;
* one or two ``court-hub worker`` processes (same home directory: the same config.toml).

Load: cases filed over the admin socket. Each case is five jobs — 立案即查 asks the four agencies
(four inquiry jobs) and one bank freeze (控制, one control job) follows the filing.

Phases (one run, same deployment):

1. **one worker** — a backlog of ``jobs`` is queued with no worker running, then one worker starts;
   throughput = jobs / (last answer − first claim).
2. **two workers** — the same with two worker processes started together.
3. **faults** — a backlog of twice ``jobs``, two workers; once a quarter of it is answered, the
   NATS server leading the job stream is SIGKILLed and so is one worker, and half as many jobs
   again are filed at once (published while JetStream elects a new leader). Recovery figures: the
   throughput before, the gap with no answer, the time until a 2-second window is back to 80 % of
   the one-worker throughput (one worker is what is left), the time until the last job settled
   (the jobs the dead worker held come back after the consumer's ``ack_wait``), and then the
   killed server restarted and caught up.

Checks (a violation fails the command): every job submitted settles (no job lost), each exactly
once (``job_done`` events per job id: never two; the store's conditional update is the guard),
every job answered; at the simulators, every answered control's request id is in the ledger and
no request id created more than one measure (took effect at most once); the node's inquiry and
measure rows all settled.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nats
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from hub import provision
from hub.config import Home
from hub.errors import Unavailable
from hub.jobs import done_subject, jobs_stream
from hub.localtree import LocalTree, NodeSpec
from hub.natsserver import NatsCluster, nats_servers
from hub.netutil import free_port
from hub.proto.courthub.v1 import admin_pb2 as apb
from hub.proto.courthub.v1 import admin_pb2_grpc as agrpc
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import seeded_subjects

KINDS = ("bank", "land", "public_security", "telecom")
COURT = "豫"
COURT_NAME = "河南省高级人民法院"
SEED = 1
JOBS_PER_CASE = 5  # four inquiries (立案即查) + one bank freeze
CONCURRENCY = 16  # calls in flight per plugin in each worker
FINAL = ("answered", "failed", "dead", "timed_out")


def _agency(check_interval_s: float) -> dict[str, Any]:
    return {
        "judge_name": "李明",
        "judge_phone": "0370-3211234",
        "officer_ids": ["豫-0001", "豫-0002"],
        "worker_concurrency": CONCURRENCY,
        "node_worker": False,  # every agency call is made by `court-hub worker` processes
        "check_interval_s": check_interval_s,  # the sweep republishes what a failover lost this soon
    }


@dataclass(frozen=True)
class Filed:
    """Cases filed in one batch and the control request ids they produced."""

    cases: list[str]
    controls: list[str]

    @property
    def jobs(self) -> int:
        return len(self.cases) * JOBS_PER_CASE


class JobDoneCounter:
    """Counts ``job_done`` events per job id from a NATS client in a thread of its own.

    Events are best effort (core NATS): missing ones are normal during a failover, a second
    event for one job would mean it was settled twice."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="job-done-counter", daemon=True)

    def start(self) -> JobDoneCounter:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise Unavailable(f"job_done counter could not connect: {self._error}")
        return self

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()

        async def quiet(exc: Exception) -> None:  # a killed server's refusals are expected here
            pass

        try:
            nc = await nats.connect(
                nats_servers(self.url), max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=quiet
            )
        except Exception as exc:
            self._error = exc
            self._ready.set()
            return

        async def on_done(msg: Any) -> None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                job_id = str(json.loads(msg.data)["job_id"])
                with self._lock:
                    self.counts[job_id] += 1

        await nc.subscribe(done_subject(COURT), cb=on_done)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        with contextlib.suppress(Exception):
            await nc.close()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@dataclass
class ScaleOut:
    """The deployment of the module docstring; ``start()`` brings every piece up."""

    base: Path
    store_url: str
    nats_size: int = 3
    check_interval_s: float = 2.0
    nats: NatsCluster = field(init=False)
    sims: dict[str, SimulatorProcess] = field(init=False, default_factory=dict)
    tree: LocalTree = field(init=False)
    workers: dict[str, subprocess.Popen[bytes]] = field(init=False, default_factory=dict)
    counter: JobDoneCounter | None = field(init=False, default=None)
    _engine: Engine | None = field(init=False, default=None)
    _numbers: Iterator[int] = field(init=False)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.nats = NatsCluster(self.base / "nats", self.nats_size)
        self.tree = LocalTree(self.base / "node", [NodeSpec(COURT, COURT_NAME)])
        self._numbers = iter(range(1, 10_000_000))
        self.subjects = [s for s in seeded_subjects(SEED) if s.bank_accounts and s.id_type == "resident_id"]

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.tree.homes[COURT]

    def start(self) -> ScaleOut:
        for kind in KINDS:
            self.sims[kind] = SimulatorProcess.start(kind, seed=SEED, data_dir=self.base / "sims" / kind)
        self.nats.start()
        provision.init_node(
            self.home,
            COURT,
            COURT_NAME,
            f"127.0.0.1:{free_port()}",
            root=True,
            store_url=self.store_url,
            nats_url=self.nats.url,
        )
        self.tree.configure(
            COURT,
            plugins={k: {"url": s.url} for k, s in self.sims.items()},
            agency=_agency(self.check_interval_s),
        )
        self.tree.start(COURT, timeout=120)
        status = self.tree.status(COURT)
        if status["bus"]["embedded"]:
            raise Unavailable("the node started its own nats-server although [bus] nats_url names a cluster")
        self._engine = create_engine(self.store_url, pool_size=2, max_overflow=2)
        self.counter = JobDoneCounter(self.nats.url).start()
        return self

    def close(self) -> None:
        for name in list(self.workers):
            with contextlib.suppress(Exception):
                self.stop_worker(name)
        with contextlib.suppress(Exception):
            self.tree.stop_all()
        if self.counter is not None:
            self.counter.stop()
        if self._engine is not None:
            self._engine.dispose()
        with contextlib.suppress(Exception):
            self.nats.stop()
        for sim in self.sims.values():
            with contextlib.suppress(Exception):
                sim.stop()

    def __enter__(self) -> ScaleOut:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- workers ------------------------------------------------------------------------------
    def start_worker(self, name: str) -> int:
        """Start ``court-hub worker`` (its own process, same home) and return its pid."""
        log = (self.base / f"worker-{name}.log").open("ab")
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "hub", "worker", "--home", str(self.home), "--concurrency", str(CONCURRENCY)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self.workers[name].pid

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker: its calls in flight are neither recorded nor acked."""
        proc = self.workers.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_worker(self, name: str, timeout: float = 60) -> None:
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def worker_exits(self) -> dict[str, int | None]:
        return {name: p.poll() for name, p in self.workers.items()}

    # -- NATS ---------------------------------------------------------------------------------
    def job_stream_leader(self) -> int:
        """Index in the cluster of the server leading the node's job stream."""

        async def ask() -> str:
            nc = await nats.connect(nats_servers(self.nats.url), connect_timeout=2)
            try:
                info = await nc.jetstream().stream_info(jobs_stream(COURT))
                return str(info.cluster.leader if info.cluster else "")
            finally:
                await nc.close()

        leader = asyncio.run(ask())
        names = [s.server_name for s in self.nats.servers]
        return names.index(leader) if leader in names else 0

    # -- load ---------------------------------------------------------------------------------
    def file(self, cases: int, *, parallel: int = 16) -> Filed:
        """File ``cases`` cases (立案即查: four inquiries each) and one bank freeze per case."""
        numbers = [f"（2026）{COURT}执{next(self._numbers)}号" for _ in range(cases)]
        socket = Home(self.home).admin_socket
        controls: list[str] = []

        async def run() -> None:
            limit = asyncio.Semaphore(parallel)
            async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
                stub = agrpc.AdminServiceStub(channel)

                async def call(method: str, args: dict[str, Any]) -> Any:
                    request = apb.CallRequest(method=method, args_json=json.dumps(args, ensure_ascii=False))
                    reply = await stub.Call(request, timeout=120)
                    return json.loads(reply.result_json)

                async def one(i: int, number: str) -> None:
                    subject = self.subjects[i % len(self.subjects)]
                    async with limit:
                        args = {"number": number, "party": subject.name, "id_number": subject.id_no, "show": False}
                        await call("case.file", args)
                        freeze = {
                            "number": number,
                            "action": "freeze",
                            "agency": "bank",
                            "asset": subject.bank_accounts[i % len(subject.bank_accounts)].asset_id,
                            "amount_fen": 100,
                            "wait_s": 0,
                        }
                        done = await call("control.request", freeze)
                        controls.append(str(done["measure"]["request_id"]))

                await asyncio.gather(*(one(i, n) for i, n in enumerate(numbers)))

        asyncio.run(run())
        return Filed(numbers, controls)

    # -- the store ----------------------------------------------------------------------------
    def jobs(self, filed: list[Filed]) -> list[dict[str, Any]]:
        """The ``agency_jobs`` rows of the filed cases (from PostgreSQL)."""
        numbers = [n for f in filed for n in f.cases]
        assert self._engine is not None
        rows: list[dict[str, Any]] = []
        with self._engine.connect() as conn:
            for i in range(0, len(numbers), 500):
                chunk = numbers[i : i + 500]
                found = conn.execute(
                    text(
                        "SELECT job_id, kind, plugin, status, attempts, worker, created_at_ms, published_at_ms,"
                        " started_at_ms, finished_at_ms FROM agency_jobs WHERE case_number = ANY(:n)"
                    ),
                    {"n": chunk},
                ).mappings()
                rows.extend(dict(r) for r in found)
        return rows

    def unsettled_rows(self, filed: list[Filed]) -> dict[str, int]:
        """The node's inquiry and measure rows of these cases still pending."""
        numbers = [n for f in filed for n in f.cases]
        assert self._engine is not None
        with self._engine.connect() as conn:
            inq = conn.execute(
                text("SELECT count(*) FROM case_inquiries WHERE case_number = ANY(:n) AND status = 'pending'"),
                {"n": numbers},
            ).scalar_one()
            mea = conn.execute(
                text("SELECT count(*) FROM measures WHERE case_number = ANY(:n) AND status = 'pending'"),
                {"n": numbers},
            ).scalar_one()
        return {"inquiries": int(inq), "measures": int(mea)}

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.25) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            dead = [n for n, code in self.worker_exits().items() if code is not None]
            if dead:
                raise Unavailable(f"worker {dead} exited; log {self.base / f'worker-{dead[0]}.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(every)

    def wait_queued(self, filed: list[Filed], timeout: float = 120) -> None:
        """Until every job of ``filed`` is stored and published (a backlog on the bus)."""
        expected = sum(f.jobs for f in filed)

        def queued() -> bool:
            rows = self.jobs(filed)
            return len(rows) >= expected and all(r["published_at_ms"] is not None for r in rows)

        self.wait(queued, timeout, f"{expected} jobs queued")

    def wait_settled(self, filed: list[Filed], timeout: float) -> list[dict[str, Any]]:
        expected = sum(f.jobs for f in filed)
        rows: list[dict[str, Any]] = []

        def settled() -> bool:
            nonlocal rows
            rows = self.jobs(filed)
            return len(rows) >= expected and all(r["status"] in FINAL for r in rows)

        self.wait(settled, timeout, f"{expected} jobs settled", every=0.5)
        return rows

    # -- the agencies' ledgers -----------------------------------------------------------------
    def ledger(self, kind: str) -> tuple[set[str], collections.Counter[str]]:
        """Request ids the simulator applied, and measures created per request id."""
        db = self.base / "sims" / kind / f"{kind}.sqlite3"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            applied = {str(r) for (r,) in conn.execute("SELECT request_id FROM requests")}
            measures: collections.Counter[str] = collections.Counter()
            has = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='measures'").fetchone()
            if has:
                for (rid,) in conn.execute("SELECT request_id FROM measures WHERE request_id IS NOT NULL"):
                    measures[str(rid)] += 1
        finally:
            conn.close()
        return applied, measures


def check(deployment: ScaleOut, filed: list[Filed], rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The invariants of the module docstring over what was filed; (figures, violations)."""
    violations: list[str] = []
    expected = sum(f.jobs for f in filed)
    by_status = collections.Counter(str(r["status"]) for r in rows)
    final = sum(by_status[s] for s in FINAL)
    lost = expected - final
    if len(rows) != expected:
        violations.append(f"{expected} jobs submitted but {len(rows)} stored")
    if lost:
        violations.append(f"{lost} jobs lost (never settled)")
    not_answered = final - by_status["answered"]
    if not_answered:
        violations.append(f"{not_answered} jobs settled without an answer: {dict(by_status)}")
    controls = {c for f in filed for c in f.controls}
    job_ids = {str(r["job_id"]) for r in rows}
    if not controls <= job_ids:
        violations.append(f"{len(controls - job_ids)} control requests have no job")
    events = deployment.counter.snapshot() if deployment.counter is not None else {}
    twice = sorted(j for j in job_ids if events.get(j, 0) > 1)
    if twice:
        violations.append(f"{len(twice)} jobs settled twice (job_done events), e.g. {twice[:3]}")
    applied_at: dict[str, int] = {}
    more_than_once: list[str] = []
    for kind in KINDS:
        applied, measures = deployment.ledger(kind)
        for rid in applied:
            applied_at[rid] = applied_at.get(rid, 0) + 1
        more_than_once += [rid for rid, n in measures.items() if n > 1 and rid in job_ids]
    if more_than_once:
        violations.append(f"{len(more_than_once)} request ids took effect more than once, e.g. {more_than_once[:3]}")
    # Inquiries change nothing at an agency; a control that was answered must be in the ledger.
    answered = {str(r["job_id"]) for r in rows if r["status"] == "answered" and r["kind"] == "control"}
    missing = sorted(answered - set(applied_at))
    if missing:
        violations.append(f"{len(missing)} answered controls are not in their agency's ledger, e.g. {missing[:3]}")
    unsettled = deployment.unsettled_rows(filed)
    if any(unsettled.values()):
        violations.append(f"node rows still pending: {unsettled}")
    figures = {
        "jobs_submitted": expected,
        "jobs_settled": final,
        "jobs_lost": lost,
        "by_status": dict(by_status),
        "settled_twice": len(twice),
        "job_done_events_missed": sum(1 for j in job_ids if events.get(j, 0) == 0),
        "redelivered_jobs": sum(1 for r in rows if int(r["attempts"]) > 1),
        "effect_more_than_once": len(more_than_once),
        "control_jobs": len(controls),
    }
    return figures, violations


def _throughput(rows: list[dict[str, Any]]) -> dict[str, Any]:
    start = min(int(r["started_at_ms"]) for r in rows)
    end = max(int(r["finished_at_ms"]) for r in rows)
    span = max(end - start, 1) / 1000
    per_worker = collections.Counter(str(r["worker"]).rsplit(":", 1)[0] for r in rows)
    return {
        "jobs": len(rows),
        "span_s": round(span, 3),
        "jobs_per_s": round(len(rows) / span, 1),
        "by_worker": per_worker,
    }


def _phase(deployment: ScaleOut, workers: list[str], cases: int, timeout: float) -> tuple[Filed, dict[str, Any]]:
    """A backlog of ``cases`` cases with no worker running, then ``workers`` start together."""
    filed = deployment.file(cases)
    deployment.wait_queued([filed])
    for name in workers:
        deployment.start_worker(name)
    rows = deployment.wait_settled([filed], timeout)
    for name in workers:
        deployment.stop_worker(name)
    figures = _throughput(rows)
    figures["by_worker"] = len(figures["by_worker"])
    return filed, figures


def fault_phase(
    deployment: ScaleOut, cases: int, *, kill_at: float = 0.25, timeout: float = 300, one_worker_rate: float = 0.0
) -> tuple[list[Filed], dict[str, Any]]:
    """Two workers drain a backlog of ``cases`` cases; once ``kill_at`` of it is answered the job
    stream's leading NATS server and worker ``a`` are SIGKILLed, and half as many cases again are
    filed during the failover. Returns what was filed and the recovery figures (ms from the kill)."""
    first = deployment.file(cases)
    deployment.wait_queued([first])
    deployment.start_worker("a")
    deployment.start_worker("b")
    target = int(first.jobs * kill_at)

    def answered() -> int:
        return sum(1 for r in deployment.jobs([first]) if r["status"] == "answered")

    deployment.wait(lambda: answered() >= target, timeout, f"{target} jobs answered before the kill", every=0.1)
    victim = deployment.job_stream_leader()
    killed_ms = int(time.time() * 1000)
    deployment.nats.kill(victim)
    deployment.kill_worker("a")
    second = deployment.file(max(cases // 2, 1))  # published while JetStream elects a new leader
    rows = deployment.wait_settled([first, second], timeout)
    settled_ms = int(time.time() * 1000)
    t0 = time.monotonic()
    deployment.nats.restart(victim)  # rejoins, its replicas catch up from the others
    rejoin_s = time.monotonic() - t0
    deployment.stop_worker("b")

    done = sorted(int(r["finished_at_ms"]) for r in rows)
    start = min(int(r["started_at_ms"]) for r in rows if r["started_at_ms"] is not None)
    before = [t for t in done if t <= killed_ms]
    after = [t for t in done if t > killed_ms]
    rate_before = len(before) / max((killed_ms - start) / 1000, 1e-3)
    gap_ms = (after[0] - killed_ms) if after else None
    window_ms = 2000
    # Recovered: a 2-s window after the kills with at least 80 % of what one worker did — the
    # lower of its own phase's rate and the rate before the kills (a busy machine slows both).
    reference = min(one_worker_rate, rate_before) if one_worker_rate > 0 else rate_before / 2
    bar = 0.8 * reference * window_ms / 1000
    recovered_ms: int | None = None
    j = 0
    for i, t in enumerate(after):  # the first 2-s window (starting at an answer) reaching the bar
        while j < len(after) and after[j] < t + window_ms:
            j += 1
        if j - i >= bar:
            recovered_ms = t + window_ms - killed_ms
            break
    # The rate after: the backlog's answers from 2 s after the kills to their 90th percentile (the
    # stragglers the dead worker held, back after ack_wait, would stretch it; the cases filed
    # during the failover arrive at the filing rate, so they are left out).
    backlog = {str(r["job_id"]) for r in deployment.jobs([first])}
    cut = sorted(int(r["finished_at_ms"]) for r in rows if str(r["job_id"]) in backlog)
    cut = [t for t in cut if t >= killed_ms + window_ms]
    cut = cut[: max(int(len(cut) * 0.9), 1)]
    rate_after = (len(cut) / max((cut[-1] - cut[0]) / 1000, 1e-3)) if len(cut) > 1 else 0.0
    buckets = collections.Counter((t - killed_ms) // 1000 for t in done if -5000 <= t - killed_ms < 15000)
    timeline = " ".join(str(buckets.get(second, 0)) for second in range(-5, 15))
    figures = {
        "killed_nats_server": deployment.nats.servers[victim].server_name,
        "killed_worker": "a",
        "jobs_answered_at_kill": len(before),
        "rate_before_jobs_per_s": round(rate_before, 1),
        "gap_no_answer_ms": gap_ms,
        "recovered_ms": recovered_ms,
        "recovery_bar_jobs_per_s": round(bar * 1000 / window_ms, 1),
        "rate_after_jobs_per_s": round(rate_after, 1),
        "last_settled_ms": done[-1] - killed_ms if done else None,
        "all_settled_seen_ms": settled_ms - killed_ms,
        "nats_restart_s": round(rejoin_s, 2),
        "answers_per_s_from_minus_5_s": timeline,
    }
    return [first, second], figures


def run(
    jobs: int = 1000, *, repeats: int = 1, store_url: str | None = None, base: Path | None = None
) -> dict[str, Any]:
    """The three phases of the module docstring; ``jobs`` per phase (rounded to whole cases).

    With ``repeats`` > 1 the one-worker and two-worker phases alternate that many times and the
    medians are reported (a shared machine's noise hits both configurations alike)."""
    from hub.pgserver import TempPostgres

    cases = max(jobs // JOBS_PER_CASE, 2)
    temporary = base is None
    base = base or Path(tempfile.mkdtemp(prefix="court-hub-bench-scaleout-"))
    with contextlib.ExitStack() as stack:
        if store_url is None:
            pg = stack.enter_context(TempPostgres())
            store_url = pg.create_database("courthub")
        deployment = stack.enter_context(ScaleOut(base, store_url))
        _phase(deployment, ["warm"], 4, 300)  # imports, connections, the simulators' caches
        everything: list[Filed] = []
        ones: list[dict[str, Any]] = []
        twos: list[dict[str, Any]] = []
        for _ in range(max(repeats, 1)):
            filed1, one = _phase(deployment, ["w1"], cases, 600)
            filed2, two = _phase(deployment, ["w1", "w2"], cases, 600)
            everything += [filed1, filed2]
            ones.append(one)
            twos.append(two)
        one_rate = statistics.median(o["jobs_per_s"] for o in ones)
        two_rate = statistics.median(t["jobs_per_s"] for t in twos)
        filed3, recovery = fault_phase(deployment, 2 * cases, one_worker_rate=one_rate, timeout=600)
        everything += filed3
        figures, violations = check(deployment, everything, deployment.jobs(everything))
    if temporary and not violations:  # kept (logs, ledgers) when something is wrong
        shutil.rmtree(base, ignore_errors=True)
    return {
        "configuration": (
            "PostgreSQL + 3-server NATS JetStream cluster (R3 streams) + `court-hub run` (node_worker=false: "
            f"files, submits, settles, sweeps) + 1 or 2 `court-hub worker` ({CONCURRENCY} calls in flight per "
            "plugin each) + 4 simulators; 5 jobs per case (4 inquiries + 1 bank freeze)"
        ),
        "jobs_per_phase": cases * JOBS_PER_CASE,
        "repeats": max(repeats, 1),
        "one_worker_jobs_per_s": round(one_rate, 1),
        "two_workers_jobs_per_s": round(two_rate, 1),
        "ratio_two_over_one": round(two_rate / max(one_rate, 1e-9), 2),
        "one_worker_samples": ", ".join(str(o["jobs_per_s"]) for o in ones),
        "two_workers_samples": ", ".join(str(t["jobs_per_s"]) for t in twos),
        "recovery": recovery,
        "checks": figures,
        "violations": violations,
        "cpu_cores": os.cpu_count(),
        "kept": "" if (temporary and not violations) else str(base),
    }
