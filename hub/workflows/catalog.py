"""The workflows a node knows. Each workflow module adds its spec here."""

from __future__ import annotations

from hub.workflows import supervision
from hub.workflows.engine import WorkflowSpec

SPECS: list[WorkflowSpec] = [supervision.SPEC]
