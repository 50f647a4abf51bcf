"""A chaos campaign: a real-process tree under generated load and a seeded fault schedule.

Phases:

1. **Set-up.** Seven ``court-hub run`` processes on loopback (province 豫; cities 豫14, 豫01; basic
   courts 豫1402, 豫1403, 豫0102, 豫0103), each child dialling its parent through its own TCP
   :class:`~hub.faultproxy.FaultProxy`; the four agency simulators as processes with ledgers on disk
   (豫 holds all four 总对总, 豫14 a bank 点对点 connection, 豫0102 a bank connection for entrusted
   freezes).
2. **Load and faults** for ``duration`` seconds: :class:`~hub.chaos.load.Workload` threads drive
   every workflow; the main thread injects and heals the faults of
   :func:`~hub.chaos.schedule.make_schedule` at their offsets and watches each healed fault recover.
3. **Quiescence.** Load stops, everything is healed, and the campaign waits (bounded) until the tree
   is quiet: no outbox row pending anywhere, no agency job, request or served request pending.
4. **Check.** Every node is stopped gracefully; its audit chain is verified offline and its store
   read (read-only) into a snapshot; the simulators' ledgers likewise; then
   :func:`~hub.chaos.invariants.check`.

Convergence times, precisely:

* **Recovery time of a fault** = from the instant the fault was healed (node restarted and serving,
  node resumed, proxy healed, simulator resumed, restarted or back to normal; for a nats-server
  kill, the kill itself — the node heals it) until the first poll (every 0.5 s) at which everything
  the fault held up has gone through: for node faults (kill, pause), no outbox row created at or
  before the heal instant is still pending on any link of the node, in either direction; for link
  faults (cut, delay, stall), likewise on that one link; for a nats-server kill, a new nats-server
  runs for the node and no agency job it created up to then is pending; for simulator faults, no
  agency job for that agency created up to then is pending at any court. Faults may overlap (on
  different targets): a fault whose path is still held by another one recovers only when both have
  — e.g. a city killed while the province is paused — so the tail includes such combinations, and
  agency retries wait out the job queue's backoff (2 s, 10 s, 60 s …).
* **Final convergence** = from the end of the load phase (all faults healed) until the tree is
  quiet (phase 3).

``max`` and ``p99`` (nearest rank) are over the recovery times of all faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hub import provision
from hub.chaos.faults import Active, ChaosSimulator, Injector
from hub.chaos.invariants import NodeSnapshot, SimSnapshot, Violation, check, read_node, read_sim
from hub.chaos.load import BANK_LEAVES, Workload
from hub.chaos.schedule import LINK_FAULTS, NODE_KILLS, SIM_FAULTS, Fault, FaultKind, TreeShape, make_schedule
from hub.config import Home
from hub.faultproxy import FaultProxy
from hub.localtree import DEMO_TREE, LocalTree, NodeSpec

# The demo's tree and one more basic court, so each city relays for two.
CHAOS_TREE = [*DEMO_TREE, NodeSpec("豫0103", "郑州市二七区人民法院", "豫01")]
AGENCIES = ("bank", "land", "public_security", "telecom")
SIM_SEED = 7
PLUGIN_TIMEOUT_S = 5.0
POLL_S = 0.5
PROGRESS_S = 30.0


def tree_shape(specs: list[NodeSpec] = CHAOS_TREE) -> TreeShape:
    parents = {s.court: s.parent for s in specs if s.parent is not None}
    root = next(s.court for s in specs if s.parent is None)
    relays = tuple(c for c in parents if c in parents.values())
    leaves = tuple(c for c in parents if c not in parents.values())
    return TreeShape(root, relays, leaves, parents, AGENCIES)


@dataclass
class Recovery:
    fault: Fault
    healed_at: float  # time.monotonic()
    healed_ms: int  # wall clock, comparable with the stores' created_at_ms
    killed_pid: int | None = None
    recovered_s: float | None = None


@dataclass
class Report:
    seed: int
    duration_s: float
    schedule: list[Fault]
    base: str = ""
    faults_by_kind: Counter[str] = field(default_factory=Counter)
    recoveries: list[Recovery] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    convergence_s: float | None = None
    violations: list[Violation] = field(default_factory=list)
    wall_s: float = 0.0
    error: str = ""

    @property
    def recovery_times(self) -> list[float]:
        return sorted(r.recovered_s for r in self.recoveries if r.recovered_s is not None)

    def percentile(self, p: float) -> float | None:
        times = self.recovery_times
        if not times:
            return None
        return times[max(0, math.ceil(p / 100 * len(times)) - 1)]

    def by_kind(self) -> dict[str, dict[str, float | int]]:
        """Recovery times per fault kind: how many, median and max (seconds)."""
        times: dict[str, list[float]] = {}
        for r in self.recoveries:
            if r.recovered_s is not None:
                times.setdefault(r.fault.kind.value, []).append(r.recovered_s)
        out: dict[str, dict[str, float | int]] = {}
        for kind, ts in sorted(times.items()):
            ts.sort()
            out[kind] = {"n": len(ts), "median": round(ts[len(ts) // 2], 2), "max": round(ts[-1], 2)}
        return out

    @property
    def ok(self) -> bool:
        return not self.violations and not self.error

    def as_json(self) -> dict[str, Any]:
        times = self.recovery_times
        return {
            "ok": self.ok,
            "seed": self.seed,
            "duration_s": self.duration_s,
            "wall_s": round(self.wall_s, 1),
            "base": self.base,
            "schedule": [f.as_json() for f in self.schedule],
            "faults_by_kind": dict(sorted(self.faults_by_kind.items())),
            "faults_injected": sum(self.faults_by_kind.values()),
            "recoveries": len(times),
            "recovery_s": {
                "max": round(times[-1], 2) if times else None,
                "p99": round(self.percentile(99) or 0, 2) if times else None,
                "median": round(times[len(times) // 2], 2) if times else None,
            },
            "recovery_by_kind": self.by_kind(),
            "recovery_per_fault": [
                {
                    "seq": r.fault.seq,
                    "kind": r.fault.kind.value,
                    "target": r.fault.target,
                    "recovered_s": None if r.recovered_s is None else round(r.recovered_s, 2),
                }
                for r in self.recoveries
            ],
            "convergence_s": None if self.convergence_s is None else round(self.convergence_s, 2),
            "counts": self.counts,
            "load": self.load,
            "violations": [v.as_json() for v in self.violations],
            "error": self.error,
        }


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


class Campaign:
    def __init__(
        self,
        seed: int,
        duration_s: float,
        base: Path | None = None,
        *,
        quiesce_s: float = 300.0,
        workers: int = 2,
        rate_per_min: float = 10.0,
        log: TextIO = sys.stderr,
    ) -> None:
        self.seed = seed
        self.duration_s = duration_s
        self.own_base = base is None
        self.base = base or Path(tempfile.mkdtemp(prefix="court-hub-chaos-"))
        self.quiesce_s = quiesce_s
        self.workers = workers
        self.log = log
        self.shape = tree_shape()
        self.schedule = make_schedule(seed, duration_s, self.shape, rate_per_min=rate_per_min)
        self.tree = LocalTree(self.base / "nodes", CHAOS_TREE)
        self.proxies: dict[str, FaultProxy] = {}
        self.sims: dict[str, ChaosSimulator] = {}
        self.injector = Injector(self.tree, self.proxies, self.sims)
        self.report = Report(seed, duration_s, self.schedule, base=str(self.base))
        self.load: Workload | None = None
        self.seeded_measures: dict[str, set[str]] = {}

    # -- set-up ----------------------------------------------------------------------------------
    def setup(self) -> None:
        for kind in AGENCIES:
            self.sims[kind] = ChaosSimulator(kind, self.base / "sims" / kind, SIM_SEED).start()
        for kind, sim in self.sims.items():
            self.seeded_measures[kind] = {m for m, _ in read_sim(kind, sim.db_path).measures}
        tree = self.tree
        tree.provision()
        urls = {k: s.url for k, s in self.sims.items()}
        for spec in CHAOS_TREE:
            plugins: dict[str, dict[str, Any]] = {}
            if spec.parent is None:
                plugins = {
                    k: {"url": u, "scope": "national", "call_timeout_s": PLUGIN_TIMEOUT_S} for k, u in urls.items()
                }
            elif spec.court == "豫14" or spec.court in BANK_LEAVES:
                plugins = {"bank": {"url": urls["bank"], "scope": spec.court, "call_timeout_s": PLUGIN_TIMEOUT_S}}
            agency = {
                "check_interval_s": 5.0,
                "judge_name": "王立新",
                "judge_phone": "0370-3211234",
                "officer_ids": [f"{spec.court}-0031", f"{spec.court}-0047"],
            }
            tree.configure(spec.court, plugins=plugins, agency=agency)
        # Level by level: a child joins through its running parent, then the level starts at once.
        level = [s for s in CHAOS_TREE if s.parent is None]
        while level:
            for spec in level:
                if spec.parent is not None:
                    self._join_through_proxy(spec)
            tree.start_many([s.court for s in level], timeout=120)
            started = {s.court for s in level}
            level = [s for s in CHAOS_TREE if s.parent in started]
        tree.wait_links(120)

    def _join_through_proxy(self, spec: NodeSpec) -> None:
        """Enroll the child with its parent, then point its parent link at a fault proxy."""
        assert spec.parent is not None
        token = provision.issue_token(self.tree.homes[spec.parent], spec.court, 600)
        asyncio.run(provision.join(self.tree.homes[spec.court], token.token))
        home = Home(self.tree.homes[spec.court])
        config = home.load()
        assert config.parent is not None
        host, _, port = config.parent.address.rpartition(":")
        proxy = self.proxies[spec.court] = FaultProxy(host, int(port)).start()
        config.parent.address = proxy.address
        home.save(config)

    # -- the campaign ----------------------------------------------------------------------------
    def run(self) -> Report:
        started = time.monotonic()
        try:
            _say(self.log, f"chaos: seed {self.seed}, {self.duration_s:g} s of load, {len(self.schedule)} faults")
            for fault in self.schedule:
                _say(self.log, "  " + fault.describe())
            self.setup()
            _say(self.log, f"chaos: tree of {len(CHAOS_TREE)} nodes and {len(AGENCIES)} simulators up in "
                 f"{time.monotonic() - started:.1f} s ({self.base})")  # fmt: skip
            self._load_phase()
            self._quiesce()
            self._check()
        except KeyboardInterrupt:
            self.report.error = "interrupted"
            raise
        except Exception as exc:
            self.report.error = f"{type(exc).__name__}: {exc}"
            _say(self.log, "chaos: the campaign failed:\n" + traceback.format_exc())
        finally:
            self.cleanup()
            self.report.wall_s = time.monotonic() - started
        return self.report

    def _load_phase(self) -> None:
        shape = {
            "root": self.shape.root,
            "relays": self.shape.relays,
            "leaves": self.shape.leaves,
            "parents": self.shape.parents,
        }
        load = self.load = Workload(self.tree, self.seed, shape, subject_seed=SIM_SEED)
        events: list[tuple[float, int, Fault]] = []
        for f in self.schedule:
            events.append((f.at_s, 0, f))
            events.append((f.heal_s, 1, f))
        events.sort(key=lambda e: (e[0], e[1], e[2].seq))
        active: dict[int, Active] = {}
        pending: list[Recovery] = []
        t0 = time.monotonic()
        load.start(self.workers)
        next_progress = t0 + PROGRESS_S
        i = 0
        try:
            while True:
                now = time.monotonic() - t0
                while i < len(events) and events[i][0] <= now:
                    _, heal, fault = events[i]
                    i += 1
                    try:
                        if not heal:
                            active[fault.seq] = self.injector.inject(fault)
                            self.report.faults_by_kind[fault.kind.value] += 1
                        elif fault.seq in active:
                            act = active.pop(fault.seq)
                            self.injector.heal(act)
                            rec = Recovery(fault, time.monotonic(), int(time.time() * 1000), act.detail.get("pid"))
                            pending.append(rec)
                            self.report.recoveries.append(rec)
                    except Exception as exc:  # the fault (or its heal) failed: a finding, not a crash
                        what = "heal" if heal else "injection"
                        _say(self.log, f"chaos: {what} of fault #{fault.seq} failed: {exc}")
                        self.report.violations.append(
                            Violation(
                                "fault_unhealed" if heal else "fault_not_injected",
                                fault.target,
                                f"fault #{fault.seq} {fault.kind.value}",
                                f"{what} failed: {type(exc).__name__}: {str(exc)[-500:]}",
                            )
                        )
                pending = [r for r in pending if not self._recovered(r)]
                if time.monotonic() >= next_progress:
                    next_progress += PROGRESS_S
                    self._progress(now, active, pending)
                if now >= self.duration_s and i >= len(events):
                    break
                time.sleep(POLL_S)
        finally:
            load.stop()
            self._pending = pending
        self.report.load = {
            "attempted": dict(load.stats.attempted),
            "accepted": dict(load.stats.accepted),
            "failed": dict(load.stats.failed),
            "uncertain": dict(load.stats.uncertain),
            "steps_taken": load.stats.steps_taken,
            "steps_abandoned": load.stats.steps_abandoned,
        }

    def _progress(self, now: float, active: dict[int, Active], pending: list[Recovery]) -> None:
        assert self.load is not None
        done = sum(1 for r in self.report.recoveries if r.recovered_s is not None)
        _say(
            self.log,
            f"chaos: t+{now:.0f}s faults {sum(self.report.faults_by_kind.values())} (active {len(active)}), "
            f"recovered {done}, recovering {len(pending)}, "
            f"operations accepted {sum(self.load.stats.accepted.values())}",
        )

    # -- recovery and quiescence -----------------------------------------------------------------
    def _db(self, court: str) -> Path:
        return Home(self.tree.homes[court]).database

    def _count(self, court: str, sql: str, args: tuple[Any, ...] = ()) -> int:
        """A count from a running node's store (read-only; WAL lets it run beside the node)."""
        try:
            conn = sqlite3.connect(f"file:{self._db(court)}?mode=ro", uri=True, timeout=10)
            try:
                return int(conn.execute(sql, args).fetchone()[0])
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise

    def _links_of(self, court: str) -> list[tuple[str, str]]:
        hops = []
        parent = self.shape.parents.get(court)
        if parent is not None:
            hops += [(court, parent), (parent, court)]
        for child, p in self.shape.parents.items():
            if p == court:
                hops += [(court, child), (child, court)]
        return hops

    def _recovered(self, rec: Recovery) -> bool:
        try:
            ok = self._quiet_for(rec)
        except sqlite3.Error:
            ok = False
        if ok:
            rec.recovered_s = time.monotonic() - rec.healed_at
        return ok

    def _quiet_for(self, rec: Recovery) -> bool:
        fault, h = rec.fault, rec.healed_ms
        if fault.kind in NODE_KILLS or fault.kind in LINK_FAULTS or fault.kind is FaultKind.NODE_PAUSE:
            if fault.kind in NODE_KILLS and not self.tree.running(fault.target):
                return False
            whole = fault.kind in NODE_KILLS or fault.kind is FaultKind.NODE_PAUSE
            links = self._links_of(fault.target) if whole else [
                (fault.target, self.shape.parents[fault.target]), (self.shape.parents[fault.target], fault.target)
            ]  # fmt: skip
            sql = "SELECT count(*) FROM outbox WHERE state='pending' AND next_hop=? AND created_at_ms<=?"
            return all(self._count(a, sql, (b, h)) == 0 for a, b in links)
        jobs = "SELECT count(*) FROM agency_jobs WHERE status='pending' AND created_at_ms<=?"
        if fault.kind is FaultKind.NATS_RESTART:
            pid = self.injector.nats_pid(fault.target)
            if pid is None or pid == rec.killed_pid:
                return False
            return self._count(fault.target, jobs, (h,)) == 0
        assert fault.kind in SIM_FAULTS
        sql = jobs + " AND plugin=?"
        return all(self._count(c, sql, (h, fault.target)) == 0 for c in self.tree.order)

    def _quiet(self) -> bool:
        checks = (
            "SELECT count(*) FROM outbox WHERE state='pending'",
            "SELECT count(*) FROM agency_jobs WHERE status='pending'",
            "SELECT count(*) FROM case_inquiries WHERE status='pending'",
            "SELECT count(*) FROM measures WHERE status='pending'",
            "SELECT count(*) FROM served_requests WHERE reported_at_ms IS NULL",
        )
        return all(self._count(c, sql) == 0 for c in self.tree.order for sql in checks)

    def _quiesce(self) -> None:
        self.injector.heal_everything()
        end = time.monotonic()
        _say(self.log, f"chaos: load over, everything healed; waiting (at most {self.quiesce_s:g} s) for quiet")
        deadline = end + self.quiesce_s
        pending = self._pending
        quiet_since: float | None = None
        next_progress = time.monotonic() + PROGRESS_S
        while time.monotonic() < deadline:
            pending = [r for r in pending if not self._recovered(r)]
            try:
                quiet = self._quiet()
            except sqlite3.Error:
                quiet = False
            if quiet and not pending:
                if quiet_since is None:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= 2.0:  # stays quiet over two seconds of polls
                    self.report.convergence_s = quiet_since - end
                    break
            else:
                quiet_since = None
            if time.monotonic() >= next_progress:
                next_progress += PROGRESS_S
                _say(self.log, f"chaos: still converging after {time.monotonic() - end:.0f} s "
                     f"({len(pending)} faults not recovered)")  # fmt: skip
            time.sleep(POLL_S)
        for rec in pending:
            self.report.violations.append(
                Violation(
                    "fault_unrecovered",
                    rec.fault.target,
                    f"fault #{rec.fault.seq} {rec.fault.kind.value}",
                    f"not recovered {self.quiesce_s:g} s after the load ended",
                )
            )
        if self.report.convergence_s is None:
            _say(self.log, "chaos: the tree did not become quiet in time; checking what it holds")

    # -- the check -------------------------------------------------------------------------------
    def _check(self) -> None:
        from hub.cli.demo_cmd import verify_home

        for court in reversed(self.tree.order):
            if self.tree.running(court):
                self.tree.stop(court, timeout=60)
        nodes: dict[str, NodeSnapshot] = {}
        for court in self.tree.order:
            snap = read_node(court, self._db(court))
            audit = verify_home(self.tree.homes[court])
            snap.audit_ok, snap.audit_problem, snap.audit_entries = (
                bool(audit["ok"]),
                str(audit["problem"] or ""),
                int(audit["entries"]),
            )
            nodes[court] = snap
        for sim in self.sims.values():
            sim.stop()
        sims: dict[str, SimSnapshot] = {k: read_sim(k, s.db_path) for k, s in self.sims.items()}
        assert self.load is not None
        self.report.violations += check(nodes, sims, self.load.accepted, seeded_measures=self.seeded_measures)
        envelopes = {e for s in nodes.values() for e, *_ in s.outbox}
        items = {k[0] for s in nodes.values() for k in s.items}
        requests = {r for s in nodes.values() for r in s.requests}
        self.report.counts = {
            "envelopes": len(envelopes),
            "outbox_rows": sum(len(s.outbox) for s in nodes.values()),
            "inbox_rows": sum(len(s.inbox) for s in nodes.values()),
            "receipts_expected": sum(len(s.deliveries) for s in nodes.values()),
            "workflow_items": len(items),
            "workflow_transitions": sum(len(e) for s in nodes.values() for e in s.events.values()),
            "directives": len({d for s in nodes.values() for d in s.directives}),
            "cases": sum(len(s.cases) for s in nodes.values()),
            "agency_requests": len(requests),
            "agency_jobs": sum(len(s.jobs) for s in nodes.values()),
            "agency_measures": sum(len(s.measures) for s in sims.values())
            - sum(len(v) for v in self.seeded_measures.values()),
            "audit_entries": sum(s.audit_entries for s in nodes.values()),
        }

    def cleanup(self) -> None:
        """Stop everything this campaign started (also after a failure or Ctrl-C)."""
        if self.load is not None:
            self.load.stop(5)
        self.injector.resume_all()
        with contextlib.suppress(Exception):
            self.tree.stop_all()
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                proxy.stop()
        for sim in self.sims.values():
            with contextlib.suppress(Exception):
                sim.stop()

    def remove(self) -> None:
        if self.own_base:
            shutil.rmtree(self.base, ignore_errors=True)


