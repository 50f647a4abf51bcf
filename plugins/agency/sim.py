"""Start, run and spawn reference agency simulators.

In-process (async)::

    handle = await start_simulator("bank", "127.0.0.1:0", seed=1)
    ... handle.url ...
    await handle.stop()

Blocking (what ``court-hub agency-sim`` calls; stops cleanly on SIGTERM/SIGINT)::

    run_simulator("land", "127.0.0.1:8702", seed=7, data_dir=Path("/var/lib/sim"))

As a separate process (tests, demo)::

    python -m plugins.agency.sim bank --listen 127.0.0.1:0 --seed 1 --ready-file /tmp/bank.url
        [--data-dir DIR] [--delay-ms N] [--approvers trusted.json] [--now 2026-01-01T00:00:00Z]

When the socket is bound, the process writes its base URL (``http://127.0.0.1:PORT``, one line) to
the ready file (atomically: written to a temporary name, then renamed) and prints it on stdout.
:class:`SimulatorProcess` wraps that for Python callers.

The store is ``DATA_DIR/<kind>.sqlite3``; without ``--data-dir`` a temporary directory is used and
removed on exit. An existing store is reused (same seed required); its clock setting persists.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from plugins.agency.approval import ApprovalVerifier, load_trusted_approvers
from plugins.agency.server import Agency, SimulatorServer, bind_socket, parse_iso_ms, socket_url

log = logging.getLogger("courthub.agency.sim")

KINDS: dict[str, str] = {
    "bank": "plugins.bank.sim:BankAgency",
    "land": "plugins.land.sim:LandAgency",
    "public_security": "plugins.public_security.sim:PublicSecurityAgency",
    "telecom": "plugins.telecom.sim:TelecomAgency",
}


def make_agency(kind: str) -> Agency:
    """A fresh :class:`Agency` of ``kind`` (bank, land, public_security, telecom)."""
    target = KINDS.get(kind)
    if target is None:
        raise ValueError(f"unknown agency kind {kind!r}; expected one of {', '.join(KINDS)}")
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    agency = cls()
    assert isinstance(agency, Agency)
    return agency


def _now_ms(now: int | str | None) -> int | None:
    if now is None or isinstance(now, int):
        return now
    return parse_iso_ms(now)


@dataclass
class SimulatorHandle:
    """A simulator running in this process's event loop."""

    kind: str
    url: str
    db_path: Path
    server: SimulatorServer
    _runner: web.AppRunner
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    async def stop(self) -> None:
        self.server.release_hung()
        await self._runner.cleanup()
        self.server.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


async def start_simulator(
    kind: str,
    listen: str = "127.0.0.1:0",
    seed: int = 1,
    data_dir: Path | None = None,
    delay_ms: int = 0,
    *,
    approvers: Path | None = None,
    trusted: Mapping[str, Sequence[Ed25519PublicKey]] | None = None,
    verifier: ApprovalVerifier | None = None,
    now: int | str | None = None,
) -> SimulatorHandle:
    """Start a simulator in the running event loop. ``approvers`` is a trusted-approvers JSON file
    (:func:`~plugins.agency.approval.load_trusted_approvers`); ``trusted`` the same as a mapping;
    ``verifier`` replaces the JWS check altogether. ``now`` pins the simulator clock (epoch ms or
    ISO-8601)."""
    agency = make_agency(kind)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"courthub-sim-{kind}-")
        data_dir = Path(tmp.name)
    data_dir.mkdir(parents=True, exist_ok=True)
    if approvers is not None and trusted is None:
        trusted = load_trusted_approvers(approvers)
    db_path = data_dir / f"{kind}.sqlite3"
    server = SimulatorServer(
        agency, db_path=db_path, seed=seed, delay_ms=delay_ms, verifier=verifier, trusted=trusted, now_ms=_now_ms(now)
    )
    runner = web.AppRunner(server.app(), shutdown_timeout=2.0, access_log=None)
    try:
        sock = bind_socket(listen)
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
    except BaseException:
        await runner.cleanup()
        server.close()
        if tmp is not None:
            tmp.cleanup()
        raise
    url = socket_url(sock)
    log.info("agency simulator %s (seed %d) listening on %s, store %s", kind, seed, url, db_path)
    return SimulatorHandle(kind=kind, url=url, db_path=db_path, server=server, _runner=runner, _tmp=tmp)


