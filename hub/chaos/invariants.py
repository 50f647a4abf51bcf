"""The invariant checker of a chaos campaign.

It works on *snapshots*: plain data read from each node's SQLite store (read-only, after every node
was stopped gracefully) and from each simulator's ledger, so the checks themselves are pure
functions — the unit tests feed planted violations to :func:`check` and see them named.

Invariants (each violation names its rule, the court and the envelope / item / request):

``outbox_pending``      nothing is left pending in any outbox once the tree is quiet;
``outbox_rejected``     no hop refused an envelope (the load only takes steps that are legal);
``outbox_duplicate``    an envelope is queued at most once per next hop;
``hop_lost``            every envelope a node marked delivered to a neighbour is in that neighbour's
                        inbox (the dedupe set, keyed by envelope id: "exactly once" at each hop);
``receipt_missing``     every recipient an origin expects a receipt from has sent one, and the
                        recipient holds the envelope;
``workflow_one_sided``  a workflow item exists at both ends (issuer and party);
``workflow_diverged``   both ends hold the same state and the same history (action, state) of it;
``effect_duplicated``   no transition was applied twice (one history row per envelope);
``agency_stuck``        no agency request, job or served request is left pending;
``agency_mismatch``     a relayed request has the same status at the asking and the serving court;
``agency_twice``        at a simulator, a request id took effect at most once (one measure per id);
``agency_orphan``       every measure at a simulator belongs to a request id some court issued
                        (a retry under a fresh id would show up here as a duplicate effect);
``agency_lost``         a control request a court holds as done/partial/queued exists at the agency;
``audit_broken``        every node's audit chain verifies (hashes and seals);
``accepted_lost``       every operation a node acknowledged to the load is in that node's store;
``fault_unrecovered``   every fault's recovery was observed (see :mod:`hub.chaos.runner`);
``fault_unhealed``      every heal worked (e.g. a killed node started again and served);
``fault_not_injected``  every fault could be injected.
"""

from __future__ import annotations

import collections
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from hub.chaos.load import Accepted


@dataclass(frozen=True)
class Violation:
    rule: str
    court: str
    ref: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.court} {self.ref}: {self.message}"

    def as_json(self) -> dict[str, str]:
        return {"rule": self.rule, "court": self.court, "ref": self.ref, "message": self.message}


@dataclass
class NodeSnapshot:
    """What the checker reads from one node's store."""

    court: str
    # (envelope_id, next_hop, kind, origin, state, reason)
    outbox: list[tuple[str, str, str, str, str, str | None]] = field(default_factory=list)
    inbox: dict[str, str] = field(default_factory=dict)  # envelope_id -> from_hop
    # (envelope_id, recipient, state)
    deliveries: list[tuple[str, str, str]] = field(default_factory=list)
    # (item_id, party) -> (workflow, issuer, role, state)
    items: dict[tuple[str, str], tuple[str, str, str, str]] = field(default_factory=dict)
    # (item_id, party) -> [(action, to_state, envelope_id)] in order
    events: dict[tuple[str, str], list[tuple[str, str, str | None]]] = field(default_factory=dict)
    directives: set[str] = field(default_factory=set)
    cases: set[str] = field(default_factory=set)
    # request_id -> (kind inquiry|control, status, route, served_by, outcome, measure_id)
    requests: dict[str, tuple[str, str, str, str | None, str | None, str | None]] = field(default_factory=dict)
    # request_id -> (origin, status, reported)
    served: dict[str, tuple[str, str | None, bool]] = field(default_factory=dict)
    jobs: dict[str, tuple[str, str]] = field(default_factory=dict)  # job_id -> (plugin, status)
    # entrusted matters carried out here through an agency: request_id -> (item_id, agency status)
    entrusted: dict[str, tuple[str, str]] = field(default_factory=dict)
    audit_ok: bool = True
    audit_problem: str = ""
    audit_entries: int = 0


