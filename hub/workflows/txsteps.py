"""Workflow steps inside an existing transaction, for the command-center workflows.

The engine's :meth:`~hub.workflows.engine.WorkflowEngine.create` and ``act`` each run their own
transaction. Some steps must happen *inside* another one, atomically with what caused them:

* a directive's per-recipient items are opened with the directive itself (issuer side) and with its
  delivery (recipient side) — no envelope of their own, the directive is the envelope;
* an important-case report forwarded by rule is forwarded in the transaction that received it, and
  an instruction relayed down (or a follow-up relayed up) in the transaction that brought it.

These are thin shims over the engine's in-transaction methods (``create_in``, ``act_in``,
``open_in``), which apply its own rules (relation, side, state, checks, deadlines, effects) and
originate the ``workflow`` envelope in the caller's transaction. Also here: resolving an item id
typed by a person (a unique prefix), refusals that leave an audit entry at the refusing court, and
the periodic tick of these workflows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from hub.codes import CourtCode
from hub.errors import AuthorityError, InvalidInput, NotFound
from hub.federation.exchange import Tx
from hub.workflows.engine import Data, WorkflowEngine, WorkflowSpec, item_row
from hub.workflows.schema import workflow_events, workflow_items

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)

MIN_PREFIX = 6


class RuleError(InvalidInput):
    """A step refused by a named time limit or rule (the message names the rule)."""

    reason = "rule_violated"


def open_local(
    tx: Tx,
    engine: WorkflowEngine,
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
    """Open one side of an item in ``tx`` without an envelope of its own (the caller's envelope is
    the item's origin). ``role`` is this court's side; ``actor`` the issuing court."""
    engine.open_in(
        tx, spec, item_id, party, role, title, data, deadline, envelope_id, actor, case_number=case_number, local=local
    )


def create_in_tx(
    tx: Tx,
    engine: WorkflowEngine,
    workflow: str,
    party: CourtCode,
    title: str,
    data: Data,
    *,
    item_id: str,
    case_number: str = "",
) -> str:
    """:meth:`WorkflowEngine.create` for one party, inside ``tx``; returns the envelope id."""
    return engine.create_in(tx, workflow, party, title, data, item_id=item_id, case_number=case_number)


def act_in_tx(tx: Tx, engine: WorkflowEngine, item_id: str, party: CourtCode, action: str, data: Data) -> Data:
    """:meth:`WorkflowEngine.act` inside ``tx`` (no attachments); returns the row after the step."""
    raw = dict(data)
    auto = bool(raw.pop("auto", False))
    return engine.act_in(tx, item_id, party, action, raw, auto=auto)


def row_state(conn: Connection, item_id: str, party: str) -> str | None:
    found = conn.execute(
        select(workflow_items.c.state).where(workflow_items.c.item_id == item_id, workflow_items.c.party == party)
    ).first()
    return str(found[0]) if found else None


def item_rows(conn: Connection, workflow: str, ident: str, role: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``workflow`` whose item id (or ``data.report_id``) starts with ``ident``, or is it.

    One item id may have several rows (one per party: a directive to a subtree)."""
    ident = ident.strip()
    if len(ident) < MIN_PREFIX:
        raise InvalidInput(f"an item id (or a unique prefix of at least {MIN_PREFIX} characters) is needed")
    q = select(workflow_items).where(workflow_items.c.workflow == workflow)
    if role is not None:
        q = q.where(workflow_items.c.role == role)
    out = []
    for r in conn.execute(q.where(workflow_items.c.item_id.like(f"{_escape(ident)}%", escape="\\"))).all():
        out.append(plain_row(r))
    if not out and workflow == "report":
        for r in conn.execute(q.where(workflow_items.c.data.like(f'%"report_id": "{_escape(ident)}%', escape="\\"))):
            out.append(plain_row(r))
    ids = {r["item_id"] for r in out}
    if len(ids) > 1 and ident not in ids:
        raise InvalidInput(f"{ident!r} matches {len(ids)} {workflow} items; give more of the id", reason="ambiguous")
    return out


def events(conn: Connection, item_ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = list(item_ids)
    if not ids:
        return []
    return [
        {
            "id": e.id,
            "item_id": e.item_id,
            "party": e.party,
            "action": e.action,
            "from": e.from_state,
            "to": e.to_state,
            "actor": e.actor,
            "at_ms": e.at_ms,
            "data": json.loads(e.data),
            "envelope_id": e.envelope_id,
        }
        for e in conn.execute(
            select(workflow_events).where(workflow_events.c.item_id.in_(ids)).order_by(workflow_events.c.id)
        ).all()
    ]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


plain_row = item_row  # a workflow_items row as a plain dict (the engine's mapping)


def one_row(rows: list[dict[str, Any]], me: CourtCode, workflow: str, ident: str, role: str) -> dict[str, Any]:
    """The single row where this court has ``role``; a clear refusal when it has none."""
    mine = [r for r in rows if r["role"] == role]
    if not mine:
        if rows:
            side = "the issuing court" if role == "issuer" else "a receiving court"
            raise AuthorityError(
                f"{me} is not {side} of {workflow} item {rows[0]['item_id']}: this step is not its to take",
                reason="not_a_party",
            )
        raise AuthorityError(
            f"no {workflow} item {ident!r} involving {me} here: only the courts it concerns may act on it",
            reason="not_a_party",
        )
    if len(mine) > 1:
        raise InvalidInput(
            f"{workflow} item {ident!r} has {len(mine)} parties here; name the court", reason="ambiguous"
        )
    return mine[0]


@contextlib.asynccontextmanager
async def refusals_audited(node: Node, operation: str, peer: str = "") -> AsyncIterator[None]:
    """A refusal on authority or by a named rule becomes an audit entry at this (refusing) court."""
    try:
        yield
    except (AuthorityError, RuleError, NotFound) as exc:
        await node.audit_event("refused", peer or str(node.me), exc.reason, f"{operation}: {exc.message}")
        if isinstance(exc, NotFound):  # no such item here: this court is not one it concerns
            raise AuthorityError(exc.message, reason="not_a_party") from None
        raise


# -- the periodic tick ---------------------------------------------------------------------------

_TICKED: weakref.WeakKeyDictionary[Node, set[str]] = weakref.WeakKeyDictionary()


def tick_workflows(node: Node, names: Iterable[str]) -> None:
    """Mark these workflows as this module's for :func:`tick` (the node's workflow tick loop takes
    every workflow's automatic steps; this only scopes the on-demand ``tick`` of these modules)."""
    _TICKED.setdefault(node, set()).update(names)


async def tick(node: Node, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every automatic step due now in ``names`` (default: those registered here) that is this
    side's to take (see :meth:`WorkflowEngine.tick`)."""
    wanted = set(names) if names is not None else _TICKED.get(node, set())
    return await node.workflows.tick(wanted)