def _write_ready(path: Path, url: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(url + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_simulator(
    kind: str,
    listen: str,
    seed: int,
    data_dir: Path | None,
    delay_ms: int = 0,
    *,
    approvers: Path | None = None,
    now: int | str | None = None,
    ready_file: Path | None = None,
) -> None:
    """Run a simulator until SIGTERM or SIGINT (blocking)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        handle = await start_simulator(kind, listen, seed, data_dir, delay_ms, approvers=approvers, now=now)
        try:
            print(f"agency simulator {kind} (seed {seed}) listening on {handle.url}", flush=True)
            if ready_file is not None:
                _write_ready(ready_file, handle.url)
            await stop.wait()
            log.info("agency simulator %s stopping", kind)
        finally:
            await handle.stop()

    asyncio.run(main())


class SimulatorProcess:
    """A simulator in a child process (``python -m plugins.agency.sim``)."""

    def __init__(self, kind: str, url: str, proc: subprocess.Popen[bytes], workdir: tempfile.TemporaryDirectory[str]):
        self.kind = kind
        self.url = url
        self.proc = proc
        self._workdir = workdir

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return Path(self._workdir.name) / "sim.log"

    @classmethod
    def start(
        cls,
        kind: str,
        *,
        seed: int = 1,
        listen: str = "127.0.0.1:0",
        data_dir: Path | None = None,
        delay_ms: int = 0,
        approvers: Path | None = None,
        now: int | str | None = None,
        timeout_s: float = 30.0,
        python: str = sys.executable,
    ) -> SimulatorProcess:
        """Spawn a simulator process and wait until it is listening (or fail with its log)."""
        workdir = tempfile.TemporaryDirectory(prefix=f"courthub-simproc-{kind}-")
        ready = Path(workdir.name) / "ready"
        args = [python, "-m", "plugins.agency.sim", kind, "--listen", listen, "--seed", str(seed)]
        args += ["--ready-file", str(ready), "--delay-ms", str(delay_ms)]
        if data_dir is not None:
            args += ["--data-dir", str(data_dir)]
        if approvers is not None:
            args += ["--approvers", str(approvers)]
        if now is not None:
            args += ["--now", str(now)]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        log_file = (Path(workdir.name) / "sim.log").open("wb")
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=root)
        log_file.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if ready.exists():
                url = ready.read_text(encoding="utf-8").strip()
                return cls(kind, url, proc, workdir)
            code = proc.poll()
            if code is not None or time.monotonic() > deadline:
                if code is None:
                    proc.kill()
                    proc.wait()
                tail = (Path(workdir.name) / "sim.log").read_text(encoding="utf-8", errors="replace")[-2000:]
                workdir.cleanup()
                what = f"exited with {code}" if code is not None else f"was not ready within {timeout_s}s"
                raise RuntimeError(f"agency simulator {kind} {what}; its output:\n{tail}")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, wait (SIGKILL after ``timeout_s``); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._workdir.cleanup()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL (crash tests)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plugins.agency.sim", description="Run a reference agency simulator"
    )
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to bind (port 0: a free port)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic data")
    parser.add_argument("--data-dir", type=Path, default=None, help="directory of the SQLite store (default: temp)")
    parser.add_argument("--delay-ms", type=int, default=0, help="delay every answer by this many milliseconds")
    parser.add_argument("--approvers", type=Path, default=None, help="trusted approvers JSON file")
    parser.add_argument("--now", default=None, help="pin the simulator clock (ISO-8601 or epoch ms)")
    parser.add_argument("--ready-file", type=Path, default=None, help="write the base URL here once listening")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    now: int | str | None = args.now
    if isinstance(now, str) and now.isdigit():
        now = int(now)
    try:
        run_simulator(
            args.kind,
            args.listen,
            args.seed,
            args.data_dir,
            args.delay_ms,
            approvers=args.approvers,
            now=now,
            ready_file=args.ready_file,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
