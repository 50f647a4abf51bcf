"""Capability routing of agency work (总对总 / 点对点) and the envelopes that carry it.

A court that needs ``bank.inquiry`` serves it with its own plugin when it has one whose scope
covers the court; otherwise it sends an ``agency.request`` envelope to
``Target.to_capability("bank.inquiry")``: the federation delivers it to the nearest court offering
the capability (the closest ancestor: a city's 点对点 link, the province's or the national root's
总对总 link). That court runs the request through its own work queue and, when the job ends,
answers with ``agency.result`` (correlation id = the request envelope's id), written in the same
transaction that marks the served request as reported — so a crash can neither lose the answer nor
send it twice.

Scope. A plugin's scope is ``national`` or a court code (its section's ``scope`` key overrides
what the plugin declares). A court announces a capability only when some active plugin for it
covers the court itself — and with it every court of its subtree, which is where capability
routing can bring requests from. A served request is checked again against the asking court.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.codes import CourtCode
from hub.errors import InvalidCode
from hub.federation import kinds
from hub.jobs import Job
from hub.plugins.host import PluginHost
from hub.plugins.models import NATIONAL_SCOPE
from hub.proto.courthub.v1 import agency_pb2 as apb
from hub.store.agency_schema import ANSWERED as JOB_ANSWERED
from hub.store.agency_schema import TIMED_OUT as JOB_TIMED_OUT

REQUEST_KIND = "agency.request"
RESULT_KIND = "agency.result"
INQUIRY = "inquiry"
CONTROL = "control"
OPERATIONS = (INQUIRY, CONTROL)

# Requests travel up (to an ancestor offering the capability); results come back down (and, for a
# court that asked its own ancestor, possibly up again through a common ancestor: never needed with
# ancestor routing, but harmless). Any court may ask; the serving court checks who asks.
REQUEST = kinds.register(kinds.KindSpec(REQUEST_KIND, apb.AgencyRequestPayload, True, True, kinds.Authority.ANY, False))
RESULT = kinds.register(kinds.KindSpec(RESULT_KIND, apb.AgencyResultPayload, True, True, kinds.Authority.ANY, False))


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def agency_of(capability: str) -> str:
    """``bank.inquiry`` → ``bank``."""
    return capability.partition(".")[0]


def operation_of(capability: str) -> str:
    return capability.partition(".")[2]


def plugin_scope(host: PluginHost, name: str, config: Mapping[str, Mapping[str, Any]]) -> str:
    """The scope a plugin serves: its section's ``scope`` if set, else what the plugin declares."""
    section = config.get(name, {})
    scope = section.get("scope")
    if isinstance(scope, str) and scope.strip():
        return scope.strip()
    return host.info(name).scope


def covers(scope: str, court: CourtCode) -> bool:
    if scope == NATIONAL_SCOPE:
        return True
    try:
        return court.is_within(CourtCode.parse(scope))
    except InvalidCode:
        return False


@dataclass(frozen=True)
class LocalPlugins:
    """Which active plugin of this node serves which capability, for which courts."""

    by_capability: dict[str, list[tuple[str, str]]]  # capability → [(plugin, scope)] sorted by name

    @classmethod
    def build(cls, host: PluginHost, config: Mapping[str, Mapping[str, Any]]) -> LocalPlugins:
        table: dict[str, list[tuple[str, str]]] = {}
        for cap, names in host.capabilities().items():
            table[cap] = sorted((n, plugin_scope(host, n, config)) for n in names)
        return cls(table)

    def for_court(self, capability: str, court: CourtCode) -> str | None:
        """The plugin serving ``capability`` for ``court``: the narrowest scope that covers it."""
        best: tuple[int, str] | None = None
        for name, scope in self.by_capability.get(capability, []):
            if not covers(scope, court):
                continue
            depth = -1 if scope == NATIONAL_SCOPE else CourtCode.parse(scope).level.depth
            if best is None or depth > best[0]:
                best = (depth, name)
        return best[1] if best else None

    def announced(self, me: CourtCode) -> set[str]:
        """Capabilities this node offers to its subtree (some plugin covers this court)."""
        return {cap for cap in self.by_capability if self.for_court(cap, me) is not None}

    def scopes(self) -> dict[str, str]:
        return {name: scope for entries in self.by_capability.values() for name, scope in entries}


@dataclass(frozen=True)
class Outcome:
    """How one request ended, as the asking court records it."""

    request_id: str
    status: str  # answered | failed | timed_out
    served_by: str
    plugin: str
    result: dict[str, Any] | None
    reason: str | None
    message: str | None
    attempts: int
    finished_at_ms: int

    @classmethod
    def from_job(cls, job: Job, served_by: str) -> Outcome:
        status = "answered" if job.status == JOB_ANSWERED else "timed_out" if job.status == JOB_TIMED_OUT else "failed"
        error = job.error or {}
        kind = error.get("kind")
        return cls(
            request_id=job.job_id,
            status=status,
            served_by=served_by,
            plugin=job.plugin,
            result=job.result if status == "answered" else None,
            reason=None if status == "answered" else (f"plugin_{kind}" if kind else job.status),
            message=None if status == "answered" else str(error.get("message") or job.status),
            attempts=job.attempts,
            finished_at_ms=job.finished_at_ms or job.updated_at_ms,
        )

    @classmethod
    def from_payload(cls, p: apb.AgencyResultPayload, served_by: str) -> Outcome:
        result: dict[str, Any] | None = None
        if p.result_json:
            try:
                loaded = json.loads(p.result_json)
            except ValueError:
                loaded = None
            result = loaded if isinstance(loaded, dict) else None
        status = p.status if p.status in ("answered", "failed", "timed_out") else "failed"
        if status == "answered" and result is None:
            status = "failed"
        return cls(
            request_id=p.request_id,
            status=status,
            served_by=served_by,
            plugin=p.plugin,
            result=result,
            reason=p.reason or None,
            message=p.message or None,
            attempts=p.attempts,
            finished_at_ms=p.finished_at_ms,
        )

    def to_payload(
        self, capability: str, operation: str, received_at_ms: int, elapsed_ms: int
    ) -> apb.AgencyResultPayload:
        return apb.AgencyResultPayload(
            request_id=self.request_id,
            capability=capability,
            operation=operation,
            status=self.status,
            plugin=self.plugin,
            result_json=dumps(self.result) if self.result is not None else "",
            reason=self.reason or "",
            message=(self.message or "")[:4000],
            attempts=self.attempts,
            received_at_ms=received_at_ms,
            finished_at_ms=self.finished_at_ms,
            elapsed_ms=elapsed_ms,
        )
