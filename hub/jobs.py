"""The node's agency work queue: inquiry and control jobs over NATS JetStream, truth in the store.

Layout on the bus (``<tok>`` is :func:`node_token` of the node's court code)::

    stream COURTHUB_JOBS_<tok>   subjects courthub.<tok>.jobs.<plugin>   work-queue retention
        durable pull consumer "jobs-<plugin>" per plugin: explicit ack, ack_wait, max_deliver
    stream COURTHUB_DEAD_<tok>   subjects courthub.<tok>.dead.<plugin>   limits retention (30 days)
    core NATS                    courthub.<tok>.events.job_done          one event per final job

Subject tokens. Court codes contain Chinese characters (``豫1402``, ``最高法``). NATS subjects
and stream names are safest in ASCII (stream names become directory names on the server), so
every non-ASCII-alphanumeric character becomes ``u<hex code point>``: ``豫1402`` → ``u8c6b1402``,
``最高法`` → ``u6700u9ad8u6cd5`` (the same mapping as the node's event bus). Plugin names are
already ``[a-z0-9_-]``.

The store is the source of truth (JetStream fsyncs lazily, DESIGN.md §7):

1. :meth:`JobQueue.submit_inquiry` / :meth:`JobQueue.submit_control` commit a row in
   ``agency_jobs`` (job id = request id; submitting the same id again is a no-op) **before**
   publishing ``{"job_id": …}`` with ``Nats-Msg-Id`` = job id (JetStream dedupes re-publishes).
2. A :class:`Worker` fetches from its plugins' consumers, reads the row (a final row is just
   acked: the same request id never takes effect twice on our side), claims it (``attempts`` + 1),
   calls the plugin through :class:`~hub.plugins.host.PluginHost` (with its timeout) while sending
   ``in_progress`` so JetStream does not redeliver a live call, writes the outcome with a
   conditional update (only a ``pending`` row changes), then acks and publishes ``job_done``.
3. A retryable failure (the plugin raised, timed out, or answered garbage) is recorded on the row
   and the message is nak'ed with the policy's backoff delay. When ``attempts`` reaches
   ``max_attempts`` the job becomes ``dead``; a non-retryable failure makes it ``failed``; a job
   past its own deadline becomes ``timed_out``. Each of these is published to the dead-letter
   stream with the reason, then acked. :func:`queue_status` shows them from the store.
4. A worker killed mid-call never acks: JetStream redelivers after ``ack_wait`` to any worker,
   which calls the plugin again with the **same request id** — the agency must (and the
   conformance kit checks that it does) apply a request id at most once.
5. :meth:`JobQueue.sweep` re-publishes jobs that stayed ``pending`` with no activity while their
   plugin's consumer has nothing outstanding (the publish was lost, or JetStream gave up after
   ``max_deliver``), and times out jobs past their deadline.

Several workers (processes, machines) may consume one queue: a durable pull consumer hands each
message to one fetcher at a time.

On a NATS cluster (``[bus] nats_url`` lists several servers, docs/scale-out.md) both streams and
their consumers keep three replicas (:func:`hub.natsserver.stream_replicas`): a message JetStream
acknowledged to the publisher is on a quorum of servers, so one server killed loses nothing, and a
new stream/consumer leader is elected within seconds. Clients (:func:`connect_nats`) hold every
server's URL and reconnect to a survivor; while the leader moves, publishes fail (the sweeper
publishes them again), fetches time out (the worker fetches again) and an ack may be lost (the job
comes back after ``ack_wait``, is found final in the store and is acked without a call).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from sqlalchemy import BindParameter, Connection, bindparam, func, insert, or_, select, update

from hub.bus import court_token
from hub.clock import Clock, SystemClock
from hub.errors import InvalidInput
from hub.natsserver import ensure_stream, nats_servers, stream_replicas, while_electing
from hub.plugins.host import CallOutcome, PluginFailure, PluginHost
from hub.plugins.models import ControlRequest, InquiryRequest, InvalidModel
from hub.store import Store
from hub.store.agency_schema import (
    ANSWERED,
    DEAD,
    FAILED,
    FINAL_STATES,
    JOB_STATES,
    PENDING,
    TIMED_OUT,
    agency_jobs,
)

__all__ = [
    "Job",
    "JobQueue",
    "JobSpec",
    "RetryPolicy",
    "SweepReport",
    "Worker",
    "add_jobs",
    "connect_nats",
    "dead_letters",
    "ensure_streams",
    "jobs_by_id",
    "node_token",
    "queue_status",
    "run_worker",
    "subscribe_job_done",
]

log = logging.getLogger(__name__)

INQUIRY = "inquiry"
CONTROL = "control"
DEAD_LETTER_MAX_AGE_S = 30 * 86_400


# -- names -----------------------------------------------------------------------------------


def node_token(node_code: str) -> str:
    """A NATS-safe ASCII token for a court code (the event bus's :func:`hub.bus.court_token`)."""
    return court_token(node_code)


def jobs_stream(node_code: str) -> str:
    return f"COURTHUB_JOBS_{node_token(node_code)}"


def dead_stream(node_code: str) -> str:
    return f"COURTHUB_DEAD_{node_token(node_code)}"


def job_subject(node_code: str, plugin: str) -> str:
    return f"courthub.{node_token(node_code)}.jobs.{plugin}"


def dead_subject(node_code: str, plugin: str) -> str:
    return f"courthub.{node_token(node_code)}.dead.{plugin}"


def done_subject(node_code: str) -> str:
    return f"courthub.{node_token(node_code)}.events.job_done"


def consumer_name(plugin: str) -> str:
    return f"jobs-{plugin}"


# -- policy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Retry policy as data (Domibus-style): attempts, backoff, acknowledgement window.

    ``backoff_s[i]`` is the delay before attempt ``i + 2`` (the last value repeats).
    ``ack_wait_s`` is how long JetStream waits for an ack before redelivering (a crashed worker's
    job comes back after this); live workers extend it with ``in_progress`` during a call.
    JetStream's ``max_deliver`` is ``max_attempts + crash_slack`` so that deliveries lost to
    crashed workers do not starve the real attempts; the store's ``attempts`` is the real bound.
    """

    max_attempts: int = 5
    backoff_s: tuple[float, ...] = (2.0, 10.0, 60.0, 300.0)
    ack_wait_s: float = 30.0
    call_timeout_s: float | None = None  # None: the host's per-plugin / default timeout
    crash_slack: int = 3
    stale_after_s: float | None = None  # sweeper threshold; None: computed (see stale_after())
    publish_grace_s: float = 5.0  # an unconfirmed publish is retried by the sweeper after this

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidInput(f"RetryPolicy.max_attempts must be at least 1, got {self.max_attempts}")
        if not self.backoff_s or any(d < 0 for d in self.backoff_s):
            raise InvalidInput("RetryPolicy.backoff_s must be a non-empty list of delays ≥ 0")
        if self.ack_wait_s <= 0:
            raise InvalidInput("RetryPolicy.ack_wait_s must be positive")

    def delay(self, attempt: int) -> float:
        """Delay after failed attempt number ``attempt`` (1-based)."""
        return self.backoff_s[min(max(attempt, 1), len(self.backoff_s)) - 1]

    @property
    def max_deliver(self) -> int:
        return self.max_attempts + self.crash_slack

    def stale_after(self, host_timeout_s: float) -> float:
        """How long a pending job may show no activity before the sweeper looks at it."""
        if self.stale_after_s is not None:
            return self.stale_after_s
        call = self.call_timeout_s if self.call_timeout_s is not None else host_timeout_s
        return max(self.backoff_s) + call + 2 * self.ack_wait_s + 30.0


# -- rows ------------------------------------------------------------------------------------


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Job:
    """One row of ``agency_jobs``."""

    job_id: str
    kind: str
    case_number: str
    plugin: str
    capability: str
    action: str | None
    request: dict[str, Any]
    status: str
    attempts: int
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    worker: str | None
    created_at_ms: int
    published_at_ms: int | None
    updated_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    deadline_at_ms: int | None
    elapsed_ms: int | None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Job:
        return cls(
            job_id=row["job_id"],
            kind=row["kind"],
            case_number=row["case_number"],
            plugin=row["plugin"],
            capability=row["capability"],
            action=row["action"],
            request=json.loads(row["request"]),
            status=row["status"],
            attempts=row["attempts"],
            result=_loads(row["result"]),
            error=_loads(row["error"]),
            worker=row["worker"],
            created_at_ms=row["created_at_ms"],
            published_at_ms=row["published_at_ms"],
            updated_at_ms=row["updated_at_ms"],
            started_at_ms=row["started_at_ms"],
            finished_at_ms=row["finished_at_ms"],
            deadline_at_ms=row["deadline_at_ms"],
            elapsed_ms=row["elapsed_ms"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "case_number": self.case_number,
            "plugin": self.plugin,
            "capability": self.capability,
            "action": self.action,
            "status": self.status,
            "attempts": self.attempts,
            "result": self.result,
            "error": self.error,
            "worker": self.worker,
            "created_at_ms": self.created_at_ms,
            "published_at_ms": self.published_at_ms,
            "updated_at_ms": self.updated_at_ms,
            "started_at_ms": self.started_at_ms,
            "finished_at_ms": self.finished_at_ms,
            "deadline_at_ms": self.deadline_at_ms,
            "elapsed_ms": self.elapsed_ms,
        }


@dataclass(frozen=True)
class JobSpec:
    """A job to submit: what :meth:`JobQueue.add` / :meth:`JobQueue.submit_many` take."""

    kind: str  # inquiry | control
    plugin: str
    job_id: str  # = the request id
    case_number: str
    capability: str
    action: str | None
    request: dict[str, Any]
    deadline_at_ms: int | None = None

    @classmethod
    def inquiry(cls, plugin: str, request: InquiryRequest, deadline_at_ms: int | None = None) -> JobSpec:
        return cls(
            INQUIRY,
            plugin,
            request.request_id,
            request.case_number,
            request.capability,
            None,
            request.to_dict(),
            deadline_at_ms,
        )

    @classmethod
    def control(cls, plugin: str, request: ControlRequest, deadline_at_ms: int | None = None) -> JobSpec:
        return cls(
            CONTROL,
            plugin,
            request.request_id,
            request.case_number,
            request.capability,
            request.action.value,
            request.to_dict(),
            deadline_at_ms,
        )


# Statements built once (SQLAlchemy then skips building and cache-keying them on every call:
# these run several times per job, in the store's single writer thread).
_IDS: BindParameter[str] = bindparam("ids", expanding=True)
_SELECT_JOB = select(agency_jobs).where(agency_jobs.c.job_id == bindparam("jid"))
_SELECT_JOBS = select(agency_jobs).where(agency_jobs.c.job_id.in_(_IDS))
_INSERT_JOB = insert(agency_jobs)
_MARK_PUBLISHED = (
    update(agency_jobs)
    .where(agency_jobs.c.job_id.in_(_IDS), agency_jobs.c.status == PENDING)
    .values(published_at_ms=bindparam("t_now"), updated_at_ms=bindparam("t_now"))
)
_CLAIM_VALUES: dict[str, Any] = {
    "attempts": agency_jobs.c.attempts + 1,
    "worker": bindparam("w_id"),
    "updated_at_ms": bindparam("t_now"),
    "started_at_ms": func.coalesce(agency_jobs.c.started_at_ms, bindparam("t_now")),
}
_CLAIM_ONE = update(agency_jobs).where(agency_jobs.c.job_id == bindparam("jid")).values(**_CLAIM_VALUES)
# Claims the deliverable jobs among some ids — pending, before their deadline, attempts left —
# and returns them; the rest are read to tell why (missing, final, expired, exhausted).
_CLAIM_MANY = (
    update(agency_jobs)
    .where(
        agency_jobs.c.job_id.in_(_IDS),
        agency_jobs.c.status == PENDING,
        or_(agency_jobs.c.deadline_at_ms.is_(None), agency_jobs.c.deadline_at_ms > bindparam("t_now")),
        agency_jobs.c.attempts < bindparam("max_att"),
    )
    .values(**_CLAIM_VALUES)
    .returning(*agency_jobs.c)
)
# Only a pending job changes; a value left NULL keeps what the row has (e.g. the last error of an
# earlier attempt stays on a job answered later).
_FINISH = (
    update(agency_jobs)
    .where(agency_jobs.c.job_id == bindparam("jid"), agency_jobs.c.status == PENDING)
    .values(
        status=bindparam("st"),
        finished_at_ms=bindparam("t_now"),
        updated_at_ms=bindparam("t_now"),
        result=func.coalesce(bindparam("res", type_=agency_jobs.c.result.type), agency_jobs.c.result),
        error=func.coalesce(bindparam("err", type_=agency_jobs.c.error.type), agency_jobs.c.error),
        elapsed_ms=func.coalesce(bindparam("el", type_=agency_jobs.c.elapsed_ms.type), agency_jobs.c.elapsed_ms),
    )
)
_RECORD_RETRY = (
    update(agency_jobs)
    .where(agency_jobs.c.job_id == bindparam("jid"), agency_jobs.c.status == PENDING)
    .values(error=bindparam("err"), elapsed_ms=bindparam("el"), updated_at_ms=bindparam("t_now"))
)
_IN_CHUNK = 500  # ids per IN (…) list: well under every backend's bound-parameter limit


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


def _get_job(conn: Connection, job_id: str) -> Job | None:
    row = conn.execute(_SELECT_JOB, {"jid": job_id}).mappings().first()
    return Job.from_row(row) if row is not None else None


def _get_jobs(conn: Connection, job_ids: Sequence[str]) -> dict[str, Job]:
    found: dict[str, Job] = {}
    for chunk in _chunks(list(dict.fromkeys(job_ids))):
        for row in conn.execute(_SELECT_JOBS, {"ids": list(chunk)}).mappings():
            found[row["job_id"]] = Job.from_row(row)
    return found


def jobs_by_id(conn: Connection, job_ids: Sequence[str]) -> dict[str, Job]:
    """The stored jobs among ``job_ids`` (in the caller's transaction), by id."""
    return _get_jobs(conn, job_ids)


def add_jobs(conn: Connection, specs: Sequence[JobSpec], now: int) -> list[tuple[Job, bool]]:
    """Insert the jobs not stored yet (in the caller's transaction); per spec, the stored job and
    whether it was created now. Submitting an existing job id again is a no-op; reusing one for
    another plugin or request raises :class:`InvalidInput` (and so fails the whole transaction)."""
    existing = _get_jobs(conn, [s.job_id for s in specs])
    out: list[tuple[Job, bool]] = []
    rows: list[dict[str, Any]] = []
    for spec in specs:
        old = existing.get(spec.job_id)
        if old is not None:
            if old.plugin != spec.plugin or old.request != spec.request:
                raise InvalidInput(
                    f"job {spec.job_id!r} already exists with a different plugin or request: "
                    "a request id must never be reused for another request"
                )
            out.append((old, False))
            continue
        row: dict[str, Any] = {
            "job_id": spec.job_id,
            "kind": spec.kind,
            "case_number": spec.case_number,
            "plugin": spec.plugin,
            "capability": spec.capability,
            "action": spec.action,
            "request": _dumps(spec.request),
            "status": PENDING,
            "attempts": 0,
            "result": None,
            "error": None,
            "worker": None,
            "created_at_ms": now,
            "published_at_ms": None,
            "updated_at_ms": now,
            "started_at_ms": None,
            "finished_at_ms": None,
            "deadline_at_ms": spec.deadline_at_ms,
            "elapsed_ms": None,
        }
        rows.append(row)
        job = Job.from_row(row)
        existing[spec.job_id] = job  # the same id twice in one call: the second is a resubmission
        out.append((job, True))
    if rows:
        conn.execute(_INSERT_JOB, rows)
    return out


def _finish(
    conn: Connection,
    job_id: str,
    status: str,
    now: int,
    *,
    result: Any = None,
    error: Any = None,
    elapsed_ms: int | None = None,
) -> bool:
    """Move a pending job to a final state; False if it was already final (someone else won)."""
    return _finish_many(conn, [_Finish(job_id, status, now, result, error, elapsed_ms)])[0]


@dataclass(frozen=True)
class _Finish:
    job_id: str
    status: str
    now: int
    result: Any = None
    error: Any = None
    elapsed_ms: int | None = None


def _finish_many(conn: Connection, items: Sequence[_Finish]) -> list[bool]:
    """:func:`_finish` for several jobs in one transaction; per job, whether it changed."""
    changed = []
    for f in items:
        params = {
            "jid": f.job_id,
            "st": f.status,
            "t_now": f.now,
            "res": None if f.result is None else _dumps(f.result),
            "err": None if f.error is None else _dumps(f.error),
            "el": f.elapsed_ms,
        }
        changed.append(conn.execute(_FINISH, params).rowcount == 1)
    return changed


T = TypeVar("T")
R = TypeVar("R")


class _Coalesced(Generic[T, R]):
    """Calls made during one turn of the event loop share one store write.

    ``fn(conn, items)`` returns one result per item. Each caller awaits its own result, resolved
    after the shared transaction commits; a failure of the write fails every call in it (their
    callers treat it as before: no ack, the message is redelivered). Saves the writer a savepoint
    and a round trip per call.
    """

    def __init__(self, store: Store, fn: Callable[[Connection, list[T]], list[R]]) -> None:
        self.store = store
        self.fn = fn
        self._items: list[tuple[T, asyncio.Future[R]]] = []

    def __call__(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if not self._items:
            loop.call_soon(self._flush)
        self._items.append((item, future))
        return future

    def _flush(self) -> None:
        items, self._items = self._items, []
        args = [item for item, _ in items]
        fn = self.fn
        try:
            written = self.store.submit(lambda conn: fn(conn, args))
        except Exception as exc:  # the store is closed
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return

        def resolve(done: asyncio.Future[list[R]]) -> None:
            exc = asyncio.CancelledError() if done.cancelled() else done.exception()
            values = done.result() if exc is None else None
            for i, (_, future) in enumerate(items):
                if future.done():
                    continue
                if values is None:
                    assert exc is not None
                    future.set_exception(exc)
                else:
                    future.set_result(values[i])

        written.add_done_callback(resolve)


# -- streams ---------------------------------------------------------------------------------


async def ensure_streams(
    js: JetStreamContext, node_code: str, plugins: Iterable[str], policy: RetryPolicy, *, replicas: int = 1
) -> None:
    """Create (or update) the node's job and dead-letter streams and one consumer per plugin.

    ``replicas`` copies of each stream (and of its consumers, which follow the stream) on a NATS
    cluster. If the cluster cannot place that many right now (a server is down while the streams
    are first created) the streams are created with fewer and a warning says so; the next start
    with every server up raises them again (a stream's replicas can grow in place)."""
    tok = node_token(node_code)
    configs = [
        StreamConfig(
            name=jobs_stream(node_code),
            subjects=[f"courthub.{tok}.jobs.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120.0,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=dead_stream(node_code),
            subjects=[f"courthub.{tok}.dead.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=DEAD_LETTER_MAX_AGE_S,
            duplicate_window=120.0,
            num_replicas=replicas,
        ),
    ]
    for config in configs:
        await while_electing(f"stream {config.name}", functools.partial(ensure_stream, js, config))
    for plugin in plugins:
        consumer = ConsumerConfig(
            durable_name=consumer_name(plugin),
            description=f"agency jobs for plugin {plugin}",
            filter_subject=job_subject(node_code, plugin),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=policy.ack_wait_s,
            max_deliver=policy.max_deliver,
            max_ack_pending=10_000,
        )
        add = functools.partial(js.add_consumer, jobs_stream(node_code), consumer)
        await while_electing(f"consumer {consumer.durable_name}", add)


async def connect_nats(url: str, name: str, **options: Any) -> Client:
    """Connect to the NATS server(s) in ``url`` (one URL or a comma-separated cluster list) and keep
    reconnecting for ever, to any server of the pool, every half second: a killed cluster member
    costs a reconnect, not the process. Disconnects and reconnects are logged."""
    servers = nats_servers(url)

    async def disconnected() -> None:
        log.warning("%s: NATS connection lost; reconnecting to one of %s", name, ", ".join(servers))

    async def reconnected() -> None:
        where = nc.connected_url.netloc if nc.connected_url is not None else "?"
        log.warning("%s: NATS reconnected to %s", name, where)

    async def error(exc: Exception) -> None:
        log.debug("%s: NATS client error: %s", name, exc)

    settings: dict[str, Any] = {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
    }
    settings.update(options)
    nc = await nats.connect(servers=servers, **settings)
    return nc


# -- the queue (node side) -------------------------------------------------------------------


@dataclass
class SweepReport:
    republished: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)


class JobQueue:
    """Submits agency jobs (store first, then JetStream) and sweeps stuck ones."""

    def __init__(
        self,
        store: Store,
        nc: Client,
        node_code: str,
        *,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        host_timeout_s: float = 30.0,
    ) -> None:
        self.store = store
        self.nc = nc
        self.js = nc.jetstream()
        self.node_code = node_code
        self.policy = policy or RetryPolicy()
        self.clock: Clock = clock or SystemClock()
        self.host_timeout_s = host_timeout_s

    async def setup(self, plugins: Iterable[str]) -> None:
        await ensure_streams(self.js, self.node_code, plugins, self.policy, replicas=stream_replicas(self.nc))

    async def submit_inquiry(self, plugin: str, request: InquiryRequest, *, deadline_at_ms: int | None = None) -> Job:
        """Queue an inquiry for ``plugin``; the job id is ``request.request_id``."""
        return (await self.submit_many([JobSpec.inquiry(plugin, request, deadline_at_ms)]))[0]

    async def submit_control(self, plugin: str, request: ControlRequest, *, deadline_at_ms: int | None = None) -> Job:
        """Queue a control measure for ``plugin``; the job id is ``request.request_id``."""
        return (await self.submit_many([JobSpec.control(plugin, request, deadline_at_ms)]))[0]

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Queue several jobs: one transaction for all rows, then their publishes."""
        if not specs:
            return []
        now = self.clock.now_ms()
        added = await self.store.write(lambda conn: add_jobs(conn, specs, now))
        await self.publish(added)
        return [job for job, _ in added]

    def add(self, conn: Connection, specs: Sequence[JobSpec]) -> list[tuple[Job, bool]]:
        """Store jobs inside the caller's transaction (e.g. with the rows that asked for them);
        after its commit, hand the result to :meth:`publish`. Store first, then the bus."""
        return add_jobs(conn, specs, self.clock.now_ms())

    async def publish(self, added: Iterable[tuple[Job, bool]]) -> None:
        """Publish the jobs :meth:`add` created (and earlier ones whose publish was never
        confirmed), concurrently, then record the confirmed publishes in one write."""
        todo = [job for job, created in added if created or (not job.final and job.published_at_ms is None)]
        if todo:
            await self._publish_many(todo, [job.job_id for job in todo])

    async def _publish(self, job: Job, *, msg_id: str) -> bool:
        """Publish a job's message; on success record ``published_at_ms``. Never raises."""
        return (await self._publish_many([job], [msg_id]))[0]

    async def _publish_many(self, jobs: Sequence[Job], msg_ids: Sequence[str]) -> list[bool]:
        async def one(job: Job, msg_id: str) -> bool:
            try:
                await self.js.publish(
                    job_subject(self.node_code, job.plugin),
                    _dumps({"job_id": job.job_id}).encode(),
                    headers={"Nats-Msg-Id": msg_id},
                )
            except Exception as exc:  # the bus is down: the sweeper publishes later
                log.warning("publishing job %s failed (the sweeper will retry): %s", job.job_id, exc)
                return False
            return True

        if len(jobs) == 1:
            sent = [await one(jobs[0], msg_ids[0])]
        else:
            sent = list(await asyncio.gather(*(one(j, m) for j, m in zip(jobs, msg_ids, strict=True))))
        confirmed = [job.job_id for job, ok in zip(jobs, sent, strict=True) if ok]
        if confirmed:
            now = self.clock.now_ms()

            def mark(conn: Connection) -> None:
                for chunk in _chunks(confirmed):
                    conn.execute(_MARK_PUBLISHED, {"ids": list(chunk), "t_now": now})

            await self.store.write(mark)
        return sent

    async def get(self, job_id: str) -> Job | None:
        return await self.store.read(lambda conn: _get_job(conn, job_id))

    async def for_case(self, case_number: str) -> list[Job]:
        def read(conn: Connection) -> list[Job]:
            rows = conn.execute(
                select(agency_jobs)
                .where(agency_jobs.c.case_number == case_number)
                .order_by(agency_jobs.c.created_at_ms, agency_jobs.c.job_id)
            ).mappings()
            return [Job.from_row(r) for r in rows]

        return await self.store.read(read)

    async def sweep(self) -> SweepReport:
        """Time out jobs past their deadline; re-publish pending jobs the bus lost (see module doc)."""
        report = SweepReport()
        now = self.clock.now_ms()
        stale_ms = int(self.policy.stale_after(self.host_timeout_s) * 1000)
        grace_ms = int(self.policy.publish_grace_s * 1000)

        def candidates(conn: Connection) -> list[Job]:
            rows = conn.execute(
                select(agency_jobs).where(agency_jobs.c.status == PENDING).order_by(agency_jobs.c.created_at_ms)
            ).mappings()
            return [Job.from_row(r) for r in rows]

        idle: dict[str, bool] = {}
        for job in await self.store.read(candidates):
            if job.deadline_at_ms is not None and now >= job.deadline_at_ms:
                error = {"kind": "deadline", "message": "the job's deadline passed before an answer"}
                if await self._end(job, TIMED_OUT, error, now):
                    report.timed_out.append(job.job_id)
                continue
            if job.published_at_ms is None:
                if now - job.created_at_ms >= grace_ms and await self._publish(job, msg_id=job.job_id):
                    report.republished.append(job.job_id)
                continue
            if now - job.updated_at_ms < stale_ms:
                continue
            if job.plugin not in idle:
                idle[job.plugin] = await self._consumer_idle(job.plugin)
            if not idle[job.plugin]:
                continue  # the consumer still has messages to hand out: the job may be among them
            if job.attempts >= self.policy.max_attempts:
                error = dict(job.error or {})
                error["message"] = (
                    f"gave up after {job.attempts} attempts; last failure: {error.get('message', 'worker lost')}"
                )
                error.setdefault("kind", "lost")
                if await self._end(job, DEAD, error, now):
                    report.dead.append(job.job_id)
            elif await self._publish(job, msg_id=f"{job.job_id}:sweep:{now}"):
                report.republished.append(job.job_id)
        if report.republished or report.timed_out or report.dead:
            log.info(
                "sweep: republished %d, timed out %d, dead %d",
                len(report.republished),
                len(report.timed_out),
                len(report.dead),
            )
        return report

    async def bus_status(self, plugins: Iterable[str]) -> dict[str, Any]:
        """Queue depths on the bus (for status and metrics): per plugin consumer, messages not yet
        delivered, delivered but unacked, redelivered; and the dead-letter stream's size."""
        consumers: dict[str, Any] = {}
        for plugin in plugins:
            try:
                info = await self.js.consumer_info(jobs_stream(self.node_code), consumer_name(plugin))
            except Exception as exc:
                consumers[plugin] = {"error": str(exc)}
                continue
            consumers[plugin] = {
                "pending": info.num_pending,
                "ack_pending": info.num_ack_pending,
                "redelivered": info.num_redelivered,
                "waiting_pulls": info.num_waiting,
            }
        try:
            dead = (await self.js.stream_info(dead_stream(self.node_code))).state.messages
        except Exception:
            dead = None
        return {"consumers": consumers, "dead_letter_messages": dead}

    async def _consumer_idle(self, plugin: str) -> bool:
        try:
            info = await self.js.consumer_info(jobs_stream(self.node_code), consumer_name(plugin))
        except nats.js.errors.NotFoundError:
            return False  # no consumer yet: nobody could have lost the job
        except Exception as exc:
            log.warning("sweep: consumer info for %s failed: %s", plugin, exc)
            return False
        return not (info.num_pending or info.num_ack_pending)

    async def _end(self, job: Job, status: str, error: dict[str, Any], now: int) -> bool:
        changed = await self.store.write(lambda conn: _finish(conn, job.job_id, status, now, error=error))
        if changed:
            await _dead_letter(self.js, self.node_code, job, status, error, now)
            await _job_done(self.nc, self.node_code, job, status)
        return changed


async def _dead_letter(
    js: JetStreamContext, node_code: str, job: Job, status: str, error: Mapping[str, Any], now: int
) -> None:
    body = {
        "job_id": job.job_id,
        "plugin": job.plugin,
        "kind": job.kind,
        "case_number": job.case_number,
        "capability": job.capability,
        "status": status,
        "reason": error.get("kind"),
        "message": error.get("message"),
        "attempts": error.get("attempts", job.attempts),
        "at_ms": now,
    }
    try:
        await js.publish(
            dead_subject(node_code, job.plugin), _dumps(body).encode(), headers={"Nats-Msg-Id": f"{job.job_id}:dead"}
        )
    except Exception as exc:  # the store has it; the stream is a copy
        log.warning("dead-letter publish for job %s failed: %s", job.job_id, exc)


async def _job_done(nc: Client, node_code: str, job: Job, status: str) -> None:
    body = {
        "job_id": job.job_id,
        "plugin": job.plugin,
        "kind": job.kind,
        "case_number": job.case_number,
        "capability": job.capability,
        "status": status,
    }
    try:
        await nc.publish(done_subject(node_code), _dumps(body).encode())
    except Exception as exc:
        log.warning("job_done event for job %s failed: %s", job.job_id, exc)


async def subscribe_job_done(
    nc: Client, node_code: str, callback: Callable[[dict[str, Any]], Awaitable[None]]
) -> Subscription:
    """Call ``callback(event)`` for every ``job_done`` event of this node (core NATS, best effort:
    the store is authoritative, so a node that missed events re-reads ``agency_jobs``)."""

    async def handler(msg: Msg) -> None:
        try:
            event = json.loads(msg.data)
        except ValueError:
            return
        await callback(event)

    return await nc.subscribe(done_subject(node_code), cb=handler)


# -- status ----------------------------------------------------------------------------------


async def queue_status(store: Store, *, dead_limit: int = 20, clock: Clock | None = None) -> dict[str, Any]:
    """What ``court-hub status`` shows: job counts per plugin and state, the oldest pending job's
    age, and the most recent jobs that ended without an answer, with their reasons."""
    now = (clock or SystemClock()).now_ms()

    def read(conn: Connection) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {}
        rows = conn.execute(
            select(agency_jobs.c.plugin, agency_jobs.c.status, func.count()).group_by(
                agency_jobs.c.plugin, agency_jobs.c.status
            )
        )
        for plugin, status, n in rows:
            counts.setdefault(plugin, dict.fromkeys(JOB_STATES, 0))[status] = n
        oldest = conn.execute(
            select(func.min(agency_jobs.c.created_at_ms)).where(agency_jobs.c.status == PENDING)
        ).scalar()
        return {
            "plugins": counts,
            "oldest_pending_age_ms": None if oldest is None else now - int(oldest),
            "dead_letters": [j.to_dict() for j in _dead(conn, dead_limit)],
        }

    return await store.read(read)


def _dead(conn: Connection, limit: int) -> list[Job]:
    rows = conn.execute(
        select(agency_jobs)
        .where(agency_jobs.c.status.in_((FAILED, TIMED_OUT, DEAD)))
        .order_by(agency_jobs.c.finished_at_ms.desc())
        .limit(limit)
    ).mappings()
    return [Job.from_row(r) for r in rows]


async def dead_letters(store: Store, limit: int = 50) -> list[Job]:
    """Jobs that ended without an answer (failed, timed out, dead), newest first, with ``error``."""
    return await store.read(lambda conn: _dead(conn, limit))


# -- the worker ------------------------------------------------------------------------------


@dataclass
class WorkerStats:
    handled: int = 0
    answered: int = 0
    retried: int = 0
    ended: int = 0  # failed / dead / timed out
    duplicates: int = 0  # deliveries of already-final jobs (acked without a call)


class Worker:
    """Consumes the job queue of some plugins and executes the jobs through a plugin host.

    Runs inside the node or as its own process (``court-hub worker``); several workers may share
    a queue. ``concurrency`` bounds the calls in flight per plugin in this worker. A worker holds
    up to ``HOLD`` × ``concurrency`` deliveries per plugin, so that claiming the next jobs and
    recording the outcomes of finished ones (store writes) overlap with the calls in flight
    instead of keeping call slots idle; a held delivery is kept alive with ``in_progress``.
    The deliveries claimed in one loop turn share one write, and so do the outcomes recorded in
    one turn.
    """

    HOLD = 2

    def __init__(
        self,
        store: Store,
        nc: Client,
        node_code: str,
        host: PluginHost,
        *,
        plugins: Iterable[str] | None = None,
        policy: RetryPolicy | None = None,
        concurrency: int = 4,
        worker_id: str | None = None,
        clock: Clock | None = None,
        fetch_timeout_s: float = 1.0,
    ) -> None:
        self.store = store
        self.nc = nc
        self.js = nc.jetstream()
        self.node_code = node_code
        self.host = host
        self.plugins = list(plugins) if plugins is not None else host.names()
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.clock: Clock = clock or SystemClock()
        self.fetch_timeout_s = fetch_timeout_s
        self.stats = WorkerStats()
        self._tasks: set[asyncio.Task[None]] = set()
        # The deliveries of one fetch (and of every plugin's fetch in the same loop turn) are
        # claimed in one write; outcomes reached in the same turn are recorded in one write.
        self._claims: _Coalesced[tuple[str, int], tuple[str, Job | None]] = _Coalesced(store, self._claim_many)
        self._finishes: _Coalesced[_Finish, bool] = _Coalesced(store, _finish_many)
        self._call_slots: dict[str, asyncio.Semaphore] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then let the calls in flight finish (bounded by their
        timeouts) and return. Unacked messages are redelivered to other workers."""
        await ensure_streams(self.js, self.node_code, self.plugins, self.policy, replicas=stream_replicas(self.nc))
        if not self.plugins:
            log.warning("worker %s: no active plugins to consume for", self.worker_id)
        loops: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._consume(p, stop), name=f"worker-{p}") for p in self.plugins
        ]
        loops.append(asyncio.create_task(stop.wait(), name="worker-stop"))
        try:
            await asyncio.gather(*loops)
        finally:
            for t in loops:
                t.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _consume(self, plugin: str, stop: asyncio.Event) -> None:
        sub = await self.js.pull_subscribe_bind(consumer_name(plugin), jobs_stream(self.node_code))
        in_flight = 0
        freed = asyncio.Event()

        async def handle(msg: Msg) -> None:
            nonlocal in_flight
            try:
                await self.handle(plugin, msg)
            except Exception:  # e.g. the store refused a write: no ack, JetStream redelivers
                log.exception("worker: job message on %s failed unexpectedly", plugin)
            finally:
                in_flight -= 1
                freed.set()

        try:
            while not stop.is_set():
                free = self.HOLD * self.concurrency - in_flight
                if free <= 0:
                    freed.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(freed.wait(), timeout=self.fetch_timeout_s)
                    continue
                try:
                    msgs = await sub.fetch(batch=free, timeout=self.fetch_timeout_s)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except nats.errors.ConnectionClosedError:
                    return
                except Exception as exc:  # reconnecting, server restarting …: try again shortly
                    log.warning("worker: fetch for %s failed: %s", plugin, exc)
                    await asyncio.sleep(min(self.fetch_timeout_s, 1.0))
                    continue
                for msg in msgs:
                    in_flight += 1
                    task = asyncio.create_task(handle(msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def handle(self, plugin: str, msg: Msg) -> None:
        """Process one delivery (public for tests and for embedding in other consumers)."""
        self.stats.handled += 1
        try:
            job_id = json.loads(msg.data)["job_id"]
            if not isinstance(job_id, str):
                raise TypeError("job_id is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            log.error("worker: malformed job message on %s (%s): terminated", msg.subject, exc)
            await msg.term()
            return
        beat = asyncio.create_task(self._heartbeat(msg))
        try:
            await self._handle(plugin, msg, job_id)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _handle(self, plugin: str, msg: Msg, job_id: str) -> None:
        verdict, job = await self._claims((job_id, self.clock.now_ms()))
        if verdict == "missing":
            log.error("worker: job %s is not in the store: terminated", job_id)
            await msg.term()
            return
        assert job is not None
        if verdict == "final":
            self.stats.duplicates += 1
            await msg.ack()  # already final: the same request id never takes effect twice
            return
        if verdict == "expired":
            expired = {"kind": "deadline", "message": "the job's deadline passed before an answer"}
            await self._end(job, TIMED_OUT, {**expired, "attempts": job.attempts}, None)
            await msg.ack()
            return
        if verdict == "exhausted":  # earlier attempts all ended without a recorded outcome (crashes)
            lost: dict[str, Any] = dict(job.error or {})
            last = lost.get("message", "the worker was lost during the call")
            lost["message"] = f"gave up after {job.attempts} attempts; last failure: {last}"
            lost.setdefault("kind", "lost")
            await self._end(job, DEAD, lost, None)
            await msg.ack()
            return
        outcome = await self._call(job, msg)
        if outcome.failure is None:
            assert outcome.value is not None
            result = outcome.value.to_dict()
            self.stats.answered += 1
            await self._end(job, ANSWERED, None, outcome.elapsed_ms, result=result)
            await msg.ack()
            return
        failure = outcome.failure
        error: dict[str, Any] = {**failure.to_dict(), "attempts": job.attempts, "worker": self.worker_id}
        if not failure.retryable:
            await self._end(job, FAILED, error, outcome.elapsed_ms)
            await msg.ack()
        elif job.attempts >= self.policy.max_attempts:
            error["message"] = f"gave up after {job.attempts} attempts; last failure: {failure.detail}"
            await self._end(job, DEAD, error, outcome.elapsed_ms)
            await msg.ack()
        else:
            self.stats.retried += 1
            later = self.clock.now_ms()

            params = {"jid": job.job_id, "err": _dumps(error), "el": outcome.elapsed_ms, "t_now": later}
            await self.store.write(lambda conn: conn.execute(_RECORD_RETRY, params))
            await msg.nak(delay=self.policy.delay(job.attempts))

    def _claim(self, conn: Connection, job_id: str, now: int) -> tuple[str, Job | None]:
        """Decide what to do with a delivery and, for "claimed", count the attempt."""
        verdict = self._verdict(_get_job(conn, job_id), now)
        if verdict[0] != "claimed":
            return verdict
        conn.execute(_CLAIM_ONE, {"jid": job_id, "w_id": self.worker_id, "t_now": now})
        return "claimed", _get_job(conn, job_id)

    def _verdict(self, job: Job | None, now: int) -> tuple[str, Job | None]:
        if job is None:
            return "missing", None
        if job.final:
            return "final", job
        if job.deadline_at_ms is not None and now >= job.deadline_at_ms:
            return "expired", job
        if job.attempts >= self.policy.max_attempts:
            return "exhausted", job
        return "claimed", job

    def _claim_many(self, conn: Connection, items: list[tuple[str, int]]) -> list[tuple[str, Job | None]]:
        """:meth:`_claim` for the deliveries of a loop turn. The usual case (every job deliverable)
        is one ``UPDATE … RETURNING``; only jobs it did not claim are read, to tell why. A job id
        delivered twice in one turn is claimed twice (as separate deliveries are)."""
        now = max(t for _, t in items)
        first: dict[str, int] = {}  # job id → index of its first delivery in items
        for i, (job_id, _) in enumerate(items):
            first.setdefault(job_id, i)
        claimed: dict[str, Job] = {}
        for chunk in _chunks(list(first)):
            params = {"ids": list(chunk), "w_id": self.worker_id, "t_now": now, "max_att": self.policy.max_attempts}
            for row in conn.execute(_CLAIM_MANY, params).mappings():
                claimed[row["job_id"]] = Job.from_row(row)
        others = _get_jobs(conn, [j for j in first if j not in claimed]) if len(claimed) < len(first) else {}
        out: list[tuple[str, Job | None]] = []
        for i, (job_id, t) in enumerate(items):
            job = claimed.get(job_id)
            if first[job_id] != i:  # a second delivery of the job in this turn
                out.append(self._claim(conn, job_id, t))
            elif job is not None:
                out.append(("claimed", job))
            else:
                verdict = self._verdict(others.get(job_id), now)
                # (Deliverable but not claimed above cannot happen in one transaction; if a
                # backend ever allowed it, claim it the slow way.)
                out.append(verdict if verdict[0] != "claimed" else self._claim(conn, job_id, t))
        return out

    async def _call(self, job: Job, msg: Msg) -> CallOutcome[Any]:
        try:
            if job.kind == INQUIRY:
                inquiry = InquiryRequest.from_dict(job.request)
            else:
                control = ControlRequest.from_dict(job.request)
        except InvalidModel as exc:
            failure = PluginFailure(
                "invalid", f"stored request: {exc}", plugin=job.plugin, hook="request", retryable=False
            )
            return CallOutcome(job.plugin, "request", self.clock.now_ms(), 0, None, failure)
        slots = self._call_slots.get(job.plugin)
        if slots is None:
            slots = self._call_slots[job.plugin] = asyncio.Semaphore(self.concurrency)
        async with slots:
            if job.kind == INQUIRY:
                return await self.host.call_inquire(job.plugin, inquiry, timeout_s=self.policy.call_timeout_s)
            return await self.host.call_control(job.plugin, control, timeout_s=self.policy.call_timeout_s)

    async def _heartbeat(self, msg: Msg) -> None:
        """Tell JetStream the job is in progress so it is not redelivered while this worker holds
        it (claiming, waiting for a call slot, calling, recording the outcome)."""
        interval = max(self.policy.ack_wait_s / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _end(
        self, job: Job, status: str, error: dict[str, Any] | None, elapsed_ms: int | None, *, result: Any = None
    ) -> None:
        now = self.clock.now_ms()
        changed = await self._finishes(_Finish(job.job_id, status, now, result, error, elapsed_ms))
        if not changed:
            return
        if status != ANSWERED:
            self.stats.ended += 1
            await _dead_letter(self.js, self.node_code, job, status, error or {}, now)
        await _job_done(self.nc, self.node_code, job, status)


async def run_worker(
    store: Store,
    nats_url: str,
    node_code: str,
    host: PluginHost,
    stop_event: asyncio.Event,
    *,
    plugins: Iterable[str] | None = None,
    policy: RetryPolicy | None = None,
    concurrency: int = 4,
    sweep_interval_s: float | None = 30.0,
    clock: Clock | None = None,
) -> Worker:
    """Connect to NATS, consume the node's job queue for ``plugins`` (default: the host's active
    plugins) until ``stop_event`` is set, sweeping stuck jobs every ``sweep_interval_s`` (None:
    never — e.g. when the node sweeps itself). Returns the worker (for its stats)."""
    policy = policy or RetryPolicy()
    nc = await connect_nats(nats_url, f"court-hub worker {node_code}")
    try:
        worker = Worker(
            store, nc, node_code, host, plugins=plugins, policy=policy, concurrency=concurrency, clock=clock
        )
        queue = JobQueue(store, nc, node_code, policy=policy, clock=clock, host_timeout_s=host.default_timeout_s)
        sweeper: asyncio.Task[None] | None = None
        if sweep_interval_s is not None:
            sweeper = asyncio.create_task(_sweep_loop(queue, stop_event, sweep_interval_s), name="job-sweeper")
        try:
            await worker.run(stop_event)
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
        return worker
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()


async def _sweep_loop(queue: JobQueue, stop: asyncio.Event, interval_s: float) -> None:
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        if stop.is_set():
            return
        try:
            await queue.sweep()
        except Exception:
            log.exception("job sweep failed")
