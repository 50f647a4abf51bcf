"""The plugin host: loading (entry points, explicit), refusal, configuration, isolation of calls."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from hub.plugins import (
    PLUGIN_API_VERSION,
    AgencyKind,
    AgencyRejected,
    CaseFiled,
    ControlAction,
    ControlRequest,
    ControlResult,
    ControlStatus,
    CourtInfo,
    HealthResult,
    HealthStatus,
    InquiryRequest,
    InquiryResult,
    InquiryStatus,
    MeasureExpiring,
    Notification,
    PluginConfigError,
    PluginInfo,
    Recipient,
    Subject,
    hookimpl,
)
from hub.plugins.host import PluginHost, PluginRefused

COURT = CourtInfo(court_code="豫1402", court_name="商丘市梁园区人民法院", judge_name="王法官")
SUBJECT = Subject(name="张三", id_no="410102199001011234")


def inquiry(request_id: str = "req-1", capability: str = "bank.inquiry") -> InquiryRequest:
    return InquiryRequest(
        request_id=request_id, capability=capability, case_number="（2024）豫1402执123号", court=COURT, subject=SUBJECT
    )


def control(request_id: str = "ctl-1") -> ControlRequest:
    return ControlRequest(
        request_id=request_id,
        capability="bank.control",
        action=ControlAction.FREEZE,
        case_number="（2024）豫1402执123号",
        court=COURT,
        subject=SUBJECT,
        asset_id="6222000000000001",
        amount_fen=100_000,
        term_days=365,
    )


class Bank:
    """A well-behaved plugin; subclasses misbehave in one way each."""

    name = "bank-a"
    api_version = PLUGIN_API_VERSION
    capabilities: tuple[str, ...] = ("bank.inquiry", "bank.control")

    def __init__(self) -> None:
        self.config: Mapping[str, Any] | None = None
        self.events: list[Any] = []

    @hookimpl
    def courthub_plugin_info(self) -> PluginInfo:
        return PluginInfo(
            name=self.name,
            version="1.2.3",
            api_version=self.api_version,
            agency_kind=AgencyKind.BANK,
            capabilities=self.capabilities,
            scope="national",
        )

    @hookimpl
    def courthub_configure(self, config: Mapping[str, Any]) -> None:
        self.config = config

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> InquiryResult:
        return InquiryResult(request_id=request.request_id, status=InquiryStatus.NOT_FOUND)

    @hookimpl
    async def courthub_control(self, request: ControlRequest) -> ControlResult:
        return ControlResult(
            request_id=request.request_id, action=request.action, status=ControlStatus.DONE, measure_id="m1"
        )

    @hookimpl
    async def courthub_health(self) -> HealthResult:
        return HealthResult(HealthStatus.UP, "ok", latency_ms=1)

    @hookimpl
    def courthub_case_filed(self, case: CaseFiled) -> None:
        self.events.append(case)


class Raising(Bank):
    name = "bank-raises"

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> InquiryResult:
        raise RuntimeError("agency exploded")

    @hookimpl
    async def courthub_control(self, request: ControlRequest) -> ControlResult:
        raise AgencyRejected("credentials revoked")

    @hookimpl
    def courthub_case_filed(self, case: CaseFiled) -> None:
        raise ValueError("event handler bug")


class Hanging(Bank):
    name = "bank-hangs"

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> InquiryResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    @hookimpl
    async def courthub_health(self) -> HealthResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    @hookimpl
    def courthub_case_filed(self, case: CaseFiled) -> None:
        time.sleep(2)  # a blocking event handler: must not stall the loop


class Garbage(Bank):
    name = "bank-garbage"

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> Any:
        return {"request_id": request.request_id, "status": "answered", "assets": [{"kind": "deposit"}]}

    @hookimpl
    async def courthub_control(self, request: ControlRequest) -> Any:
        return ControlResult(request_id="someone-else", action=request.action, status=ControlStatus.DONE)

    @hookimpl
    async def courthub_health(self) -> Any:
        return "fine, thanks"


@pytest.fixture
def host() -> PluginHost:
    return PluginHost(default_timeout_s=0.5)


# -- loading and refusal ---------------------------------------------------------------------


def test_register_and_list(host: PluginHost) -> None:
    plugin = Bank()
    assert host.register(plugin) == "bank-a"
    assert plugin.config == {}
    assert host.names() == ["bank-a"]
    (status,) = host.list()
    row = status.to_dict()
    assert row["name"] == "bank-a" and row["state"] == "active"
    assert row["version"] == "1.2.3" and row["api_version"] == PLUGIN_API_VERSION
    assert row["capabilities"] == ["bank.inquiry", "bank.control"] and row["scope"] == "national"
    assert host.capabilities() == {"bank.control": ["bank-a"], "bank.inquiry": ["bank-a"]}


def test_configuration_section_without_host_keys() -> None:
    host = PluginHost({"bank-a": {"enabled": True, "call_timeout_s": 2, "base_url": "http://x"}})
    plugin = Bank()
    host.register(plugin)
    assert plugin.config == {"base_url": "http://x"}


def test_api_major_mismatch_is_refused_with_names_and_versions(host: PluginHost) -> None:
    class Future(Bank):
        name = "bank-future"
        api_version = "2.0"

    with pytest.raises(PluginRefused) as err:
        host.register(Future())
    message = str(err.value)
    assert "bank-future" in message and "2.0" in message and PLUGIN_API_VERSION in message
    assert [s.state for s in host.list()] == ["refused"]


def test_minor_version_difference_is_accepted(host: PluginHost) -> None:
    class Newer(Bank):
        api_version = f"{PLUGIN_API_VERSION.split('.')[0]}.9"

    assert host.register(Newer()) == "bank-a"


@pytest.mark.parametrize(
    ("plugin_src", "expected"),
    [
        ("no_info", "has no @hookimpl courthub_plugin_info"),
        ("bad_info", "PluginInfo.capabilities[0]"),
        ("raising_info", "courthub_plugin_info raised"),
        ("sync_inquire", "must be 'async def'"),
        ("missing_hook", "does not implement courthub_control"),
        ("typo_hook", "unknown hook(s) courthub_inquiry"),
    ],
)
def test_bad_plugins_are_refused(host: PluginHost, plugin_src: str, expected: str) -> None:
    class NoInfo:
        @hookimpl
        async def courthub_inquire(self, request: InquiryRequest) -> None: ...

    class BadInfo(Bank):
        capabilities = ("Bank Inquiry",)

    class RaisingInfo(Bank):
        @hookimpl
        def courthub_plugin_info(self) -> PluginInfo:
            raise KeyError("oops")

    class SyncInquire(Bank):
        @hookimpl
        def courthub_inquire(self, request: InquiryRequest) -> InquiryResult:  # type: ignore[override]
            raise AssertionError

    class MissingHook:
        @hookimpl
        def courthub_plugin_info(self) -> PluginInfo:
            return PluginInfo("half", "1", PLUGIN_API_VERSION, AgencyKind.BANK, ("bank.control",))

    class TypoHook(Bank):
        @hookimpl
        async def courthub_inquiry(self, request: InquiryRequest) -> None: ...

    plugins = {
        "no_info": NoInfo,
        "bad_info": BadInfo,
        "raising_info": RaisingInfo,
        "sync_inquire": SyncInquire,
        "missing_hook": MissingHook,
        "typo_hook": TypoHook,
    }
    with pytest.raises(PluginRefused, match=expected.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        host.register(plugins[plugin_src]())
    assert host.names() == []
    assert any(s.state == "refused" and expected in s.message for s in host.list())


def test_duplicate_name_is_refused(host: PluginHost) -> None:
    host.register(Bank())
    with pytest.raises(PluginRefused, match="already registered"):
        host.register(Bank())
    assert host.names() == ["bank-a"]


def test_disabled_and_blocked() -> None:
    host = PluginHost({"bank-a": {"enabled": False}}, block=["bank-raises"])
    assert host.register(Bank()) is None
    assert host.register(Raising()) is None
    host.register(Garbage())
    states = {s.name: s.state for s in host.list()}
    assert states == {"bank-a": "disabled", "bank-raises": "blocked", "bank-garbage": "active"}
    host.block("bank-garbage")
    assert host.names() == []
    assert {s.name: s.state for s in host.list()}["bank-garbage"] == "blocked"


def test_configure_rejecting_leaves_plugin_unconfigured_without_work() -> None:
    class Picky(Bank):
        @hookimpl
        def courthub_configure(self, config: Mapping[str, Any]) -> None:
            if "base_url" not in config:
                raise PluginConfigError("plugins.bank-a.base_url is required")

    host = PluginHost()
    host.register(Picky())
    (status,) = host.list()
    assert status.state == "unconfigured" and "base_url is required" in status.message
    assert host.names() == []
    outcome = asyncio.run(host.call_inquire("bank-a", inquiry()))
    assert outcome.failure is not None and outcome.failure.kind == "unavailable"
    host.configure({"bank-a": {"base_url": "http://agency"}})
    assert host.names() == ["bank-a"]


def test_invalid_call_timeout_is_refused() -> None:
    host = PluginHost({"bank-a": {"call_timeout_s": "soon"}})
    with pytest.raises(PluginRefused, match="call_timeout_s"):
        host.register(Bank())


@pytest.fixture
def installed_dist(tmp_path: Path) -> Iterator[Path]:
    """A fake installed distribution with two ``courthub.plugins`` entry points (one broken)."""
    pkg = tmp_path / "site"
    (pkg / "fakebank_plugin.py").parent.mkdir(parents=True)
    (pkg / "fakebank_plugin.py").write_text(
        textwrap.dedent(
            f"""
            from hub.plugins import hookimpl, PluginInfo, InquiryResult

            @hookimpl
            def courthub_plugin_info():
                return {{"name": "fakebank", "version": "0.3.0", "api_version": "{PLUGIN_API_VERSION}",
                        "agency_kind": "bank", "capabilities": ["bank.inquiry"], "scope": "豫14"}}

            @hookimpl
            async def courthub_inquire(request):
                return InquiryResult(request_id=request.request_id, status="not_found")
            """
        )
    )
    dist = pkg / "fakebank-0.3.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakebank\nVersion: 0.3.0\n")
    (dist / "entry_points.txt").write_text(
        "[courthub.plugins]\nfakebank = fakebank_plugin\nbroken = no_such_module_xyz\n"
    )
    sys.path.insert(0, str(pkg))
    yield pkg
    sys.path.remove(str(pkg))
    sys.modules.pop("fakebank_plugin", None)


def test_load_entry_points(installed_dist: Path) -> None:
    host = PluginHost()
    # The built-in connectors are installed too; unconfigured (no url) they are not active.
    assert host.load_entry_points() == ["fakebank"]
    states = {s.name: s for s in host.list()}
    assert states["fakebank"].state == "active"
    assert "fakebank 0.3.0" in states["fakebank"].source
    assert states["fakebank"].info is not None and states["fakebank"].info.scope == "豫14"
    assert states["broken"].state == "refused" and "import failed" in states["broken"].message
    outcome = asyncio.run(host.call_inquire("fakebank", inquiry()))
    assert outcome.ok and outcome.unwrap().status is InquiryStatus.NOT_FOUND


def test_entry_point_blocked_before_import(installed_dist: Path) -> None:
    host = PluginHost(block=["fakebank", "broken"])
    assert host.load_entry_points() == []
    assert "fakebank_plugin" not in sys.modules
    states = {s.name: s.state for s in host.list()}
    assert states["fakebank"] == states["broken"] == "blocked"


# -- calls: one plugin at a time, failures typed ---------------------------------------------


async def test_calls_target_one_plugin(host: PluginHost) -> None:
    a, b = Bank(), Raising()
    host.register(a)
    host.register(b)
    ok = await host.call_inquire("bank-a", inquiry())
    assert ok.ok and ok.value is not None and ok.value.request_id == "req-1"
    bad = await host.call_inquire("bank-raises", inquiry())
    assert bad.failure is not None and bad.failure.kind == "raised"
    assert "RuntimeError: agency exploded" in bad.failure.detail and bad.failure.retryable
    rejected = await host.call_control("bank-raises", control())
    assert rejected.failure is not None and rejected.failure.kind == "raised" and not rejected.failure.retryable
    assert host.stats("bank-a").ok == 1 and host.stats("bank-raises").failures == {"raised": 2}


async def test_timeout_cancels_slow_plugin_quickly(host: PluginHost) -> None:
    host.register(Hanging())
    started = time.perf_counter()
    outcome = await host.call_inquire("bank-hangs", inquiry(), timeout_s=0.2)
    assert time.perf_counter() - started < 1.0
    assert outcome.failure is not None and outcome.failure.kind == "timeout"
    assert outcome.elapsed_ms >= 150
    health = await host.call_health("bank-hangs", timeout_s=0.1)
    assert health.failure is not None and health.failure.kind == "timeout"
    (status,) = host.list()
    assert status.health is not None and status.health.status is HealthStatus.DOWN


async def test_garbage_answers_are_invalid_and_name_the_field(host: PluginHost) -> None:
    host.register(Garbage())
    inq = await host.call_inquire("bank-garbage", inquiry())
    assert inq.failure is not None and inq.failure.kind == "invalid"
    assert "InquiryResult.assets[0].asset_id" in inq.failure.detail
    ctl = await host.call_control("bank-garbage", control())
    assert ctl.failure is not None and ctl.failure.kind == "invalid"
    assert "ControlResult.request_id" in ctl.failure.detail
    health = await host.call_health("bank-garbage")
    assert health.failure is not None and health.failure.kind == "invalid"


async def test_unknown_plugin_and_undeclared_capability(host: PluginHost) -> None:
    host.register(Bank())
    missing = await host.call_inquire("nope", inquiry())
    assert missing.failure is not None and missing.failure.kind == "unavailable"
    undeclared = await host.call_inquire("bank-a", inquiry(capability="land.inquiry"))
    assert undeclared.failure is not None and undeclared.failure.kind == "unavailable"
    assert not undeclared.failure.retryable


async def test_bad_plugins_do_not_hurt_good_ones(host: PluginHost) -> None:
    for plugin in (Bank(), Raising(), Hanging(), Garbage()):
        host.register(plugin)
    names = ["bank-a", "bank-raises", "bank-hangs", "bank-garbage"] * 5
    started = time.perf_counter()
    outcomes = await asyncio.gather(
        *(host.call_inquire(n, inquiry(f"r{i}"), timeout_s=0.3) for i, n in enumerate(names))
    )
    assert time.perf_counter() - started < 2.0
    kinds = {(o.plugin, o.failure.kind if o.failure else "ok") for o in outcomes}
    expected = {("bank-a", "ok"), ("bank-raises", "raised"), ("bank-hangs", "timeout"), ("bank-garbage", "invalid")}
    assert kinds == expected
    health = await host.check_health(timeout_s=0.2)
    assert health["bank-a"].ok and not health["bank-hangs"].ok


async def test_events_are_isolated_per_plugin(host: PluginHost) -> None:
    good, bad, slow = Bank(), Raising(), Hanging()
    for plugin in (good, bad, slow):
        host.register(plugin)
    case = CaseFiled(case_number="（2024）豫1402执123号", court_code="豫1402", filed_at_ms=1, respondents=(SUBJECT,))
    started = time.perf_counter()
    outcomes = {o.plugin: o for o in await host.case_filed(case, timeout_s=0.3)}
    assert time.perf_counter() - started < 1.5  # the blocking handler ran in a thread
    assert good.events == [case]
    assert outcomes["bank-a"].ok
    assert outcomes["bank-raises"].failure is not None and outcomes["bank-raises"].failure.kind == "raised"
    assert outcomes["bank-hangs"].failure is not None and outcomes["bank-hangs"].failure.kind == "timeout"


async def test_notify_only_reaches_notify_plugins_and_measure_expiring_only_its_plugin(host: PluginHost) -> None:
    sent: list[Notification] = []
    expiring: list[MeasureExpiring] = []

    class Sms:
        @hookimpl
        def courthub_plugin_info(self) -> PluginInfo:
            return PluginInfo("sms-12368", "1.0", PLUGIN_API_VERSION, AgencyKind.OTHER, ("sms.notify",))

        @hookimpl
        async def courthub_notify(self, notification: Notification) -> None:
            sent.append(notification)

    class Expiring(Bank):
        @hookimpl
        def courthub_notify(self, notification: Notification) -> None:
            raise AssertionError("not a notify plugin")

        @hookimpl
        async def courthub_measure_expiring(self, measure: MeasureExpiring) -> None:
            expiring.append(measure)

    host.register(Sms())
    host.register(Expiring())
    note = Notification("n-1", (Recipient("张三", "13800000000"),), "您的案件已立案")
    outcomes = await host.notify(note)
    assert [o.plugin for o in outcomes] == ["sms-12368"] and sent == [note]
    measure = MeasureExpiring("m1", "（2024）豫1402执123号", "豫1402", "bank-a", ControlAction.FREEZE, "acct", 5, 30)
    assert (await host.measure_expiring(measure)).ok and expiring == [measure]
    other = MeasureExpiring("m2", "（2024）豫1402执123号", "豫1402", "sms-12368", ControlAction.FREEZE, "acct", 5, 30)
    failed = await host.measure_expiring(other)
    assert failed.failure is not None and failed.failure.kind == "unavailable"
