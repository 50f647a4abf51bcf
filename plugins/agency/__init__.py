"""Shared base of the agency connectors and their reference simulators.

* :mod:`plugins.agency.server` — simulator scaffolding (routing, validation, idempotency, clock,
  faults); :mod:`plugins.agency.ledger` — the control-measure ledger (priority, waiting, terms,
  lapse); :mod:`plugins.agency.approval` — sealed-approval verification;
  :mod:`plugins.agency.sim` — start/run/spawn a simulator.
* :mod:`plugins.agency.client` — the async client base; typed clients live in each agency package
  (:func:`client_for` picks one by kind).
* :mod:`plugins.agency.model` — wire types shared by both sides; :mod:`plugins.agency.subjects` —
  the seeded debtors tests and the demo can use.
"""

from __future__ import annotations

import importlib
from typing import Any

from plugins.agency.client import AgencyClient

AGENCY_KINDS = ("bank", "land", "public_security", "telecom")

_CLIENTS = {
    "bank": "plugins.bank.client:BankClient",
    "land": "plugins.land.client:LandClient",
    "public_security": "plugins.public_security.client:PublicSecurityClient",
    "telecom": "plugins.telecom.client:TelecomClient",
}


def client_for(kind: str, base_url: str, **kwargs: Any) -> AgencyClient:
    """The typed client of agency ``kind`` for ``base_url`` (kwargs: ``timeout_s``, ``session``)."""
    target = _CLIENTS.get(kind)
    if target is None:
        raise ValueError(f"unknown agency kind {kind!r}; expected one of {', '.join(AGENCY_KINDS)}")
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    client = cls(base_url, **kwargs)
    assert isinstance(client, AgencyClient)
    return client


__all__ = ["AGENCY_KINDS", "AgencyClient", "client_for"]
