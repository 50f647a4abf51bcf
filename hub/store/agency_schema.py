"""Tables of the agency work queue (:mod:`hub.jobs`), on the node's shared metadata.

The store is the source of truth for agency jobs: a job row is committed before its message is
published to JetStream, every attempt and the final outcome are recorded here, and the dead-letter
list shown by ``court-hub status`` is read from here (the JetStream dead-letter stream is a copy
for bus-side tooling). Alembic migrations must create these tables too (``hub/store/migrations``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from hub.store.schema import metadata

# Job states. ``pending`` until final; the final ones never change again.
PENDING = "pending"  # committed, queued or being worked on, possibly between retries
ANSWERED = "answered"  # the plugin answered (an inquiry result or a control outcome)
FAILED = "failed"  # a failure retrying cannot cure (the plugin said so, or the job is malformed)
TIMED_OUT = "timed_out"  # the job's own deadline passed before an answer
DEAD = "dead"  # retries exhausted (raised / timeout / invalid each time); dead-lettered
FINAL_STATES = (ANSWERED, FAILED, TIMED_OUT, DEAD)
JOB_STATES = (PENDING, *FINAL_STATES)

agency_jobs = Table(
    "agency_jobs",
    metadata,
    # = the request id the plugin and the agency see (idempotency key across retries)
    Column("job_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # inquiry | control
    Column("case_number", String(64), nullable=False),
    Column("plugin", String(64), nullable=False),
    Column("capability", String(64), nullable=False),
    Column("action", String(32)),  # control action (freeze, renew …); NULL for inquiries
    Column("request", Text, nullable=False),  # JSON of the InquiryRequest / ControlRequest
    Column("status", String(16), nullable=False, default=PENDING),
    Column("attempts", Integer, nullable=False, default=0),  # plugin calls started (claims)
    Column("result", Text),  # JSON of the InquiryResult / ControlResult once answered
    Column("error", Text),  # JSON of the last failure: kind, message, retryable, elapsed_ms …
    Column("worker", String(128)),  # the worker that made the last attempt
    Column("created_at_ms", BigInteger, nullable=False),
    Column("published_at_ms", BigInteger),  # last publish to JetStream (NULL: never confirmed)
    Column("updated_at_ms", BigInteger, nullable=False),  # last activity (publish, claim, retry)
    Column("started_at_ms", BigInteger),  # first attempt began
    Column("finished_at_ms", BigInteger),  # reached a final state
    Column("deadline_at_ms", BigInteger),  # optional: give up (timed_out) after this instant
    Column("elapsed_ms", Integer),  # duration of the last plugin call
)
Index("ix_agency_jobs_status_updated", agency_jobs.c.status, agency_jobs.c.updated_at_ms)
Index("ix_agency_jobs_case", agency_jobs.c.case_number)
Index("ix_agency_jobs_plugin_status", agency_jobs.c.plugin, agency_jobs.c.status)
