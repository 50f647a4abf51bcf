"""The court-hub conformance kit, run against the sample plugin and its in-memory bank.

The fixtures ``courthub_agency``, ``courthub_plugin`` and ``courthub_plugin_config`` point the kit
at this plugin; ``PluginConformance`` brings the tests. Run ``pytest`` in this directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest
from courthub_sample_agency.plugin import SampleAgencyPlugin, SampleBank, serve

from hub.plugins import ControlRequest, Subject
from hub.plugins.conformance import PluginConformance

ZHANG = Subject(name="张三", id_no="410102199001011234")


@pytest.fixture
def courthub_agency() -> Iterator[SampleBank]:
    """Start the sandbox: a bank with two accounts for 张三."""
    bank = SampleBank()
    bank.open_account(ZHANG.id_no, ZHANG.name, "6222000000000001", 1_000_000)
    bank.open_account(ZHANG.id_no, ZHANG.name, "6222000000000002", 5_000)
    with serve(bank, "conformance"):
        yield bank


@pytest.fixture
def courthub_plugin() -> SampleAgencyPlugin:
    return SampleAgencyPlugin()


@pytest.fixture
def courthub_plugin_config(courthub_agency: SampleBank) -> Mapping[str, Any]:
    return {"endpoint": "memory://conformance"}


class TestSampleAgency(PluginConformance):
    known_subject = ZHANG
    invalid_configs: ClassVar = ({}, {"endpoint": 42}, {"endpoint": "http://bank"}, {"endpoint": "memory://x", "x": 1})
    unreachable_config: ClassVar = {"endpoint": "memory://nowhere"}

    def control_requests(self, agency: SampleBank, make_id: Callable[[], str]) -> Sequence[ControlRequest]:
        freeze = self.control(
            make_id(), "freeze", "bank.control", asset_id="6222000000000001", amount_fen=300_000, term_days=365
        )
        partial = self.control(
            make_id(), "freeze", "bank.control", asset_id="6222000000000002", amount_fen=9_000, term_days=365
        )
        return [freeze, partial]

    def agency_state(self, agency: SampleBank) -> Any:
        return agency.snapshot()

    def slow_down(self, agency: SampleBank, seconds: float) -> bool:
        agency.delay_s = seconds
        return True
