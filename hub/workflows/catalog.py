"""The workflow modules a node loads — one line each.

A module may define ``SPEC`` (a :class:`~hub.workflows.engine.WorkflowSpec`, or ``SPECS``, a
list) and ``setup(node)`` (admin operations, envelope handlers, background tasks it needs).
"""

from __future__ import annotations

from types import ModuleType

from hub.workflows import approvals, command, conclude, deadlines, entrust, stats, supervision

MODULES: list[ModuleType] = [
    supervision,
    approvals,
    entrust,
    command,
    deadlines,
    conclude,
    stats,
]
