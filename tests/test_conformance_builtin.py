"""The four built-in connectors pass the plugin conformance kit (:mod:`hub.plugins.conformance`),
each against its reference simulator running as a separate process — exactly what a third-party
integrator does with their own plugin and sandbox.

One simulator process per agency for the module; the sandbox fixture resets it before every test.
The kit's tests are synchronous (one event loop per test), so the sandbox is driven over plain
HTTP with ``urllib``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hub.netutil import free_port
from hub.plugins.conformance import PluginConformance, courthub_host, courthub_plugin_name  # noqa: F401
from hub.plugins.models import ControlRequest, Subject
from plugins.agency.connector import AgencyConnector
from plugins.agency.sim import SimulatorProcess
from plugins.agency.subjects import SeededSubject, seeded_subjects, subject_by_role
from plugins.agency.synth import make_resident_id
from plugins.agency.testing import T0_ISO, T0_MS, Approver, court, write_trust_file
from plugins.bank.plugin import BankConnector
from plugins.land.plugin import LandConnector
from plugins.public_security.plugin import PublicSecurityConnector
from plugins.telecom.plugin import TelecomConnector

SEED = 11
KINDS = ("bank", "land", "public_security", "telecom")
APPROVER = Approver("豫14")  # trusted by the simulators: approves 边控 and 定位
RICH = subject_by_role(SEED, "rich")
BUSY = subject_by_role(SEED, "encumbered")
NOBODY_ID = make_resident_id("411402", date(1990, 5, 5), 7, True)
assert NOBODY_ID not in {s.id_no for s in seeded_subjects(SEED)}


def subj(s: SeededSubject) -> Subject:
    return Subject(s.name, s.id_no)


@pytest.fixture(scope="module")
def simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SimulatorProcess]]:
    trust = write_trust_file(tmp_path_factory.mktemp("trust") / "approvers.json", APPROVER)

    def start(kind: str) -> SimulatorProcess:
        return SimulatorProcess.start(kind, seed=SEED, now=T0_ISO, approvers=trust)

    with ThreadPoolExecutor(len(KINDS)) as pool:
        procs = dict(zip(KINDS, pool.map(start, KINDS), strict=True))
    yield procs
    for proc in procs.values():
        assert proc.stop() == 0


@dataclass
class Sandbox:
    """A simulator process, driven synchronously (admin endpoints, state snapshots)."""

    kind: str
    url: str

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def reset(self) -> None:
        self.post("/admin/reset", {"now_ms": T0_MS})

    def fault(self, mode: str, delay_ms: int = 0) -> None:
        self.post("/admin/fault", {"mode": mode, "delay_ms": delay_ms})

    def view(self, path: str, subject: SeededSubject) -> Any:
        """What the agency shows about ``subject`` at ``path``, without the per-answer fields."""
        body = {"request_id": "snapshot", "court": court().to_json(), "subject": subj(subject).to_dict()}
        answer = self.post(path, body)
        return {k: v for k, v in answer.items() if k not in ("request_id", "answered_at_ms")}


class BuiltinConformance(PluginConformance):
    """The kit, bound to one built-in connector and its simulator (not collected itself)."""

    kind: ClassVar[str]
    connector: ClassVar[type[AgencyConnector[Any]]]
    #: Endpoints whose answers make up the agency's state for the idempotency checks.
    state_paths: ClassVar[tuple[str, ...]] = ("/v1/inquiry",)

    known_subject = subj(RICH)
    unknown_subject = Subject("查无此人", NOBODY_ID)  # a valid ID number (the agency checks it) nobody has
    invalid_configs: ClassVar[Sequence[Mapping[str, Any]]] = (
        {},
        {"url": 42},
        {"url": "ftp://agency.example"},
        {"url": "http://agency.example", "timeout_s": -1},
        {"url": "http://agency.example", "scope": "nowhere"},
        {"url": "http://agency.example", "base_url": "http://agency.example"},
    )
    unreachable_config: ClassVar[Mapping[str, Any]] = {"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 2}

    @pytest.fixture
    def courthub_agency(self, simulators: dict[str, SimulatorProcess]) -> Sandbox:
        sandbox = Sandbox(self.kind, simulators[self.kind].url)
        sandbox.reset()
        return sandbox

    @pytest.fixture
    def courthub_plugin(self) -> AgencyConnector[Any]:
        # No teardown needed: the connector's HTTP session closes when the test's loop shuts down.
        return self.connector()

    @pytest.fixture
    def courthub_plugin_config(self, courthub_agency: Sandbox) -> Mapping[str, Any]:
        return {"url": courthub_agency.url, "timeout_s": 5}

    def agency_state(self, agency: Sandbox) -> Any:
        return {s.id_no: [agency.view(path, s) for path in self.state_paths] for s in (RICH, BUSY)}

    def slow_down(self, agency: Sandbox, seconds: float) -> bool:
        # At most a second late: far beyond the kit's short timeout, and a simulator still holding
        # an abandoned slow request then stops without waiting long.
        agency.fault("slow" if seconds > 0 else "normal", int(min(seconds, 1.0) * 1000))
        return True

    def approval(self, act: str) -> str:
        return APPROVER.approve(case_no=self.case_number, act=act, subject_id=RICH.id_no, now_ms=T0_MS)


class TestBankConformance(BuiltinConformance):
    kind = "bank"
    connector = BankConnector

    def control_requests(self, agency: Sandbox, make_id: Callable[[], str]) -> Sequence[ControlRequest]:
        return [
            self.control(
                make_id(),
                "freeze",
                "bank.control",
                asset_id=RICH.bank_accounts[0].asset_id,
                amount_fen=10_000_000,
                term_days=365,
            ),
            self.control(  # partial: another court froze 50,000.00 of its 80,000.00 元
                make_id(),
                "freeze",
                "bank.control",
                subject=subj(BUSY),
                asset_id=BUSY.bank_accounts[0].asset_id,
                amount_fen=6_000_000,
                term_days=180,
            ),
        ]


class TestLandConformance(BuiltinConformance):
    kind = "land"
    connector = LandConnector

    def control_requests(self, agency: Sandbox, make_id: Callable[[], str]) -> Sequence[ControlRequest]:
        return [
            self.control(make_id(), "seal", "land.control", asset_id=RICH.properties[0].asset_id, term_days=1095),
            self.control(  # queued behind another court's seal
                make_id(),
                "waiting",
                "land.control",
                subject=subj(BUSY),
                asset_id=BUSY.properties[0].asset_id,
                term_days=1095,
            ),
        ]


class TestPublicSecurityConformance(BuiltinConformance):
    kind = "public_security"
    connector = PublicSecurityConnector
    state_paths = ("/v1/inquiry", "/v1/vehicles")

    def control_requests(self, agency: Sandbox, make_id: Callable[[], str]) -> Sequence[ControlRequest]:
        return [
            self.control(
                make_id(), "seal", "public_security.control", asset_id=RICH.vehicles[0].asset_id, term_days=730
            ),
            self.control(
                make_id(),
                "border_control",
                "public_security.control",
                approval=self.approval("border_control"),
                term_days=180,
            ),
        ]


class TestTelecomConformance(BuiltinConformance):
    kind = "telecom"
    connector = TelecomConnector

    def control_requests(self, agency: Sandbox, make_id: Callable[[], str]) -> Sequence[ControlRequest]:
        # 定位 leaves no record a court can read back; the kit still checks that the repeat gets
        # the first fix (the operator replays it by request id) and changes nothing it can see.
        return [
            self.control(
                make_id(),
                "location",
                "telecom.control",
                asset_id=RICH.active_phone_numbers[0],
                approval=self.approval("location"),
            )
        ]


def test_every_builtin_connector_is_covered() -> None:
    covered = {cls.kind for cls in BuiltinConformance.__subclasses__()}
    assert covered == set(KINDS)
    assert Path(__file__).name == "test_conformance_builtin.py"
