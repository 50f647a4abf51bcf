"""Tables of cases, per-case agency requests and control measures (on the node's shared metadata).

* ``cases`` — enforcement cases filed at this court (立案), with the respondent (被执行人).
* ``case_inquiries`` — one row per agency capability asked for a case (立案即查): where it went
  (a local plugin, or relayed to the nearest ancestor offering it), its state and its answer.
* ``measures`` — control requests of this court (冻结, 续冻, 轮候, 解冻, 扣划, 查封 …): state,
  requested vs controlled amount, the agency's measure id, expiry, waiting position.
* ``measure_reminders`` — renewal reminders raised before a measure expires (续冻提醒).
* ``served_requests`` — the serving side: ``agency.request`` envelopes from other courts that this
  court's plugins execute, and whether their ``agency.result`` has been sent.

``agency_jobs`` (:mod:`hub.store.agency_schema`) stays the executing node's work queue; these rows
refer to its jobs by request id (= job id).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from hub.store.schema import metadata

# Per-agency states of an inquiry or control request as the asking court sees it.
PENDING = "pending"
ANSWERED = "answered"
FAILED = "failed"
TIMED_OUT = "timed_out"
REQUEST_STATES = (PENDING, ANSWERED, FAILED, TIMED_OUT)

# Routes.
LOCAL = "local"  # served by a plugin of this court
RELAY = "relay"  # relayed through the federation to the nearest ancestor offering the capability

cases = Table(
    "cases",
    metadata,
    Column("case_number", String(64), primary_key=True),
    Column("court", String(16), nullable=False),
    Column("party_name", Text, nullable=False),
    Column("id_type", String(16), nullable=False),
    Column("id_no", String(40), nullable=False),
    Column("amount_fen", BigInteger),
    Column("judge_name", Text, nullable=False),
    Column("judge_phone", String(20)),
    Column("officer_ids", Text, nullable=False, default="[]"),  # JSON list
    Column("filed_at_ms", BigInteger, nullable=False),
    # Set in the transaction that queued the 立案即查 inquiries (NULL: not yet — recovery starts them).
    Column("inquiries_started_at_ms", BigInteger),
)
Index("ix_cases_filed", cases.c.filed_at_ms)

case_inquiries = Table(
    "case_inquiries",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("case_number", String(64), nullable=False),
    Column("capability", String(64), nullable=False),
    Column("agency", String(32), nullable=False),  # the capability's domain: bank, land …
    Column("route", String(8), nullable=False),  # local | relay
    Column("served_by", String(16)),  # court whose plugin answered (known once answered; = this court if local)
    Column("plugin", String(64)),
    Column("envelope_id", String(64)),  # the agency.request envelope (relay only)
    Column("status", String(16), nullable=False),  # pending | answered | failed | timed_out
    Column("requested_at_ms", BigInteger, nullable=False),
    Column("answered_at_ms", BigInteger),
    Column("deadline_at_ms", BigInteger),
    Column("attempts", Integer),
    Column("request", Text, nullable=False),  # JSON of the InquiryRequest (resubmitted after a crash)
    Column("result", Text),  # JSON of the InquiryResult
    Column("reason", String(64)),
    Column("message", Text),
)
Index("ix_case_inquiries_case", case_inquiries.c.case_number)
Index("ix_case_inquiries_status", case_inquiries.c.status)
Index("ix_case_inquiries_envelope", case_inquiries.c.envelope_id)

measures = Table(
    "measures",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("case_number", String(64), nullable=False),
    Column("agency", String(32), nullable=False),
    Column("capability", String(64), nullable=False),
    Column("action", String(32), nullable=False),  # ControlAction value
    Column("asset_id", String(100)),
    Column("target_measure_id", String(100)),  # renew / release / deduct: the measure acted on
    Column("route", String(8), nullable=False),
    Column("served_by", String(16)),
    Column("plugin", String(64)),
    Column("envelope_id", String(64)),
    # Request state: pending | answered | failed | timed_out (like inquiries).
    Column("status", String(16), nullable=False),
    # The agency's outcome once answered: done | partial | queued | not_controlled | rejected.
    Column("outcome", String(16)),
    # Life of a measure this request created (freeze, waiting, seal …): active | waiting |
    # released | lapsed | ended; NULL for requests that create none (release, renew …).
    Column("state", String(16)),
    Column("measure_id", String(100)),  # the agency's id
    Column("requested_amount_fen", BigInteger),
    Column("controlled_amount_fen", BigInteger),
    Column("term_days", Integer),
    Column("effective_at_ms", BigInteger),
    Column("expires_at_ms", BigInteger),
    Column("queue_position", Integer),
    Column("reason", Text),
    Column("requested_at_ms", BigInteger, nullable=False),
    Column("answered_at_ms", BigInteger),
    Column("deadline_at_ms", BigInteger),
    Column("attempts", Integer),
    Column("request", Text, nullable=False),  # JSON of the ControlRequest (resubmitted after a crash)
    Column("result", Text),  # JSON of the ControlResult
    # Renewal reminders raised for the current expiry: 0 none, 1 lead, 2 final.
    Column("reminder_stage", Integer, nullable=False, default=0),
)
Index("ix_measures_case", measures.c.case_number)
Index("ix_measures_state_expiry", measures.c.state, measures.c.expires_at_ms)
Index("ix_measures_measure_id", measures.c.measure_id)
Index("ix_measures_envelope", measures.c.envelope_id)

measure_reminders = Table(
    "measure_reminders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),  # the measures row
    Column("case_number", String(64), nullable=False),
    Column("measure_id", String(100)),
    Column("agency", String(32), nullable=False),
    Column("asset_id", String(100)),
    Column("kind", String(16), nullable=False),  # renewal_due | lapsed
    Column("stage", Integer, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("days_left", Integer, nullable=False),
    Column("raised_at_ms", BigInteger, nullable=False),
)
Index("ix_measure_reminders_case", measure_reminders.c.case_number)

served_requests = Table(
    "served_requests",
    metadata,
    Column("envelope_id", String(64), primary_key=True),  # the agency.request envelope
    Column("request_id", String(64), nullable=False),  # = agency_jobs.job_id
    Column("origin", String(16), nullable=False),  # the asking court
    Column("operation", String(16), nullable=False),  # inquiry | control
    Column("capability", String(64), nullable=False),
    Column("case_number", String(64), nullable=False),
    Column("plugin", String(64)),
    Column("request", Text, nullable=False),  # JSON of the request model
    Column("deadline_at_ms", BigInteger),
    Column("received_at_ms", BigInteger, nullable=False),
    Column("submitted_at_ms", BigInteger),  # job committed to the queue
    Column("reported_at_ms", BigInteger),  # agency.result written (same transaction)
    Column("status", String(16)),  # the result's status once reported
    Column("result_envelope_id", String(64)),
)
Index("ix_served_requests_request", served_requests.c.request_id, unique=True)
Index("ix_served_requests_reported", served_requests.c.reported_at_ms)
