"""Alembic environment: runs on the connection handed over by hub.store.migrate."""

from __future__ import annotations

from alembic import context

import hub.agency.schema
import hub.store.agency_schema
import hub.workflows.schema  # noqa: F401 - these register their tables on the shared metadata
from hub.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through hub.store.migrate (it passes a connection)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
