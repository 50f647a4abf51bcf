"""Enforcement workflows: persisted state machines whose transitions travel as envelopes.

:mod:`hub.workflows.catalog` lists the workflow modules; :func:`load_workflows` registers their
specs with the node's engine and runs their ``setup``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.node import Node


def load_workflows(node: Node) -> None:
    from hub.workflows import catalog

    for module in catalog.MODULES:
        for spec in [*getattr(module, "SPECS", []), *([module.SPEC] if hasattr(module, "SPEC") else [])]:
            node.workflows.register(spec)
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(node)
