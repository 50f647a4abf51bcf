"""The agency work queue against a real nats-server (JetStream) and a SQLite store.

Covers: jobs answered; a plugin that raises, one that hangs, one that answers garbage → retried
with backoff, then dead-lettered with the reason while a healthy plugin's jobs all succeed; a
worker process SIGKILLed during the plugin call → redelivered, the agency applies the request id
once; two workers on one queue share the work without duplicates; the sweeper re-publishes a job
whose publish was lost; deadlines; resubmission.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from aiohttp import web
from nats.aio.client import Client
from sqlalchemy import event, insert

from hub.errors import InvalidInput
from hub.jobs import (
    Job,
    JobQueue,
    JobSpec,
    RetryPolicy,
    Worker,
    dead_letters,
    dead_stream,
    node_token,
    queue_status,
    run_worker,
    subscribe_job_done,
)
from hub.natsserver import EmbeddedNats
from hub.plugins import (
    PLUGIN_API_VERSION,
    AgencyKind,
    AgencyRejected,
    ControlAction,
    ControlRequest,
    ControlResult,
    ControlStatus,
    CourtInfo,
    InquiryRequest,
    InquiryResult,
    InquiryStatus,
    PluginConfigError,
    PluginInfo,
    Subject,
    hookimpl,
)
from hub.plugins.host import PluginHost
from hub.store import Store, sqlite_url
from hub.store.agency_schema import agency_jobs
from hub.store.schema import metadata

NODE = "豫1402"
CASE = "（2024）豫1402执123号"
COURT = CourtInfo(court_code=NODE, court_name="商丘市梁园区人民法院", judge_name="王法官")
SUBJECT = Subject(name="张三", id_no="410102199001011234")
# Call timeouts come from the host: 5 s by default, 0.3 s for the hanging plugin (its config section).
FAST = RetryPolicy(max_attempts=3, backoff_s=(0.2, 0.4), ack_wait_s=2.0, publish_grace_s=0.0)
# For the kill test: calls may last (the agency holds its answer), a dead worker's job returns fast.
KILL_POLICY = RetryPolicy(max_attempts=3, backoff_s=(0.2,), ack_wait_s=1.0, call_timeout_s=30.0)
TESTS_DIR = Path(__file__).resolve().parent

pytestmark = pytest.mark.timeout(60)


def inquiry(request_id: str, capability: str = "bank.inquiry") -> InquiryRequest:
    return InquiryRequest(request_id=request_id, capability=capability, case_number=CASE, court=COURT, subject=SUBJECT)


def freeze(request_id: str, capability: str = "bank.control") -> ControlRequest:
    return ControlRequest(
        request_id=request_id,
        capability=capability,
        action=ControlAction.FREEZE,
        case_number=CASE,
        court=COURT,
        subject=SUBJECT,
        asset_id="6222000000000001",
        amount_fen=500_000,
        term_days=365,
    )


# -- test doubles: agencies and plugins ------------------------------------------------------


class Bank:
    """A healthy in-memory bank plugin that counts calls by request id and by worker."""

    name = "bank-ok"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: Counter[str] = Counter()
        self.call_times: dict[str, list[float]] = {}

    @hookimpl
    def courthub_plugin_info(self) -> PluginInfo:
        return PluginInfo(self.name, "1.0", PLUGIN_API_VERSION, AgencyKind.BANK, ("bank.inquiry", "bank.control"))

    def _count(self, request_id: str) -> None:
        self.calls[request_id] += 1
        self.call_times.setdefault(request_id, []).append(time.monotonic())

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> Any:
        self._count(request.request_id)
        await asyncio.sleep(self.delay_s)
        return InquiryResult(request_id=request.request_id, status=InquiryStatus.ANSWERED)

    @hookimpl
    async def courthub_control(self, request: ControlRequest) -> Any:
        self._count(request.request_id)
        await asyncio.sleep(self.delay_s)
        return ControlResult(
            request_id=request.request_id,
            action=request.action,
            status=ControlStatus.DONE,
            measure_id=f"M-{request.request_id}",
            requested_amount_fen=request.amount_fen,
            controlled_amount_fen=request.amount_fen,
        )


class RaisingBank(Bank):
    name = "bank-raises"

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> Any:
        self._count(request.request_id)
        raise ConnectionError("agency socket reset")

    @hookimpl
    async def courthub_control(self, request: ControlRequest) -> Any:
        self._count(request.request_id)
        raise AgencyRejected("court certificate not accepted by this bank")


class HangingBank(Bank):
    name = "bank-hangs"

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> Any:
        self._count(request.request_id)
        await asyncio.sleep(3600)


class GarbageBank(Bank):
    name = "bank-garbage"

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> Any:
        self._count(request.request_id)
        return {
            "request_id": request.request_id,
            "status": "answered",
            "assets": [{"kind": "deposit", "asset_id": "A1", "amount_fen": -5}],
        }


class HttpAgencyPlugin:
    """A plugin speaking to :class:`FakeAgency` over HTTP (used by the worker subprocess)."""

    def __init__(self) -> None:
        self.base_url = ""

    @hookimpl
    def courthub_plugin_info(self) -> PluginInfo:
        return PluginInfo("agency-http", "1.0", PLUGIN_API_VERSION, AgencyKind.BANK, ("bank.control",))

    @hookimpl
    def courthub_configure(self, config: Mapping[str, Any]) -> None:
        url = config.get("base_url")
        if not isinstance(url, str) or not url.startswith("http"):
            raise PluginConfigError(f"base_url: expected an http URL, got {url!r}")
        self.base_url = url

    @hookimpl
    async def courthub_control(self, request: ControlRequest) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.base_url}/control", json=request.to_dict()) as resp,
        ):
            resp.raise_for_status()
            return await resp.json()


class FakeAgency:
    """A tiny HTTP agency: applies each request id once, answers duplicates with the first outcome.

    The first call for a request id is applied at once and then held for ``hold_s`` before the
    answer (the window in which the test kills the worker)."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.calls: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.received = asyncio.Event()
        self.release = asyncio.Event()  # ends a hold early (test teardown)

    async def control(self, request: web.Request) -> web.Response:
        body = await request.json()
        rid = body["request_id"]
        self.calls[rid] += 1
        first = rid not in self.outcomes
        if first:
            self.effects[rid] += 1  # the freeze takes effect now
            self.outcomes[rid] = {
                "request_id": rid,
                "action": body["action"],
                "status": "done",
                "measure_id": f"AG-{len(self.outcomes) + 1}",
            }
        self.received.set()
        if first and self.hold_s > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.hold_s)
        return web.json_response(self.outcomes[rid])


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "hub.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(sqlite_url(db_path))
    metadata.create_all(s.engine)
    s.start()
    yield s
    s.close()


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


