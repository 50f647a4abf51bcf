"""Fault injectors: what each :class:`~hub.chaos.schedule.FaultKind` does to the running tree.

Every injector is real: node kills are SIGKILL of the node's process group (its nats-server, in a
session of its own, stays orphaned and is reaped by the next start, as after a real crash); link
faults act on the TCP :class:`~hub.faultproxy.FaultProxy` between a child and its parent; a bus
restart SIGKILLs the node's nats-server found through the pid file in the node home (the node must
bring its bus back by itself); simulator faults SIGSTOP/SIGCONT the simulator process or switch its
``/admin/fault`` mode (``slow``, ``drop_reply`` — the request is carried out and the answer lost).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from hub.chaos.schedule import NODE_KILLS, Fault, FaultKind
from hub.config import Home
from hub.faultproxy import FaultProxy
from hub.localtree import LocalTree
from hub.natsserver import PID_NAME, pid_alive
from plugins.agency.sim import SimulatorProcess


class ChaosSimulator:
    """An agency simulator process that keeps its port and ledger across restarts."""

    def __init__(self, kind: str, data_dir: Path, seed: int) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.seed = seed
        self.proc: SimulatorProcess | None = None
        self.listen = "127.0.0.1:0"
        self.url = ""

    @property
    def db_path(self) -> Path:
        return self.data_dir / f"{self.kind}.sqlite3"

    def start(self) -> ChaosSimulator:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = SimulatorProcess.start(self.kind, seed=self.seed, listen=self.listen, data_dir=self.data_dir)
        self.url = self.proc.url
        self.listen = self.url.removeprefix("http://")  # the same port on every restart
        return self

    def kill(self) -> None:
        """SIGKILL the simulator (a crash: its ledger is whatever SQLite committed)."""
        if self.proc is not None:
            self.resume()
            self.proc.kill()
            self.proc.stop()  # reaps it and removes its temporary log directory
            self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None

    def pause(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)

    def set_fault(self, mode: str, delay_ms: int = 0) -> None:
        """Switch the simulator's fault mode (``normal`` heals)."""
        body = json.dumps({"mode": mode, "delay_ms": delay_ms, "count": None}).encode()
        request = urllib.request.Request(  # noqa: S310 - the http:// URL of a simulator we started
            f"{self.url}/admin/fault", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback URL we started
            reply.read()

    def stop(self) -> None:
        if self.proc is not None:
            self.resume()
            self.proc.stop()
            self.proc = None


@dataclass
class Active:
    """A fault in force: what the heal must undo."""

    fault: Fault
    started: float  # time.monotonic() at injection
    detail: dict[str, int] = field(default_factory=dict)


class Injector:
    """Applies and heals faults on a :class:`LocalTree` whose child links run through proxies."""

    def __init__(self, tree: LocalTree, proxies: dict[str, FaultProxy], sims: dict[str, ChaosSimulator]) -> None:
        self.tree = tree
        self.proxies = proxies
        self.sims = sims
        self.paused: set[str] = set()

    def nats_pid(self, court: str) -> int | None:
        """The pid of the node's embedded nats-server, from its pid file (None: none running)."""
        path = Home(self.tree.homes[court]).nats_dir / PID_NAME
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def inject(self, fault: Fault) -> Active:
        kind, target = fault.kind, fault.target
        active = Active(fault, time.monotonic())
        if kind in NODE_KILLS:
            if self.tree.running(target):
                self.tree.kill(target)
        elif kind is FaultKind.NODE_PAUSE:
            proc = self.tree.procs.get(target)
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGSTOP)
                self.paused.add(target)
        elif kind is FaultKind.LINK_CUT:
            self.proxies[target].cut()
        elif kind is FaultKind.LINK_DELAY:
            self.proxies[target].delay_ms = fault.param
        elif kind is FaultKind.LINK_STALL:
            self.proxies[target].stall()
        elif kind is FaultKind.NATS_RESTART:
            pid = self.nats_pid(target)
            if pid is not None:
                active.detail["pid"] = pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        elif kind is FaultKind.SIM_STOP:
            self.sims[target].pause()
        elif kind is FaultKind.SIM_SLOW:
            self.sims[target].set_fault("slow", fault.param)
        elif kind is FaultKind.SIM_DROP_REPLY:
            self.sims[target].set_fault("drop_reply")
        elif kind is FaultKind.SIM_RESTART:
            self.sims[target].kill()
        return active

    def heal(self, active: Active) -> None:
        fault = active.fault
        kind, target = fault.kind, fault.target
        if kind in NODE_KILLS:
            if not self.tree.running(target):
                self.tree.start(target, timeout=120)
        elif kind is FaultKind.NODE_PAUSE:
            self.resume_node(target)
        elif kind in (FaultKind.LINK_CUT, FaultKind.LINK_STALL):
            self.proxies[target].heal()
        elif kind is FaultKind.LINK_DELAY:
            self.proxies[target].delay_ms = 0
        elif kind is FaultKind.NATS_RESTART:
            pass  # the node restarts its bus itself; recovery is watched, not done here
        elif kind is FaultKind.SIM_STOP:
            self.sims[target].resume()
        elif kind in (FaultKind.SIM_SLOW, FaultKind.SIM_DROP_REPLY):
            self.sims[target].set_fault("normal")
        elif kind is FaultKind.SIM_RESTART:
            self.sims[target].start()

    def resume_node(self, court: str) -> None:
        self.paused.discard(court)
        proc = self.tree.procs.get(court)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)

    def resume_all(self) -> None:
        """SIGCONT every paused node and simulator (before any stop: a stopped process cannot exit)."""
        for court in list(self.paused):
            self.resume_node(court)
        for sim in self.sims.values():
            sim.resume()

    def heal_everything(self) -> None:
        """Undo every possible fault (end of the load phase, or cleanup after a failure)."""
        self.resume_all()
        for proxy in self.proxies.values():
            proxy.heal()
            proxy.delay_ms = 0
        for sim in self.sims.values():
            if not sim.running:
                sim.start()
            sim.resume()
            with contextlib.suppress(OSError):
                sim.set_fault("normal")
        for court in self.tree.order:
            if not self.tree.running(court):
                self.tree.start(court, timeout=120)