def render(report: Report, out: TextIO) -> None:
    """The human-readable report (the same figures as ``--json``)."""
    data = report.as_json()
    w = out.write
    w(f"混沌测试 chaos campaign — seed {report.seed}, {report.duration_s:g} s of load, {data['wall_s']} s wall\n")
    w("schedule:\n")
    for f in report.schedule:
        w(f"  {f.describe()}\n")
    w("faults injected by kind:\n")
    for kind, n in data["faults_by_kind"].items():
        w(f"  {kind:<16} {n}\n")
    rec = data["recovery_s"]
    w(f"recoveries: {data['recoveries']} of {data['faults_injected']} faults; recovery time max {rec['max']} s, "
      f"p99 {rec['p99']} s, median {rec['median']} s\n")  # fmt: skip
    for kind, fig in data["recovery_by_kind"].items():
        w(f"  {kind:<16} n {fig['n']:<4} median {fig['median']:6.2f} s  max {fig['max']:6.2f} s\n")
    w(f"final convergence after load end: {data['convergence_s']} s\n")
    w("counts: " + ", ".join(f"{k} {v}" for k, v in data["counts"].items()) + "\n")
    load = data["load"]
    if load:
        accepted = json.dumps(load["accepted"], ensure_ascii=False)
        w(f"load: accepted {sum(load['accepted'].values())} operations {accepted}; "
          f"failed {sum(load['failed'].values())}, uncertain {sum(load['uncertain'].values())}, "
          f"follow-up steps {load['steps_taken']} (abandoned {load['steps_abandoned']})\n")  # fmt: skip
    if report.error:
        w(f"ERROR: {report.error}\n")
    w(f"violations: {len(report.violations)}\n")
    for v in report.violations[:200]:
        w(f"  {v}\n")
    if len(report.violations) > 200:
        w(f"  … and {len(report.violations) - 200} more (--json lists all)\n")
    w("OK: every invariant holds\n" if report.ok else "FAILED\n")