def make_host(*plugins: object, config: Mapping[str, Mapping[str, Any]] | None = None) -> PluginHost:
    host = PluginHost(config, default_timeout_s=5.0)
    for plugin in plugins:
        host.register(plugin)
    return host


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def all_final(store: Store, n: int) -> bool:
    status = await queue_status(store)
    final = sum(int(c) for counts in status["plugins"].values() for s, c in counts.items() if s != "pending")
    return final >= n


class running_worker:
    """``async with running_worker(...)``: run_worker in a task, stopped on exit."""

    def __init__(self, store: Store, url: str, host: PluginHost, **kw: Any) -> None:
        self.args = (store, url, NODE, host)
        self.kw = {"policy": FAST, "sweep_interval_s": None, **kw}
        self.stop = asyncio.Event()

    async def __aenter__(self) -> running_worker:
        self.task = asyncio.create_task(run_worker(*self.args, self.stop, **self.kw))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        self.worker: Worker = await asyncio.wait_for(self.task, 15)


# -- tests -----------------------------------------------------------------------------------


def test_node_token_is_ascii_and_stable() -> None:
    assert node_token("豫1402") == "u8c6b1402"
    assert node_token("最高法") == "u6700u9ad8u6cd5"
    assert node_token("豫1402").isascii()


async def test_jobs_are_answered_and_announced(store: Store, nats_server: EmbeddedNats, nc: Client) -> None:
    bank = Bank()
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(["bank-ok"])
    events: list[dict[str, Any]] = []

    async def on_done(event: dict[str, Any]) -> None:
        events.append(event)

    await subscribe_job_done(nc, NODE, on_done)
    for i in range(10):
        await queue.submit_inquiry("bank-ok", inquiry(f"inq-{i}"))
    await queue.submit_control("bank-ok", freeze("ctl-1"))
    async with running_worker(store, nats_server.url, make_host(bank)):
        await wait_until(lambda: all_final(store, 11))
        await wait_until(lambda: asyncio.sleep(0, len(events) >= 11))
    jobs = await queue.for_case(CASE)
    assert {j.status for j in jobs} == {"answered"} and len(jobs) == 11
    ctl = await queue.get("ctl-1")
    assert ctl is not None and ctl.result is not None and ctl.result["measure_id"] == "M-ctl-1"
    assert ctl.kind == "control" and ctl.action == "freeze" and ctl.attempts == 1
    assert ctl.started_at_ms is not None and ctl.finished_at_ms is not None and ctl.elapsed_ms is not None
    assert set(bank.calls.values()) == {1}
    depths = await queue.bus_status(["bank-ok"])
    assert depths["consumers"]["bank-ok"]["pending"] == 0 and depths["consumers"]["bank-ok"]["ack_pending"] == 0
    assert {e["job_id"] for e in events} == {j.job_id for j in jobs}
    assert all(e["status"] == "answered" for e in events)


