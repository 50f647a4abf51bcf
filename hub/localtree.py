"""A federation of real node processes on loopback: for the demo, benchmarks and tests.

Each node gets a home under one base directory, a free loopback port, and its own ``court-hub run``
process (and so its own embedded nats-server). Enrollment goes through the real path: the parent
issues a join token, the child joins over pinned TLS. Processes can be killed (SIGKILL), stopped
(SIGTERM) and restarted, which is what the fault tests need.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from hub import provision
from hub.config import Home
from hub.errors import Unavailable
from hub.netutil import free_port
from hub.proto.courthub.v1 import admin_pb2 as apb
from hub.proto.courthub.v1 import admin_pb2_grpc as agrpc

T = TypeVar("T")


@dataclass(frozen=True)
class NodeSpec:
    court: str
    name: str
    parent: str | None = None
    # Written into the node's config.toml at provisioning: [plugins.<name>] sections, [agency].
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)
    agency: dict[str, Any] = field(default_factory=dict, compare=False)


# The demo's tree: a province, two cities, three basic courts (names as court staff use them).
DEMO_TREE = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫01", "郑州市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),
    NodeSpec("豫0102", "郑州市中原区人民法院", "豫01"),
]


def wide_tree(fanout: int = 3) -> list[NodeSpec]:
    """1 + fanout + fanout² nodes: a province, its cities, their basic courts."""
    specs = [NodeSpec("豫", "河南省高级人民法院")]
    for i in range(1, fanout + 1):
        city = f"豫{i:02d}"
        specs.append(NodeSpec(city, f"第{i}中级人民法院", "豫"))
        for j in range(1, fanout + 1):
            specs.append(NodeSpec(f"{city}{j:02d}", f"第{i}-{j}基层人民法院", city))
    return specs


class LocalTree:
    def __init__(
        self,
        base: Path,
        specs: list[NodeSpec],
        *,
        store_urls: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        self.specs = {s.court: s for s in specs}
        self.order = [s.court for s in specs]
        self.store_urls = store_urls or {}
        self.env = {**os.environ, **(env or {})}
        self.homes = {s.court: base / f"node-{i:02d}" for i, s in enumerate(specs)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._channels: dict[str, grpc.Channel] = {}
        # Admin calls may come from several threads (the chaos load) while another kills nodes.
        self._channels_lock = threading.Lock()

    # -- set-up ----------------------------------------------------------------------------------
    def provision(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        for court in self.order:
            spec = self.specs[court]
            provision.init_node(
                self.homes[court],
                court,
                spec.name,
                f"127.0.0.1:{free_port()}",
                root=spec.parent is None,
                store_url=self.store_urls.get(court, ""),
            )
            if spec.plugins or spec.agency:
                self.configure(court, plugins=spec.plugins, agency=spec.agency)

    def configure(
        self, court: str, *, plugins: dict[str, dict[str, Any]] | None = None, agency: dict[str, Any] | None = None
    ) -> None:
        """Set [plugins.*] sections and [agency] settings in a node's config.toml (takes effect on
        start, or on ``plugins.reload`` for plugins)."""
        home = Home(self.homes[court])
        config = home.load()
        if plugins is not None:
            config.plugins = {name: dict(section) for name, section in plugins.items()}
        if agency:
            config.agency = config.agency.model_validate({**config.agency.model_dump(), **agency})
        home.save(config)

    def start_all(self, timeout: float = 60) -> None:
        """Provision (if needed), then start and enroll every node, parents first."""
        if not Home(self.homes[self.order[0]]).exists():
            self.provision()
        for court in self.order:
            spec = self.specs[court]
            home = Home(self.homes[court])
            if spec.parent is not None and home.load().parent is None:
                token = provision.issue_token(self.homes[spec.parent], court, 600)
                asyncio.run(provision.join(self.homes[court], token.token))
            self.start(court, timeout=timeout)
        self.wait_links(timeout)

    def start(self, court: str, timeout: float = 60) -> None:
        self.spawn(court)
        self.wait_ready(court, timeout)

    def start_many(self, courts: list[str], timeout: float = 60) -> None:
        """Start several nodes at once (their start-ups overlap), then wait until each is ready."""
        for court in courts:
            self.spawn(court)
        for court in courts:
            self.wait_ready(court, timeout)

    def spawn(self, court: str) -> None:
        """Start the node's process without waiting for it to be ready."""
        home = self.homes[court]
        log = open(home / "node.log", "ab")  # noqa: SIM115 - handed to the child process
        self.procs[court] = subprocess.Popen(
            [sys.executable, "-m", "hub", "run", "--home", str(home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, court: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self.procs.get(court)
            if proc is not None and proc.poll() is not None:
                tail = (self.homes[court] / "node.log").read_text(errors="replace")[-2000:]
                raise Unavailable(f"node {court} exited with {proc.returncode}:\n{tail}")
            try:
                self.status(court)
                return
            except (Unavailable, grpc.RpcError):
                if time.monotonic() > deadline:
                    raise Unavailable(f"node {court} not ready after {timeout}s") from None
                time.sleep(0.1)

    def wait_links(self, timeout: float = 60) -> None:
        """Until every running child reports its parent link up."""
        self.wait_until(self._links_up, timeout, "links up")

    def _links_up(self) -> bool:
        for court in self.order:
            if self.specs[court].parent is None or not self.running(court):
                continue
            parent = self.status(court)["parent"]
            if parent is None or parent["state"] != "up":
                return False
        return True

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.1)

    # -- processes -------------------------------------------------------------------------------
    def running(self, court: str) -> bool:
        proc = self.procs.get(court)
        return proc is not None and proc.poll() is None

    def kill(self, court: str) -> None:
        """SIGKILL the node's process group (the node and its nats-server): a crash, not a stop."""
        proc = self.procs.pop(court)
        self._drop_channel(court)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self, court: str, timeout: float = 20) -> int:
        proc = self.procs.pop(court)
        self._drop_channel(court)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait(10)
        # The node stops its own nats-server; make sure nothing of the group is left behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return code

    def stop_all(self) -> None:
        for court in reversed(self.order):
            if court in self.procs:
                try:
                    self.stop(court)
                except Exception:  # noqa: S112 - best effort at teardown
                    continue
        with self._channels_lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def __enter__(self) -> LocalTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    # -- admin -----------------------------------------------------------------------------------
    def _drop_channel(self, court: str) -> None:
        with self._channels_lock:
            channel = self._channels.pop(court, None)
        if channel is not None:
            channel.close()

    def admin(self, court: str, fn: Callable[[agrpc.AdminServiceStub], T]) -> T:
        sock = Home(self.homes[court]).admin_socket
        if not sock.exists():
            raise Unavailable(f"node {court} has no admin socket")
        with self._channels_lock:
            channel = self._channels.get(court)
            if channel is None:
                channel = self._channels[court] = grpc.insecure_channel(f"unix://{sock}")
        try:
            return fn(agrpc.AdminServiceStub(channel))
        except ValueError as exc:  # another thread closed the channel (the node was killed or restarted)
            if "closed" not in str(exc).lower():
                raise
            raise Unavailable(f"node {court}: admin channel closed") from None
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self._drop_channel(court)
                raise Unavailable(f"node {court}: {exc.details()}") from None
            raise

    def status(self, court: str) -> dict[str, Any]:
        reply = self.admin(court, lambda s: s.Status(apb.StatusRequest(), timeout=10))
        data: dict[str, Any] = json.loads(reply.json)
        return data

    def call(self, court: str, method: str, args: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        request = apb.CallRequest(method=method, args_json=json.dumps(args or {}, ensure_ascii=False))
        reply = self.admin(court, lambda s: s.Call(request, timeout=timeout))
        return json.loads(reply.result_json)

    def send_directive(self, court: str, to: str, title: str, body: str = "", *, subtree: bool = False) -> str:
        request = apb.SendDirectiveRequest(to=to, subtree=subtree, title=title, body=body, level="routine")
        reply = self.admin(court, lambda s: s.SendDirective(request, timeout=30))
        return str(reply.envelope_id)

    def ping(self, court: str, to: str, count: int = 1, timeout_ms: int = 5000) -> list[apb.PingResult]:
        request = apb.PingRequest(court=to, count=count, timeout_ms=timeout_ms)
        return list(self.admin(court, lambda s: s.Ping(request, timeout=count * timeout_ms / 1000 + 10)).results)
