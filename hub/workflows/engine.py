"""The workflow engine: persisted state machines whose transitions travel as sealed envelopes.

A workflow (督办 supervision, 事项委托 entrusted matter, 执行要情 report …) is declared as data — a
:class:`WorkflowSpec` of states, steps (which side may take each, from which states, what deadline
follows) and what happens automatically when a deadline passes — not as code. Every item lives at
both ends: the issuing court and the party court each keep a row and the full history. A side that
takes a step updates its row and, in the same transaction, originates a ``workflow`` envelope to
the other side, which checks the same rules (the sender is the counterpart; that side may take this
step; the item is in a state the step starts from) and applies it. Refusals are negative receipts
and audit entries at the refusing court. Deadlines are computed by the acting side from its clock
and carried in the envelope, so both ends agree on them.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from hub.clock import iso
from hub.codes import CourtCode
from hub.errors import AuthorityError, CourtHubError, InvalidCode, InvalidInput, NotFound
from hub.federation import kinds
from hub.federation.envelope import Target
from hub.federation.exchange import Delivery, Tx
from hub.proto.courthub.v1 import workflow_pb2 as wpb
from hub.text import control_character
from hub.trust import below
from hub.workflows.schema import attachments, workflow_events, workflow_items

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
MAX_ATTACHMENT_BYTES = 256 * 1024
MAX_ATTACHMENTS_BYTES = 768 * 1024
MAX_DATA_BYTES = 64 * 1024
_ATTACHMENT_NAME = re.compile(r"^[^/\\\x00-\x1f]{1,120}$")

WORKFLOW = kinds.register(
    kinds.KindSpec("workflow", wpb.WorkflowPayload, True, True, kinds.Authority.ANY, receipt=True)
)

Data = dict[str, Any]
Check = Callable[[Data], Data]
Deadline = Callable[[int, Data], int | None]


class Relation(enum.StrEnum):
    """Where the party court must sit relative to the issuer."""

    DOWNWARD = "downward"  # strictly below (supervision, petitions handed down, directives)
    UPWARD = "upward"  # strictly above (reports, requests for instructions, approvals)
    ANY = "any"  # any other court (entrusted matters)

    def check(self, issuer: CourtCode, party: CourtCode) -> None:
        if issuer == party:
            raise AuthorityError(f"{issuer} cannot open a workflow item with itself", reason="wrong_party")
        if self is Relation.DOWNWARD and not below(party, issuer):
            raise AuthorityError(f"{issuer} may only address courts below it; {party} is not", reason="wrong_direction")
        if self is Relation.UPWARD and not below(issuer, party):
            raise AuthorityError(f"{issuer} may only address courts above it; {party} is not", reason="wrong_direction")


@dataclass(frozen=True)
class Step:
    action: str
    frm: frozenset[str]
    to: str
    by: str  # "issuer" | "party": the side that may take it
    deadline: Deadline | None = None  # the deadline after the step (None: unchanged; 0: none)
    check: Check | None = None  # validates and normalises the step's data
    label: str = ""  # Chinese name shown to court staff


@dataclass(frozen=True)
class Overdue:
    """When the deadline passes while the item is in ``state``, the side that may take ``action``
    takes it automatically (a reminder 催报, an escalation …)."""

    state: str
    action: str


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    label: str
    relation: Relation
    initial: str
    steps: tuple[Step, ...]
    create_check: Check | None = None
    create_deadline: Deadline | None = None
    overdue: tuple[Overdue, ...] = ()
    # Called in the creating/receiving transaction after a step is applied at either end.
    effects: dict[str, Callable[[WorkflowTx], None]] = field(default_factory=dict)

    def step(self, action: str) -> Step:
        for s in self.steps:
            if s.action == action:
                return s
        raise InvalidInput(f"{self.name} has no step {action!r}; steps: {', '.join(s.action for s in self.steps)}")


@dataclass
class WorkflowTx:
    """A step being applied, for effects: the transaction, the row after the step, the data."""

    tx: Tx
    engine: WorkflowEngine
    row: dict[str, Any]
    data: Data
    local: bool  # taken here (True) or received from the other side (False)


def _data(text: str, where: str) -> Data:
    if len(text) > MAX_DATA_BYTES:
        raise InvalidInput(f"{where}: data is {len(text)} bytes; the limit is {MAX_DATA_BYTES}")
    try:
        value = json.loads(text or "{}")
    except (json.JSONDecodeError, RecursionError):
        raise InvalidInput(f"{where}: data is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: data must be a JSON object")
    return value


def check_attachment(att: wpb.Attachment) -> None:
    """Names are labels, never paths: refuse separators, control characters and '..'."""
    if not _ATTACHMENT_NAME.match(att.name) or att.name in (".", "..") or ".." in att.name.split("."):
        raise InvalidInput(
            f"attachment name {att.name[:60]!r} is not allowed (no paths, separators or control characters)"
        )
    if len(att.content) > MAX_ATTACHMENT_BYTES:
        raise InvalidInput(f"attachment {att.name!r} is {len(att.content)} bytes; the limit is {MAX_ATTACHMENT_BYTES}")
    if hashlib.sha256(att.content).hexdigest() != att.sha256:
        raise InvalidInput(f"attachment {att.name!r} does not match its SHA-256")


def make_attachment(name: str, content: bytes, media_type: str = "application/octet-stream") -> wpb.Attachment:
    att = wpb.Attachment(name=name, media_type=media_type, sha256=hashlib.sha256(content).hexdigest(), content=content)
    check_attachment(att)
    return att


def item_row(r: Any) -> dict[str, Any]:
    """A ``workflow_items`` row as a plain dict, its data decoded."""
    return {
        "item_id": r.item_id,
        "party": r.party,
        "workflow": r.workflow,
        "issuer": r.issuer,
        "role": r.role,
        "state": r.state,
        "title": r.title,
        "case_number": r.case_number,
        "data": json.loads(r.data),
        "deadline_ms": r.deadline_ms,
        "created_at_ms": r.created_at_ms,
        "updated_at_ms": r.updated_at_ms,
    }


class WorkflowEngine:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.specs: dict[str, WorkflowSpec] = {}
        node.exchange.handle("workflow", self._on_envelope)

    def register(self, spec: WorkflowSpec) -> WorkflowSpec:
        self.specs[spec.name] = spec
        return spec

    def spec(self, name: str) -> WorkflowSpec:
        spec = self.specs.get(name)
        if spec is None:
            raise InvalidInput(f"no workflow {name!r}; known: {', '.join(sorted(self.specs))}")
        return spec

    # -- taking steps here --------------------------------------------------------------------
    async def create(
        self,
        workflow: str,
        parties: Sequence[CourtCode],
        title: str,
        data: Data | None = None,
        *,
        case_number: str = "",
        files: Sequence[wpb.Attachment] = (),
    ) -> str:
        """Open an item with each party, in one transaction; returns the item id (shared by all
        parties' rows)."""
        if not parties:
            raise InvalidInput(f"{workflow}: at least one party court is needed")
        item_id = uuid.uuid4().hex

        def work(tx: Tx) -> None:
            for party in parties:
                self.create_in(
                    tx, workflow, party, title, data or {}, item_id=item_id, case_number=case_number, files=files
                )

        await self.node.exchange.run(work)
        return item_id

    async def act(
        self,
        item_id: str,
        party: CourtCode,
        action: str,
        data: Data | None = None,
        *,
        files: Sequence[wpb.Attachment] = (),
        auto: bool = False,
    ) -> dict[str, Any]:
        """Take a step on this side of an item; returns the row after the step."""
        return await self.node.exchange.run(
            lambda tx: self.act_in(tx, item_id, party, action, data or {}, files=files, auto=auto)
        )

    # -- the same, inside a caller's transaction ----------------------------------------------
    def create_in(
        self,
        tx: Tx,
        workflow: str,
        party: CourtCode,
        title: str,
        data: Data,
        *,
        item_id: str,
        case_number: str = "",
        files: Sequence[wpb.Attachment] = (),
    ) -> str:
        """Open an item with one party inside ``tx`` (atomically with whatever else ``tx`` does);
        returns the id of the ``workflow`` envelope that carries it to the party."""
        spec = self.spec(workflow)
        me = self.node.me
        spec.relation.check(me, party)
        _check_title(workflow, title)
        raw = dict(data)
        clean = _checked(spec.create_check, raw)
        deadline = spec.create_deadline(tx.now_ms, clean) if spec.create_deadline else None
        for att in files:
            check_attachment(att)
        payload = wpb.WorkflowPayload(
            workflow=workflow,
            item_id=item_id,
            action="create",
            issuer=str(me),
            party=str(party),
            data_json=json.dumps({**raw, "title": title}, ensure_ascii=False),
            deadline_ms=deadline or 0,
            attachments=list(files),
        )
        eid = self.node.exchange.emit(tx, "workflow", Target.to_court(party), payload, case_number=case_number)
        self.open_in(tx, spec, item_id, party, "issuer", title, clean, deadline, eid, str(me), case_number=case_number)
        self._store_files(tx, files)
        return eid

    def act_in(
        self,
        tx: Tx,
        item_id: str,
        party: CourtCode,
        action: str,
        data: Data,
        *,
        files: Sequence[wpb.Attachment] = (),
        auto: bool = False,
    ) -> dict[str, Any]:
        """Take a step inside ``tx`` and send it to the other side; returns the row after it."""
        row = self.row(tx.conn, item_id, party)
        spec = self.spec(row["workflow"])
        step = spec.step(action)
        if step.by != row["role"]:
            side = "the issuing court" if step.by == "issuer" else "the party court"
            raise AuthorityError(
                f"{spec.name} step {action!r} is for {side}, not for {self.node.me}", reason="not_authorized"
            )
        if row["state"] not in step.frm:
            raise InvalidInput(
                f"{spec.name} item {item_id} is {row['state']}; {action!r} needs {sorted(step.frm)}",
                reason="wrong_state",
            )
        raw = dict(data)
        if auto:
            raw["auto"] = True
        clean = _checked(step.check, raw)
        for att in files:
            check_attachment(att)
        deadline = step.deadline(tx.now_ms, {**row["data"], **clean}) if step.deadline else None
        counterpart = CourtCode.parse(row["issuer"]) if row["role"] == "party" else party
        payload = wpb.WorkflowPayload(
            workflow=spec.name,
            item_id=item_id,
            action=action,
            issuer=row["issuer"],
            party=str(party),
            # The input as given: the other side runs the same check on it and gets the same result.
            data_json=json.dumps(raw, ensure_ascii=False),
            deadline_ms=deadline if deadline is not None else -1,
            attachments=list(files),
        )
        eid = self.node.exchange.emit(
            tx, "workflow", Target.to_court(counterpart), payload, case_number=row["case_number"] or ""
        )
        result = self._apply(tx, spec, step, row, clean, deadline, eid, str(self.node.me), local=True)
        self._store_files(tx, files)
        return result

    def open_in(
        self,
        tx: Tx,
        spec: WorkflowSpec,
        item_id: str,
        party: CourtCode,
        role: str,
        title: str,
        data: Data,
        deadline: int | None,
        envelope_id: str,
        actor: str,
        *,
        case_number: str = "",
        local: bool = True,
    ) -> None:
        """Record one side of an item in ``tx`` without an envelope of its own — for items whose
        origin is another envelope (a directive's per-recipient items open with the directive)."""
        self._insert(
            tx, spec, item_id, party, role, title, case_number, data, deadline, envelope_id, actor, local=local
        )

    def row(self, conn: Connection, item_id: str, party: CourtCode) -> dict[str, Any]:
        """This node's row of an item (NotFound if it has none)."""
        return self._get(conn, item_id, party)

    async def tick(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Take every automatic step (催报, escalation …) whose deadline has passed and which is
        this side's to take, for the workflows ``names`` (default: all). A step another actor took
        meanwhile is skipped, not an error."""
        wanted = set(names) if names is not None else set(self.specs)
        now = self.node.clock.now_ms()
        due = await self.node.store.read(
            lambda c: [
                item_row(r)
                for r in c.execute(
                    select(workflow_items).where(
                        workflow_items.c.deadline_ms.is_not(None),
                        workflow_items.c.deadline_ms <= now,
                        workflow_items.c.workflow.in_(sorted(wanted)),
                    )
                ).all()
            ]
        )
        taken = []
        for row in due:
            spec = self.specs.get(row["workflow"])
            if spec is None:
                continue
            for rule in spec.overdue:
                if rule.state == row["state"] and spec.step(rule.action).by == row["role"]:
                    try:
                        await self.act(
                            row["item_id"],
                            CourtCode.parse(row["party"]),
                            rule.action,
                            {"overdue_since_ms": row["deadline_ms"]},
                            auto=True,
                        )
                    except CourtHubError as exc:
                        log.info("%s %s: %s not taken: %s", spec.name, row["item_id"], rule.action, exc)
                        break
                    taken.append(
                        {"workflow": spec.name, "item_id": row["item_id"], "party": row["party"], "action": rule.action}
                    )
                    break
        return taken

    # -- receiving steps ---------------------------------------------------------------------
    def _on_envelope(self, delivery: Delivery) -> None:
        p = delivery.payload
        assert isinstance(p, wpb.WorkflowPayload)
        spec = self.spec(p.workflow)
        origin = delivery.opened.origin
        me = self.node.me
        try:
            issuer, party = CourtCode.parse(p.issuer), CourtCode.parse(p.party)
        except InvalidCode as exc:
            raise InvalidInput(f"workflow envelope: {exc}") from None
        data = _data(p.data_json, f"{spec.name} {p.action}")
        for att in p.attachments:
            check_attachment(att)
        if p.action == "create":
            if origin != issuer or party != me:
                raise AuthorityError(
                    f"{origin} cannot open an item on behalf of {issuer} for {party}", reason="not_authorized"
                )
            spec.relation.check(issuer, party)
            title = str(data.pop("title", ""))
            _check_title(spec.name, title)
            clean = _checked(spec.create_check, data)
            self._insert(
                delivery.tx,
                spec,
                p.item_id,
                party,
                "party",
                title,
                delivery.opened.header.case_number,
                clean,
                p.deadline_ms or None,
                delivery.opened.id,
                str(origin),
                local=False,
            )
        else:
            row = self._get(delivery.conn, p.item_id, party)
            if row["issuer"] != str(issuer) or row["workflow"] != spec.name:
                raise AuthorityError(f"envelope does not match {spec.name} item {p.item_id}", reason="not_authorized")
            counterpart = row["issuer"] if row["role"] == "party" else row["party"]
            if str(origin) != counterpart:
                raise AuthorityError(
                    f"{origin} is not a party to {spec.name} item {p.item_id}", reason="not_authorized"
                )
            step = spec.step(p.action)
            actor_role = "issuer" if str(origin) == row["issuer"] else "party"
            if step.by != actor_role:
                raise AuthorityError(
                    f"{spec.name} step {p.action!r} may not be taken by {origin}", reason="not_authorized"
                )
            if row["state"] not in step.frm:
                raise InvalidInput(
                    f"{spec.name} item {p.item_id} is {row['state']}; {p.action!r} needs {sorted(step.frm)}",
                    reason="wrong_state",
                )
            clean = _checked(step.check, data)
            deadline = None if p.deadline_ms < 0 else p.deadline_ms
            self._apply(delivery.tx, spec, step, row, clean, deadline, delivery.opened.id, str(origin), local=False)
        self._store_files(delivery.tx, p.attachments)
        delivery.event(f"workflow.{spec.name}.{p.action}", {"item_id": p.item_id, "from": str(origin)})

    # -- store ---------------------------------------------------------------------------------
    def _get(self, conn: Connection, item_id: str, party: CourtCode) -> dict[str, Any]:
        r = conn.execute(
            select(workflow_items).where(workflow_items.c.item_id == item_id, workflow_items.c.party == str(party))
        ).first()
        if r is None:
            raise NotFound(f"no workflow item {item_id} with party {party} here")
        return item_row(r)

    def _insert(
        self,
        tx: Tx,
        spec: WorkflowSpec,
        item_id: str,
        party: CourtCode,
        role: str,
        title: str,
        case_number: str,
        data: Data,
        deadline: int | None,
        eid: str,
        actor: str,
        *,
        local: bool = True,
    ) -> None:
        now = tx.now_ms
        row = {
            "item_id": item_id,
            "party": str(party),
            "workflow": spec.name,
            "issuer": actor if role == "party" else str(self.node.me),
            "role": role,
            "state": spec.initial,
            "title": title,
            "case_number": case_number or None,
            "data": json.dumps(data, ensure_ascii=False),
            "deadline_ms": deadline,
            "created_at_ms": now,
            "updated_at_ms": now,
        }
        tx.conn.execute(insert(workflow_items).values(**row))
        tx.conn.execute(
            insert(workflow_events).values(
                item_id=item_id,
                party=str(party),
                action="create",
                from_state=None,
                to_state=spec.initial,
                actor=actor,
                at_ms=now,
                data=json.dumps(data, ensure_ascii=False),
                envelope_id=eid,
            )
        )
        effect = spec.effects.get("create")
        if effect is not None:
            effect(WorkflowTx(tx, self, {**row, "data": data}, data, local))

    def _apply(
        self,
        tx: Tx,
        spec: WorkflowSpec,
        step: Step,
        row: dict[str, Any],
        data: Data,
        deadline: int | None,
        eid: str,
        actor: str,
        *,
        local: bool,
    ) -> dict[str, Any]:
        now = tx.now_ms
        merged = {**row["data"], **data}
        values: dict[str, Any] = {
            "state": step.to,
            "data": json.dumps(merged, ensure_ascii=False),
            "updated_at_ms": now,
        }
        if deadline is not None:
            values["deadline_ms"] = deadline or None
        changed = tx.conn.execute(
            update(workflow_items)
            .where(
                workflow_items.c.item_id == row["item_id"],
                workflow_items.c.party == row["party"],
                workflow_items.c.state == row["state"],
            )
            .values(**values)
        ).rowcount
        if changed != 1:
            raise InvalidInput(f"{spec.name} item {row['item_id']} changed meanwhile; try again", reason="wrong_state")
        tx.conn.execute(
            insert(workflow_events).values(
                item_id=row["item_id"],
                party=row["party"],
                action=step.action,
                from_state=row["state"],
                to_state=step.to,
                actor=actor,
                at_ms=now,
                data=json.dumps(data, ensure_ascii=False),
                envelope_id=eid,
            )
        )
        new = {**row, **values, "data": merged}
        effect = spec.effects.get(step.action)
        if effect is not None:
            effect(WorkflowTx(tx, self, new, data, local))
        return new

    def _store_files(self, tx: Tx, files: Sequence[wpb.Attachment]) -> None:
        for att in files:
            exists = tx.conn.execute(select(attachments.c.sha256).where(attachments.c.sha256 == att.sha256)).first()
            if exists is None:
                tx.conn.execute(
                    insert(attachments).values(
                        sha256=att.sha256,
                        name=att.name,
                        media_type=att.media_type or "application/octet-stream",
                        size=len(att.content),
                        content=att.content,
                        created_at_ms=tx.now_ms,
                    )
                )

    # -- queries -------------------------------------------------------------------------------
    async def items(self, workflow: str | None = None, *, overdue_only: bool = False) -> list[dict[str, Any]]:
        now = self.node.clock.now_ms()

        def read(conn: Connection) -> list[dict[str, Any]]:
            q = select(workflow_items).order_by(workflow_items.c.created_at_ms.desc()).limit(500)
            if workflow:
                q = q.where(workflow_items.c.workflow == workflow)
            rows = [item_row(r) for r in conn.execute(q).all()]
            for r in rows:
                r["overdue"] = bool(
                    r["deadline_ms"]
                    and r["deadline_ms"] < now
                    and r["state"] not in _finals(self.specs.get(r["workflow"]))
                )
                r["deadline"] = iso(r["deadline_ms"]) if r["deadline_ms"] else None
            return [r for r in rows if r["overdue"]] if overdue_only else rows

        return await self.node.store.read(read)

    async def history(self, item_id: str) -> dict[str, Any]:
        def read(conn: Connection) -> dict[str, Any]:
            rows = [
                item_row(r)
                for r in conn.execute(select(workflow_items).where(workflow_items.c.item_id == item_id)).all()
            ]
            if not rows:
                raise NotFound(f"no workflow item {item_id} here")
            events = [
                {
                    "party": e.party,
                    "action": e.action,
                    "from": e.from_state,
                    "to": e.to_state,
                    "actor": e.actor,
                    "at": iso(e.at_ms),
                    "data": json.loads(e.data),
                    "envelope_id": e.envelope_id,
                }
                for e in conn.execute(
                    select(workflow_events).where(workflow_events.c.item_id == item_id).order_by(workflow_events.c.id)
                ).all()
            ]
            return {"items": rows, "events": events}

        return await self.node.store.read(read)


def _checked(check: Check | None, raw: Data) -> Data:
    """Run a step's validation on its raw input; an automatic step stays marked as such."""
    clean = check(dict(raw)) if check else dict(raw)
    if raw.get("auto"):
        clean["auto"] = True
    return clean


def _finals(spec: WorkflowSpec | None) -> set[str]:
    """States no step leaves."""
    if spec is None:
        return set()
    sources = set().union(*(s.frm for s in spec.steps))
    targets = {spec.initial, *(s.to for s in spec.steps)}
    return targets - sources


def days(n: float) -> Deadline:
    """A deadline ``n`` days after the step."""
    return lambda now, _data: now + int(n * DAY_MS)


def clear() -> Deadline:
    return lambda _now, _data: 0


def _check_title(workflow: str, title: str) -> None:
    if not title.strip() or len(title) > 200:
        raise InvalidInput(f"{workflow}: title must be 1–200 characters")
    if bad := control_character(title):
        raise InvalidInput(f"{workflow}: title contains a control character ({bad})")