async def test_resubmission_is_a_no_op_and_id_reuse_is_refused(store: Store, nc: Client) -> None:
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(["bank-ok"])
    first = await queue.submit_inquiry("bank-ok", inquiry("same"))
    again = await queue.submit_inquiry("bank-ok", inquiry("same"))
    assert again.created_at_ms == first.created_at_ms
    with pytest.raises(InvalidInput, match="never be reused"):
        await queue.submit_inquiry("bank-ok", inquiry("same", capability="bank.transactions"))
    info = await nc.jetstream().stream_info(f"COURTHUB_JOBS_{node_token(NODE)}")
    assert info.state.messages == 1


async def test_bad_plugins_are_retried_then_dead_lettered_while_good_ones_succeed(
    store: Store, nats_server: EmbeddedNats, nc: Client
) -> None:
    good, raising, hanging, garbage = Bank(), RaisingBank(), HangingBank(), GarbageBank()
    names = ["bank-ok", "bank-raises", "bank-hangs", "bank-garbage"]
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(names)
    for i in range(20):
        await queue.submit_inquiry("bank-ok", inquiry(f"ok-{i}"))
    for name in names[1:]:
        for i in range(2):
            await queue.submit_inquiry(name, inquiry(f"{name}-{i}"))
    await queue.submit_control("bank-raises", freeze("rejected-1"))
    total = 20 + 6 + 1
    started = time.monotonic()
    host = make_host(good, raising, hanging, garbage, config={"bank-hangs": {"call_timeout_s": 0.3}})
    async with running_worker(store, nats_server.url, host):
        await wait_until(lambda: all_final(store, total))
    assert time.monotonic() - started < 15

    status = await queue_status(store)
    assert status["plugins"]["bank-ok"]["answered"] == 20
    assert status["plugins"]["bank-raises"] == {**status["plugins"]["bank-raises"], "dead": 2, "failed": 1}
    assert status["plugins"]["bank-hangs"]["dead"] == 2
    assert status["plugins"]["bank-garbage"]["dead"] == 2
    assert set(good.calls.values()) == {1}

    dead = {j.job_id: j for j in await dead_letters(store)}
    for name, kind, text in [
        ("bank-raises", "raised", "ConnectionError: agency socket reset"),
        ("bank-hangs", "timeout", "no answer within 0.3 s"),
        ("bank-garbage", "invalid", "InquiryResult.assets[0].amount_fen"),
    ]:
        job = dead[f"{name}-0"]
        assert job.status == "dead" and job.attempts == FAST.max_attempts
        assert job.error is not None and job.error["kind"] == kind and text in job.error["message"]
        assert "gave up after 3 attempts" in job.error["message"]
    rejected = dead["rejected-1"]
    assert rejected.status == "failed" and rejected.attempts == 1
    assert rejected.error is not None and "AgencyRejected" in rejected.error["message"]
    assert raising.calls["rejected-1"] == 1

    # Backoff between attempts follows the policy (0.2 s, then 0.4 s).
    times = raising.call_times["bank-raises-0"]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.18 and times[2] - times[1] >= 0.38

    # The dead-letter stream holds the same jobs with their reasons.
    js = nc.jetstream()
    sub = await js.pull_subscribe(f"courthub.{node_token(NODE)}.dead.*", stream=dead_stream(NODE))
    msgs = await sub.fetch(20, timeout=2)
    letters = {json.loads(m.data)["job_id"]: json.loads(m.data) for m in msgs}
    assert set(letters) == set(dead)
    assert letters["bank-hangs-1"]["reason"] == "timeout" and letters["rejected-1"]["status"] == "failed"
    assert status["dead_letters"] and status["oldest_pending_age_ms"] is None
    assert (await queue.bus_status(names))["dead_letter_messages"] == len(dead)


