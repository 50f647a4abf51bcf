"""The command-center workflows (指挥中心), loaded as one catalog entry.

Directives completed with per-recipient feedback (:mod:`~hub.workflows.directive_flow`),
important-case reports (:mod:`~hub.workflows.reports`), requests for instructions and petitions
(:mod:`~hub.workflows.requests`), the duty roster (:mod:`~hub.workflows.duty`) and notifications
for every workflow event (:mod:`hub.notify`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub import notify
from hub.workflows import directive_flow, duty, reports, requests
from hub.workflows.txsteps import tick_workflows

if TYPE_CHECKING:
    from hub.node import Node

SPECS = [directive_flow.SPEC, reports.SPEC, *requests.SPECS]


def setup(node: Node) -> None:
    duty.setup(node)
    directive_flow.setup(node)
    reports.setup(node)
    requests.setup(node)
    notify.setup(node)
    tick_workflows(node, [spec.name for spec in SPECS])
