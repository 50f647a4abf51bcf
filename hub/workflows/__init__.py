"""Enforcement workflows: persisted state machines whose transitions travel as envelopes.

Each workflow module declares its :class:`~hub.workflows.engine.WorkflowSpec`; this package's
:func:`register_workflows` is the one list of them the node loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.workflows.engine import WorkflowEngine


def register_workflows(engine: WorkflowEngine) -> None:
    from hub.workflows import catalog

    for spec in catalog.SPECS:
        engine.register(spec)