@dataclass
class SimSnapshot:
    kind: str
    measures: list[tuple[str, str | None]] = field(default_factory=list)  # (measure_id, request_id)
    requests: set[str] = field(default_factory=set)  # request ids with a stored (effectful) answer


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def _has(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
    return row is not None


def read_node(court: str, db: Path) -> NodeSnapshot:
    """Read a (stopped) node's SQLite store into a snapshot."""
    snap = NodeSnapshot(court)
    conn = _ro(db)
    try:
        snap.outbox = [
            (str(e), str(h), str(k), str(o), str(s), r)
            for e, h, k, o, s, r in conn.execute(
                "SELECT envelope_id, next_hop, kind, origin, state, reason FROM outbox ORDER BY id"
            )
        ]
        snap.inbox = {str(e): str(h) for e, h in conn.execute("SELECT envelope_id, from_hop FROM inbox")}
        snap.deliveries = [
            (str(e), str(r), str(s)) for e, r, s in conn.execute("SELECT envelope_id, recipient, state FROM deliveries")
        ]
        if _has(conn, "workflow_items"):
            for item, party, wf, issuer, role, state in conn.execute(
                "SELECT item_id, party, workflow, issuer, role, state FROM workflow_items"
            ):
                snap.items[(str(item), str(party))] = (str(wf), str(issuer), str(role), str(state))
            for item, party, action, to_state, env in conn.execute(
                "SELECT item_id, party, action, to_state, envelope_id FROM workflow_events ORDER BY id"
            ):
                snap.events.setdefault((str(item), str(party)), []).append((str(action), str(to_state), env))
        if _has(conn, "workflow_items"):
            for item, rid, status in conn.execute(
                "SELECT item_id, json_extract(data, '$.agency_request_id'),"
                " json_extract(data, '$.agency_result.status')"
                " FROM workflow_items WHERE workflow = 'entrust' AND role = 'party'"
                " AND json_extract(data, '$.agency_request_id') IS NOT NULL"
            ):
                snap.entrusted[str(rid)] = (str(item), str(status or ""))
        snap.directives = {str(e) for (e,) in conn.execute("SELECT envelope_id FROM directives")}
        if _has(conn, "cases"):
            snap.cases = {str(c) for (c,) in conn.execute("SELECT case_number FROM cases")}
            for rid, status, route, served_by in conn.execute(
                "SELECT request_id, status, route, served_by FROM case_inquiries"
            ):
                snap.requests[str(rid)] = ("inquiry", str(status), str(route), served_by, None, None)
            for rid, status, route, served_by, outcome, mid in conn.execute(
                "SELECT request_id, status, route, served_by, outcome, measure_id FROM measures"
            ):
                snap.requests[str(rid)] = ("control", str(status), str(route), served_by, outcome, mid)
            for rid, origin, status, reported in conn.execute(
                "SELECT request_id, origin, status, reported_at_ms FROM served_requests"
            ):
                snap.served[str(rid)] = (str(origin), status, reported is not None)
        if _has(conn, "agency_jobs"):
            snap.jobs = {
                str(j): (str(p), str(s)) for j, p, s in conn.execute("SELECT job_id, plugin, status FROM agency_jobs")
            }
    finally:
        conn.close()
    return snap


def read_sim(kind: str, db: Path) -> SimSnapshot:
    snap = SimSnapshot(kind)
    conn = _ro(db)
    try:
        if _has(conn, "measures"):
            snap.measures = [(str(m), r) for m, r in conn.execute("SELECT measure_id, request_id FROM measures")]
        snap.requests = {str(r) for (r,) in conn.execute("SELECT request_id FROM requests")}
    finally:
        conn.close()
    return snap


def check(
    nodes: dict[str, NodeSnapshot],
    sims: dict[str, SimSnapshot],
    accepted: list[Accepted] = (),  # type: ignore[assignment]
    *,
    seeded_measures: dict[str, set[str]] | None = None,
) -> list[Violation]:
    """Every invariant of the module docstring over the snapshots; [] when all hold.

    ``seeded_measures``: per simulator, measure ids that existed before the campaign (the seeded
    population's earlier freezes and seals), which no court of the campaign issued."""
    out: list[Violation] = []
    out += _check_outboxes(nodes)
    out += _check_receipts(nodes)
    out += _check_workflows(nodes)
    out += _check_agency(nodes, sims, seeded_measures or {})
    out += _check_entrusted(nodes, sims)
    for court, snap in nodes.items():
        if not snap.audit_ok:
            out.append(
                Violation("audit_broken", court, "audit", snap.audit_problem or "the audit chain does not verify")
            )
    out += _check_accepted(nodes, list(accepted))
    return out


def _check_outboxes(nodes: dict[str, NodeSnapshot]) -> list[Violation]:
    out: list[Violation] = []
    for court, snap in nodes.items():
        seen: collections.Counter[tuple[str, str]] = collections.Counter()
        for env, hop, kind, origin, state, reason in snap.outbox:
            seen[(env, hop)] += 1
            ref = f"envelope {env} ({kind} from {origin})"
            if state == "pending":
                out.append(Violation("outbox_pending", court, ref, f"still pending for next hop {hop}"))
            elif state == "rejected":
                out.append(Violation("outbox_rejected", court, ref, f"refused by {hop}: {reason}"))
            elif state == "delivered":
                peer = nodes.get(hop)
                if peer is not None and env not in peer.inbox:
                    out.append(Violation("hop_lost", court, ref, f"marked delivered to {hop}, not in {hop}'s inbox"))
        for (env, hop), n in seen.items():
            if n > 1:
                out.append(Violation("outbox_duplicate", court, f"envelope {env}", f"queued {n} times for {hop}"))
    return out


def _check_receipts(nodes: dict[str, NodeSnapshot]) -> list[Violation]:
    out: list[Violation] = []
    for court, snap in nodes.items():
        for env, recipient, state in snap.deliveries:
            ref = f"envelope {env} to {recipient}"
            if state != "delivered":
                out.append(Violation("receipt_missing", court, ref, f"delivery is {state}, no receipt"))
            peer = nodes.get(recipient)
            if peer is not None and recipient != court and env not in peer.inbox:
                out.append(Violation("receipt_missing", court, ref, f"{recipient} does not hold the envelope"))
    return out


def _check_workflows(nodes: dict[str, NodeSnapshot]) -> list[Violation]:
    out: list[Violation] = []
    for court, snap in nodes.items():
        for key, events in snap.events.items():
            envs = collections.Counter(e for _, _, e in events if e)
            for env, n in envs.items():
                if n > 1:
                    out.append(
                        Violation(
                            "effect_duplicated",
                            court,
                            f"item {key[0]} party {key[1]}",
                            f"envelope {env} applied {n} times",
                        )
                    )
        for (item, party), (wf, issuer, role, state) in snap.items.items():
            if role != "issuer":
                continue
            ref = f"{wf} item {item} ({issuer} → {party})"
            other = nodes.get(party)
            if other is None:
                continue
            there = other.items.get((item, party))
            if there is None:
                out.append(Violation("workflow_one_sided", court, ref, f"{party} has no such item"))
                continue
            if there[3] != state:
                out.append(Violation("workflow_diverged", court, ref, f"state {state} here, {there[3]} at {party}"))
            mine = [(a, s) for a, s, _ in snap.events.get((item, party), [])]
            theirs = [(a, s) for a, s, _ in other.events.get((item, party), [])]
            if mine != theirs:
                out.append(Violation("workflow_diverged", court, ref, f"history {mine} here, {theirs} at {party}"))
        for (item, party), (wf, issuer, role, _state) in snap.items.items():
            if role == "party" and issuer in nodes and (item, party) not in nodes[issuer].items:
                out.append(
                    Violation("workflow_one_sided", court, f"{wf} item {item}", f"issuer {issuer} has no such item")
                )
    return out


FINAL_OUTCOMES_AT_AGENCY = ("done", "partial", "queued")


def _check_agency(
    nodes: dict[str, NodeSnapshot], sims: dict[str, SimSnapshot], seeded: dict[str, set[str]]
) -> list[Violation]:
    out: list[Violation] = []
    issued: set[str] = set()
    for court, snap in nodes.items():
        issued.update(snap.jobs)
        issued.update(snap.entrusted)
        for rid, (kind, status, route, served_by, _outcome, _mid) in snap.requests.items():
            issued.add(rid)
            ref = f"{kind} request {rid}"
            if status == "pending":
                out.append(Violation("agency_stuck", court, ref, "still pending"))
            if route == "relay" and served_by and served_by in nodes:
                served = nodes[served_by].served.get(rid)
                if served is None:
                    if status != "pending":
                        out.append(
                            Violation(
                                "agency_mismatch", court, ref, f"answered as {status}; {served_by} never served it"
                            )
                        )
                elif served[1] != status and status != "timed_out":
                    out.append(Violation("agency_mismatch", court, ref, f"{status} here, {served[1]} at {served_by}"))
        for rid, (origin, _served_status, reported) in snap.served.items():
            if not reported:
                out.append(
                    Violation("agency_stuck", court, f"served request {rid} from {origin}", "never reported back")
                )
        for job, (plugin, status) in snap.jobs.items():
            if status == "pending":
                out.append(Violation("agency_stuck", court, f"job {job} ({plugin})", "still pending"))
    by_request: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for kind, sim in sims.items():
        counts = collections.Counter(r for _, r in sim.measures if r)
        for rid, n in counts.items():
            if n > 1:
                out.append(
                    Violation("agency_twice", kind, f"request {rid}", f"took effect {n} times at the {kind} agency")
                )
        for mid, req in sim.measures:
            if mid in seeded.get(kind, set()):
                continue
            if req:
                by_request[req].append((kind, mid))
            if not req or req not in issued:
                out.append(
                    Violation("agency_orphan", kind, f"measure {mid}", f"request id {req!r} was issued by no court")
                )
    for court, snap in nodes.items():
        for rid, (what, state, _route, _served, outcome, agency_mid) in snap.requests.items():
            if what != "control" or state != "answered" or outcome not in FINAL_OUTCOMES_AT_AGENCY:
                continue
            at_agency = by_request.get(rid, [])
            if not at_agency:
                out.append(
                    Violation(
                        "agency_lost", court, f"control request {rid}", f"{outcome} here; no measure at the agency"
                    )
                )
            elif agency_mid and all(m != agency_mid for _, m in at_agency):
                out.append(
                    Violation(
                        "agency_lost",
                        court,
                        f"control request {rid}",
                        f"measure {agency_mid} here; agency has {at_agency}",
                    )
                )
    return out


def _check_entrusted(nodes: dict[str, NodeSnapshot], sims: dict[str, SimSnapshot]) -> list[Violation]:
    """An entrusted freeze/seal the executing court holds as done has its measure at the agency."""
    out: list[Violation] = []
    at_agency = {r for sim in sims.values() for _, r in sim.measures if r}
    for court, snap in nodes.items():
        for rid, (item, status) in snap.entrusted.items():
            job = snap.jobs.get(rid)
            if job is not None and job[1] == "pending":
                out.append(Violation("agency_stuck", court, f"entrust item {item}", f"agency request {rid} pending"))
            if status in FINAL_OUTCOMES_AT_AGENCY and rid not in at_agency:
                out.append(
                    Violation(
                        "agency_lost", court, f"entrust item {item}", f"{status} here; request {rid} not at the agency"
                    )
                )
    return out


def _check_accepted(nodes: dict[str, NodeSnapshot], accepted: list[Accepted]) -> list[Violation]:
    out: list[Violation] = []
    for a in accepted:
        snap = nodes.get(a.court)
        if snap is None:
            continue
        if a.what == "directive":
            found = a.ref in snap.directives
        elif a.what == "case":
            found = a.ref in snap.cases
        elif a.what == "control":
            found = a.ref in snap.requests
        elif a.what == "step":
            item, _, action = a.ref.partition(":")
            found = any(
                k[0] == item and (action == "execute" or any(e[0] == action for e in events))
                for k, events in snap.events.items()
            )
        else:
            found = any(k[0] == a.ref for k in snap.items)
        if not found:
            out.append(
                Violation("accepted_lost", a.court, f"{a.what} {a.ref}", "acknowledged to the caller, not in the store")
            )
    return out