async def test_two_workers_share_a_queue_without_duplicates(
    store: Store, nats_server: EmbeddedNats, nc: Client
) -> None:
    a, b = Bank(delay_s=0.02), Bank(delay_s=0.02)
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(["bank-ok"])
    for i in range(60):
        await queue.submit_inquiry("bank-ok", inquiry(f"j-{i}"))
    async with (
        running_worker(store, nats_server.url, make_host(a), concurrency=2) as wa,
        running_worker(store, nats_server.url, make_host(b), concurrency=2) as wb,
    ):
        await wait_until(lambda: all_final(store, 60))
    assert set(a.calls) & set(b.calls) == set()
    assert set(a.calls) | set(b.calls) == {f"j-{i}" for i in range(60)}
    assert a.calls and b.calls, "both workers should have taken jobs"
    assert set(a.calls.values()) | set(b.calls.values()) == {1}
    assert wa.worker.stats.answered + wb.worker.stats.answered == 60
    jobs = await queue.for_case(CASE)
    assert len({j.worker for j in jobs}) == 2


_WORKER_SCRIPT = """
import asyncio, json, signal, sys
sys.path.insert(0, {tests_dir!r})
from test_jobs import KILL_POLICY, NODE, HttpAgencyPlugin
from hub.jobs import run_worker
from hub.plugins.host import PluginHost
from hub.store import Store

async def main():
    store = Store({db_url!r})
    store.start()
    host = PluginHost({{"agency-http": {{"base_url": {agency_url!r}}}}})
    host.register(HttpAgencyPlugin())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("worker ready", flush=True)
    await run_worker(store, {nats_url!r}, NODE, host, stop, policy=KILL_POLICY, sweep_interval_s=None)
    store.close()

asyncio.run(main())
"""


@pytest.fixture
async def agency() -> AsyncIterator[tuple[FakeAgency, str]]:
    fake = FakeAgency(hold_s=30.0)
    app = web.Application()
    app.router.add_post("/control", fake.control)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, f"http://127.0.0.1:{port}"
    fake.release.set()
    await runner.cleanup()


