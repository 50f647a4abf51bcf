"""Tables of the workflow engine (:mod:`hub.workflows.engine`), on the node's shared metadata.

Every workflow item exists at both ends — the court that issued it and the party court — as one
row per (item, party) with this node's role; its history is an append-only list of transitions.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text

from hub.store.schema import metadata

workflow_items = Table(
    "workflow_items",
    metadata,
    Column("item_id", String(64), primary_key=True),
    Column("party", String(16), primary_key=True),
    Column("workflow", String(32), nullable=False),
    Column("issuer", String(16), nullable=False),
    Column("role", String(8), nullable=False),  # issuer | party: which side this node is
    Column("state", String(32), nullable=False),
    Column("title", Text, nullable=False),
    Column("case_number", String(64)),
    Column("data", Text, nullable=False, default="{}"),  # merged data of every transition
    Column("deadline_ms", BigInteger),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)
Index("ix_workflow_items_due", workflow_items.c.deadline_ms)
Index("ix_workflow_items_workflow_state", workflow_items.c.workflow, workflow_items.c.state)

workflow_events = Table(
    "workflow_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(64), nullable=False),
    Column("party", String(16), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_state", String(32)),
    Column("to_state", String(32), nullable=False),
    Column("actor", String(16), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("data", Text, nullable=False, default="{}"),
    Column("envelope_id", String(64)),
)
Index("ix_workflow_events_item", workflow_events.c.item_id, workflow_events.c.party)

attachments = Table(
    "attachments",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("media_type", String(128), nullable=False),
    Column("size", Integer, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)