async def test_worker_killed_mid_call_is_redelivered_and_applied_once(
    store: Store, db_path: Path, nats_server: EmbeddedNats, nc: Client, agency: tuple[FakeAgency, str]
) -> None:
    fake, agency_url = agency
    queue = JobQueue(store, nc, NODE, policy=KILL_POLICY)
    await queue.setup(["agency-http"])
    await queue.submit_control("agency-http", freeze("freeze-42"))

    script = _WORKER_SCRIPT.format(
        tests_dir=str(TESTS_DIR), db_url=sqlite_url(db_path), agency_url=agency_url, nats_url=nats_server.url
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await asyncio.wait_for(fake.received.wait(), 20)  # the agency has applied the freeze …
        os.kill(proc.pid, signal.SIGKILL)  # … and the worker dies before it hears the answer
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    _, stderr = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()
    job = await queue.get("freeze-42")
    assert job is not None and job.status == "pending" and job.attempts == 1

    fake.hold_s = 0.0
    host = make_host(HttpAgencyPlugin(), config={"agency-http": {"base_url": agency_url}})
    async with running_worker(store, nats_server.url, host, policy=KILL_POLICY):
        await wait_until(lambda: all_final(store, 1))
    job = await queue.get("freeze-42")
    assert job is not None and job.status == "answered" and job.attempts == 2
    assert fake.calls["freeze-42"] == 2  # delivered twice …
    assert fake.effects["freeze-42"] == 1  # … applied once
    assert job.result is not None and job.result["measure_id"] == "AG-1"


async def test_sweeper_publishes_a_job_whose_publish_was_lost(
    store: Store, nats_server: EmbeddedNats, nc: Client
) -> None:
    bank = Bank()
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(["bank-ok"])
    request = inquiry("lost-1")

    def crash_before_publish(conn: Any) -> None:  # the node died between commit and publish
        conn.execute(
            insert(agency_jobs).values(
                job_id="lost-1",
                kind="inquiry",
                case_number=CASE,
                plugin="bank-ok",
                capability="bank.inquiry",
                request=json.dumps(request.to_dict()),
                status="pending",
                attempts=0,
                created_at_ms=1,
                updated_at_ms=1,
            )
        )

    await store.write(crash_before_publish)
    report = await queue.sweep()
    assert report.republished == ["lost-1"]
    async with running_worker(store, nats_server.url, make_host(bank)):
        await wait_until(lambda: all_final(store, 1))
    assert bank.calls["lost-1"] == 1
    assert (await queue.sweep()).republished == []


async def test_sweeper_republishes_stale_job_only_when_consumer_is_idle(
    store: Store, nats_server: EmbeddedNats, nc: Client
) -> None:
    policy = RetryPolicy(max_attempts=3, backoff_s=(0.1,), ack_wait_s=2.0, stale_after_s=0.0, publish_grace_s=0.0)
    queue = JobQueue(store, nc, NODE, policy=policy)
    await queue.setup(["bank-ok"])
    await queue.submit_inquiry("bank-ok", inquiry("stale-1"))
    # The message is still in the consumer: not lost, not re-published.
    assert (await queue.sweep()).republished == []
    # JetStream loses it (purged here; in life: max_deliver exhausted, or a lost stream).
    await nc.jetstream().purge_stream(f"COURTHUB_JOBS_{node_token(NODE)}")
    assert (await queue.sweep()).republished == ["stale-1"]
    bank = Bank()
    async with running_worker(store, nats_server.url, make_host(bank), policy=policy):
        await wait_until(lambda: all_final(store, 1))
    assert bank.calls["stale-1"] == 1


async def test_job_past_its_deadline_times_out(store: Store, nats_server: EmbeddedNats, nc: Client) -> None:
    bank = Bank()
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(["bank-ok"])
    await queue.submit_inquiry("bank-ok", inquiry("late-1"), deadline_at_ms=1)
    async with running_worker(store, nats_server.url, make_host(bank)):
        await wait_until(lambda: all_final(store, 1))
    job = await queue.get("late-1")
    assert job is not None and job.status == "timed_out" and job.error is not None
    assert job.error["kind"] == "deadline" and bank.calls["late-1"] == 0


# -- batching: one write per batch of submissions, claims and outcomes -------------------------


async def test_submit_many_writes_one_transaction_and_rejects_a_reused_id_as_a_whole(store: Store, nc: Client) -> None:
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(["bank-ok"])
    specs = [JobSpec.inquiry("bank-ok", inquiry(f"batch-{i}")) for i in range(5)]
    before = store.commits
    jobs = await queue.submit_many(specs)
    # One transaction for the five rows, one for their confirmed publishes.
    assert store.commits - before == 2
    assert [j.job_id for j in jobs] == [f"batch-{i}" for i in range(5)]
    assert all(j.status == "pending" and j.attempts == 0 for j in jobs)
    stored = {j.job_id: j for j in await queue.for_case(CASE)}
    assert set(stored) == {f"batch-{i}" for i in range(5)}
    assert all(j.published_at_ms is not None for j in stored.values())
    assert stored["batch-0"].request == jobs[0].request == inquiry("batch-0").to_dict()

    again = await queue.submit_many([*specs, JobSpec.inquiry("bank-ok", inquiry("batch-5"))])
    assert [j.created_at_ms for j in again[:5]] == [stored[f"batch-{i}"].created_at_ms for i in range(5)]
    info = await nc.jetstream().stream_info(f"COURTHUB_JOBS_{node_token(NODE)}")
    assert info.state.messages == 6  # the five were not published again

    reused = JobSpec.inquiry("bank-ok", inquiry("batch-1", capability="bank.transactions"))
    with pytest.raises(InvalidInput, match="never be reused"):
        await queue.submit_many([JobSpec.inquiry("bank-ok", inquiry("batch-7")), reused])
    assert await queue.get("batch-7") is None  # the whole batch was refused


async def test_jobs_added_in_the_callers_transaction_commit_or_roll_back_with_it(
    store: Store, nats_server: EmbeddedNats, nc: Client
) -> None:
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(["bank-ok"])

    def fails(conn: Any) -> None:
        queue.add(conn, [JobSpec.inquiry("bank-ok", inquiry("rolled-back"))])
        raise RuntimeError("the caller's own write failed")

    with pytest.raises(RuntimeError):
        await store.write(fails)
    assert await queue.get("rolled-back") is None

    added = await store.write(lambda conn: queue.add(conn, [JobSpec.control("bank-ok", freeze("kept"))]))
    assert [(j.job_id, created) for j, created in added] == [("kept", True)]
    job = await queue.get("kept")
    assert job is not None and job.published_at_ms is None and job.kind == "control" and job.action == "freeze"
    await queue.publish(added)
    job = await queue.get("kept")
    assert job is not None and job.published_at_ms is not None
    bank = Bank()
    async with running_worker(store, nats_server.url, make_host(bank)):
        await wait_until(lambda: all_final(store, 1))
    assert bank.calls["kept"] == 1


async def test_claim_many_decides_each_delivery_like_a_single_claim(store: Store, nc: Client) -> None:
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(["bank-ok"])
    await queue.submit_inquiry("bank-ok", inquiry("fresh"))
    await queue.submit_inquiry("bank-ok", inquiry("late"), deadline_at_ms=1)
    await queue.submit_inquiry("bank-ok", inquiry("done"))
    await queue.submit_inquiry("bank-ok", inquiry("spent"))

    def prepare(conn: Any) -> None:
        conn.execute(agency_jobs.update().where(agency_jobs.c.job_id == "done").values(status="answered"))
        conn.execute(agency_jobs.update().where(agency_jobs.c.job_id == "spent").values(attempts=FAST.max_attempts))

    await store.write(prepare)
    worker = Worker(store, nc, NODE, make_host(Bank()), policy=FAST, worker_id="w-batch")
    now = int(time.time() * 1000)
    items = [(i, now) for i in ("fresh", "missing", "late", "done", "spent", "fresh")]
    verdicts = await store.write(lambda conn: worker._claim_many(conn, items))
    assert [v for v, _ in verdicts] == ["claimed", "missing", "expired", "final", "exhausted", "claimed"]
    first, second = verdicts[0][1], verdicts[5][1]
    assert first is not None and first.attempts == 1 and first.worker == "w-batch" and first.started_at_ms == now
    # The same job delivered twice in one turn is claimed twice, as two deliveries would be.
    assert second is not None and second.attempts == 2
    stored = await queue.get("fresh")
    assert stored is not None and stored.attempts == 2
    late = await queue.get("late")
    assert late is not None and late.attempts == 0  # only claimed jobs count an attempt


async def test_deliveries_of_a_loop_turn_share_one_write(store: Store, nc: Client) -> None:
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(["bank-ok"])
    await queue.submit_many([JobSpec.inquiry("bank-ok", inquiry(f"turn-{i}")) for i in range(8)])
    worker = Worker(store, nc, NODE, make_host(Bank()), policy=FAST)
    writes: list[int] = []
    claim_many = worker._claim_many

    def counting(conn: Any, items: list[tuple[str, int]]) -> list[tuple[str, Job | None]]:
        writes.append(len(items))
        return claim_many(conn, items)

    worker._claims.fn = counting
    statements: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def trace(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if not statement.startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            statements.append(statement.split()[0])

    now = int(time.time() * 1000)
    verdicts = await asyncio.gather(*(worker._claims((f"turn-{i}", now)) for i in range(8)))
    event.remove(store.engine, "before_cursor_execute", trace)
    assert writes == [8]
    assert {v for v, _ in verdicts} == {"claimed"}
    assert statements == ["UPDATE"]  # … RETURNING: deliverable jobs need no read first


async def test_calls_in_flight_stay_within_concurrency_while_the_worker_holds_more(
    store: Store, nats_server: EmbeddedNats, nc: Client
) -> None:
    class CountingBank(Bank):
        def __init__(self) -> None:
            super().__init__(delay_s=0.05)
            self.now = 0
            self.most = 0

        @hookimpl
        async def courthub_inquire(self, request: InquiryRequest) -> Any:
            self.now += 1
            self.most = max(self.most, self.now)
            try:
                return await super().courthub_inquire(request)
            finally:
                self.now -= 1

    bank = CountingBank()
    queue = JobQueue(store, nc, NODE, policy=FAST)
    await queue.setup(["bank-ok"])
    await queue.submit_many([JobSpec.inquiry("bank-ok", inquiry(f"c-{i}")) for i in range(20)])
    async with running_worker(store, nats_server.url, make_host(bank), concurrency=3):
        await wait_until(lambda: all_final(store, 20))
    assert bank.most == 3
    assert set(bank.calls.values()) == {1} and len(bank.calls) == 20
