"""Conformance kit for agency plugins: pytest fixtures and a reusable test class.

An agency integrator proves that a plugin follows the hook contract by subclassing
:class:`PluginConformance` in the plugin's own test suite and pointing the fixtures at the plugin
and at a sandbox of the agency (a simulator)::

    import pytest
    from hub.plugins import Subject
    from hub.plugins.conformance import PluginConformance

    @pytest.fixture
    def courthub_agency():              # start the agency simulator
        with MySimulator() as sim:
            yield sim

    @pytest.fixture
    def courthub_plugin():              # a fresh plugin object
        return MyBankPlugin()

    @pytest.fixture
    def courthub_plugin_config(courthub_agency):
        return {"base_url": courthub_agency.url}

    class TestMyBank(PluginConformance):
        known_subject = Subject("张三", "410102199001011234")
        invalid_configs = [{}, {"base_url": 42}]
        unreachable_config = {"base_url": "http://127.0.0.1:9"}

        def control_requests(self, agency, make_id):
            return [self.control(make_id(), "freeze", asset_id="6222…", amount_fen=100, term_days=30)]

        def agency_state(self, agency):
            return agency.snapshot()

The fixtures are provided by this module as a pytest plugin (entry point ``pytest11: courthub``,
so installing court-hub makes them available); override any of them in the plugin's
``conftest.py`` or test module. The tests are synchronous and run each body in one fresh event
loop, so they need no asyncio plugin; a sandbox should run in a thread or a subprocess.

What the class checks (Airbyte-style: the same contract for every connector):

* plugin info is valid, stable, and its API major version is this hub's;
* capabilities are well-formed ``<domain>.<operation>`` with a known operation, and the hook
  serving each is implemented (``async def`` where required — the host refuses otherwise);
* ``courthub_configure`` accepts the sandbox configuration and rejects each invalid one cleanly,
  with :class:`~hub.plugins.models.PluginConfigError` and a message;
* ``courthub_inquire`` answers a known subject with assets, an unknown one with ``not_found`` or
  no assets, and echoes the request id;
* the host's timeout ends a slow call cleanly and the plugin keeps working afterwards;
* failures are typed: with an unreachable agency the plugin raises a retryable
  :class:`~hub.plugins.models.PluginError` (e.g. ``AgencyUnavailable``), not a bare exception,
  and health is not ``up``;
* control requests are idempotent: the same request id sent again — one after the other and
  concurrently — leaves the agency's state as after the first and gets the same outcome;
* health answers ``up`` against the sandbox within its timeout;
* event hooks, where implemented, accept their events without failing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import pytest

from hub.errors import ConfigError
from hub.plugins.hookspec import OPERATION_HOOKS, PLUGIN_API_VERSION, hook_for_capability
from hub.plugins.host import PluginHost
from hub.plugins.models import (
    CaseFiled,
    ControlAction,
    ControlRequest,
    ControlResult,
    CourtInfo,
    HealthStatus,
    InquiryRequest,
    InquiryStatus,
    MeasureExpiring,
    Notification,
    PluginError,
    PluginInfo,
    Recipient,
    Subject,
    coerce,
)

__all__ = [
    "PluginConformance",
    "courthub_agency",
    "courthub_host",
    "courthub_plugin",
    "courthub_plugin_config",
    "courthub_plugin_name",
]

T = TypeVar("T")


# -- fixtures (override in the plugin's conftest.py or test module) --------------------------


@pytest.fixture
def courthub_agency() -> Any:
    """The agency sandbox (simulator) the plugin talks to. Override to start yours; the value is
    passed to :meth:`PluginConformance.control_requests` and :meth:`PluginConformance.agency_state`.
    Default: None (a plugin without an external agency)."""
    return None


@pytest.fixture
def courthub_plugin() -> object:
    """The plugin under test: a fresh object per test. Must be overridden."""
    pytest.fail(
        "override the 'courthub_plugin' fixture to return the plugin under test (see hub.plugins.conformance)",
        pytrace=False,
    )


@pytest.fixture
def courthub_plugin_config(courthub_agency: Any) -> Mapping[str, Any]:
    """The plugin's configuration section for the sandbox (what ``[plugins.<name>]`` would hold).
    Override to point the plugin at ``courthub_agency``. Default: empty."""
    return {}


@pytest.fixture
def courthub_plugin_name(courthub_plugin: object) -> str:
    """The plugin's declared name (from ``courthub_plugin_info``)."""
    fn = getattr(courthub_plugin, "courthub_plugin_info", None)
    if fn is None:
        pytest.fail("the plugin has no courthub_plugin_info hook", pytrace=False)
    return coerce(fn(), PluginInfo).name


@pytest.fixture
def courthub_host(
    courthub_plugin: object, courthub_plugin_name: str, courthub_plugin_config: Mapping[str, Any]
) -> Iterator[PluginHost]:
    """A :class:`~hub.plugins.host.PluginHost` with only the plugin under test, configured with
    ``courthub_plugin_config``. Fails when the host refuses the plugin or configure rejects it."""
    host = PluginHost({courthub_plugin_name: dict(courthub_plugin_config)})
    host.register(courthub_plugin, source="conformance")
    (status,) = [s for s in host.list() if s.name == courthub_plugin_name]
    if status.state != "active":
        pytest.fail(f"plugin {courthub_plugin_name!r} is {status.state}: {status.message}", pytrace=False)
    yield host


# -- the reusable test class -----------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _with_check_digit(first17: str) -> str:
    """GB 11643-1999 check digit, so agencies see a valid but unknown resident ID."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


UNKNOWN_ID = _with_check_digit("11010119000101000")


class PluginConformance:
    """Subclass in the plugin's tests (name the subclass ``Test…``); see the module docstring.

    Class attributes describe the sandbox's data; methods return agency-specific requests.
    """

    #: A subject the sandbox agency holds assets for (an inquiry must answer with assets).
    known_subject: ClassVar[Subject | None] = None
    #: A subject the sandbox does not know (answer: ``not_found``, or ``answered`` with no assets).
    # A well-formed resident ID (valid check digit) that no agency holds.
    unknown_subject: ClassVar[Subject] = Subject(name="查无此人", id_no=UNKNOWN_ID)
    #: Configurations that ``courthub_configure`` must reject with ``PluginConfigError``.
    invalid_configs: ClassVar[Sequence[Mapping[str, Any]]] = ()
    #: A configuration under which the agency cannot be reached; None skips the error-typing test.
    unreachable_config: ClassVar[Mapping[str, Any] | None] = None
    #: The requesting court put in every request.
    court: ClassVar[CourtInfo] = CourtInfo(
        court_code="豫1402",
        court_name="商丘市梁园区人民法院",
        judge_name="测试法官",
        judge_phone="0370-0000000",
        officer_ids=("豫执0001", "豫执0002"),
        document_name="协助查询存款通知书",
        document_no="（2024）豫1402执1号之一",
    )
    case_number: ClassVar[str] = "（2024）豫1402执1号"
    #: Budget for ordinary calls against the sandbox, in seconds.
    call_timeout_s: ClassVar[float] = 10.0
    #: Timeout used to check that the host ends a slow call cleanly.
    short_timeout_s: ClassVar[float] = 0.05

    # -- hooks for the subclass --------------------------------------------------------------

    def inquiry_params(self, capability: str) -> Mapping[str, Any]:
        """Extra ``params`` for inquiries of ``capability`` (e.g. a date range). Default: none."""
        return {}

    def control_requests(self, agency: Any, make_id: Callable[[], str]) -> Sequence[ControlRequest]:
        """Control requests that succeed against a fresh sandbox, one per action worth checking,
        each with ``request_id=make_id()``. Required when the plugin declares ``*.control``.
        :meth:`control` helps build them."""
        return ()

    def agency_state(self, agency: Any) -> Any:
        """A comparable snapshot of the sandbox's state (measures, balances …). Required for the
        idempotency check when the plugin declares ``*.control``."""
        return None

    def slow_down(self, agency: Any, seconds: float) -> bool:
        """Make the sandbox answer ``seconds`` late; return True if supported. Default: False —
        the timeout test then uses :attr:`short_timeout_s` against the normal sandbox."""
        return False

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def new_request_id() -> str:
        return f"conf-{uuid.uuid4().hex[:20]}"

    def inquiry(self, capability: str, subject: Subject) -> InquiryRequest:
        return InquiryRequest(
            request_id=self.new_request_id(),
            capability=capability,
            case_number=self.case_number,
            court=self.court,
            subject=subject,
            params=dict(self.inquiry_params(capability)),
        )

    def control(self, request_id: str, action: ControlAction | str, capability: str, **fields: Any) -> ControlRequest:
        """Build a control request for the conformance court, case and known subject."""
        subject = fields.pop("subject", None) or self.known_subject
        if subject is None:
            raise AssertionError("set known_subject (or pass subject=) to build control requests")
        return ControlRequest(
            request_id=request_id,
            capability=capability,
            action=ControlAction(action),
            case_number=self.case_number,
            court=self.court,
            subject=subject,
            **fields,
        )

    @staticmethod
    def _info(host: PluginHost, name: str) -> PluginInfo:
        return host.info(name)

    @staticmethod
    def _caps(info: PluginInfo, hook: str) -> list[str]:
        return [c for c in info.capabilities if hook_for_capability(c) == hook]

    # -- info and capabilities ---------------------------------------------------------------

    def test_info_is_valid_and_api_version_matches(self, courthub_plugin: object) -> None:
        raw = courthub_plugin.courthub_plugin_info()  # type: ignore[attr-defined]
        info = coerce(raw, PluginInfo)
        assert info.api_major == int(PLUGIN_API_VERSION.split(".")[0]), (
            f"plugin API {info.api_version} is not compatible with this hub's {PLUGIN_API_VERSION}"
        )
        again = coerce(courthub_plugin.courthub_plugin_info(), PluginInfo)  # type: ignore[attr-defined]
        assert again == info, "courthub_plugin_info must be stable"

    def test_capabilities_are_well_formed(self, courthub_host: PluginHost, courthub_plugin_name: str) -> None:
        info = self._info(courthub_host, courthub_plugin_name)
        for cap in info.capabilities:
            _, _, operation = cap.partition(".")
            assert operation in OPERATION_HOOKS, (
                f"capability {cap!r}: operation {operation!r} is not one of {sorted(OPERATION_HOOKS)}; "
                "put variants in request params"
            )
            hook = OPERATION_HOOKS[operation]
            impls = courthub_host.hook(courthub_plugin_name, hook).get_hookimpls()
            assert impls, f"capability {cap!r} needs {hook}"
        assert courthub_host.capabilities(), "an active plugin offers at least one capability"

    # -- configuration -----------------------------------------------------------------------

    def test_configure_rejects_invalid_config_cleanly(self, courthub_plugin: object, courthub_plugin_name: str) -> None:
        if not self.invalid_configs:
            pytest.fail("declare invalid_configs: configurations courthub_configure must reject", pytrace=False)
        for config in self.invalid_configs:
            host = PluginHost({courthub_plugin_name: dict(config)})
            host.register(courthub_plugin, source="conformance")
            (status,) = [s for s in host.list() if s.name == courthub_plugin_name]
            assert status.state == "unconfigured", f"configuration {config!r} was accepted"
            assert "PluginConfigError" in status.message or "ConfigError" in status.message, (
                f"configure must raise PluginConfigError for {config!r}; got: {status.message}"
            )
            host.unregister(courthub_plugin_name)
        configure = getattr(courthub_plugin, "courthub_configure", None)
        assert configure is not None
        for config in self.invalid_configs:
            with pytest.raises(ConfigError) as err:
                configure(config=dict(config))
            assert str(err.value).strip(), "the error must say what is wrong"

    # -- inquiry -----------------------------------------------------------------------------

    def test_inquire_known_subject(self, courthub_host: PluginHost, courthub_plugin_name: str) -> None:
        caps = self._caps(self._info(courthub_host, courthub_plugin_name), "courthub_inquire")
        if not caps:
            pytest.skip("the plugin offers no inquiry capability")
        if self.known_subject is None:
            pytest.fail("declare known_subject: a subject the sandbox holds assets for", pytrace=False)
        subject = self.known_subject

        async def body() -> None:
            for cap in caps:
                request = self.inquiry(cap, subject)
                outcome = await courthub_host.call_inquire(courthub_plugin_name, request, timeout_s=self.call_timeout_s)
                result = outcome.unwrap()
                assert result.request_id == request.request_id
                assert result.status is InquiryStatus.ANSWERED, f"{cap}: {result.status} {result.message}"
                assert result.assets, f"{cap}: the known subject must have assets in the sandbox"

        _run(body())

    def test_inquire_unknown_subject_is_clean(self, courthub_host: PluginHost, courthub_plugin_name: str) -> None:
        caps = self._caps(self._info(courthub_host, courthub_plugin_name), "courthub_inquire")
        if not caps:
            pytest.skip("the plugin offers no inquiry capability")

        async def body() -> None:
            for cap in caps:
                request = self.inquiry(cap, self.unknown_subject)
                outcome = await courthub_host.call_inquire(courthub_plugin_name, request, timeout_s=self.call_timeout_s)
                result = outcome.unwrap()
                assert result.status is InquiryStatus.NOT_FOUND or (
                    result.status is InquiryStatus.ANSWERED and not result.assets
                ), f"{cap}: an unknown subject must be not_found or have no assets, got {result.to_dict()}"

        _run(body())

    # -- timeouts and errors -----------------------------------------------------------------

    def test_host_timeout_ends_a_slow_call_cleanly(
        self, courthub_host: PluginHost, courthub_plugin_name: str, courthub_agency: Any
    ) -> None:
        info = self._info(courthub_host, courthub_plugin_name)
        caps = self._caps(info, "courthub_inquire")
        if not caps:
            pytest.skip("the plugin offers no inquiry capability")
        subject = self.known_subject or self.unknown_subject
        slowed = self.slow_down(courthub_agency, 5.0)

        async def body() -> None:
            started = time.perf_counter()
            outcome = await courthub_host.call_inquire(
                courthub_plugin_name, self.inquiry(caps[0], subject), timeout_s=self.short_timeout_s
            )
            took = time.perf_counter() - started
            assert took < self.short_timeout_s + 1.0, f"the call took {took:.2f}s despite the timeout"
            if slowed:
                assert outcome.failure is not None and outcome.failure.kind == "timeout", outcome
            else:
                assert outcome.ok or (outcome.failure is not None and outcome.failure.kind == "timeout"), outcome
            if slowed:
                self.slow_down(courthub_agency, 0.0)
            # The plugin still works after an abandoned call.
            after = await courthub_host.call_inquire(
                courthub_plugin_name, self.inquiry(caps[0], subject), timeout_s=self.call_timeout_s
            )
            after.unwrap()

        _run(body())

    def test_errors_are_typed_when_agency_unreachable(self, courthub_plugin: object, courthub_plugin_name: str) -> None:
        if self.unreachable_config is None:
            pytest.skip("unreachable_config not declared")
        host = PluginHost({courthub_plugin_name: dict(self.unreachable_config)})
        host.register(courthub_plugin, source="conformance")
        assert host.names() == [courthub_plugin_name], host.list()
        info = host.info(courthub_plugin_name)
        subject = self.known_subject or self.unknown_subject

        async def body() -> None:
            for cap in self._caps(info, "courthub_inquire"):
                caller = host.hook(courthub_plugin_name, "courthub_inquire")
                with pytest.raises(PluginError) as err:
                    await asyncio.wait_for(caller(request=self.inquiry(cap, subject)), self.call_timeout_s)
                assert err.value.retryable, f"an unreachable agency is retryable; got {err.value!r}"
            if host.hook(courthub_plugin_name, "courthub_health").get_hookimpls():
                health = await host.call_health(courthub_plugin_name, timeout_s=self.call_timeout_s)
                assert not (health.value is not None and health.value.status is HealthStatus.UP), (
                    "health must not be 'up' when the agency cannot be reached"
                )

        _run(body())

    # -- control idempotency -----------------------------------------------------------------

    def test_control_requests_are_idempotent(
        self, courthub_host: PluginHost, courthub_plugin_name: str, courthub_agency: Any
    ) -> None:
        caps = self._caps(self._info(courthub_host, courthub_plugin_name), "courthub_control")
        if not caps:
            pytest.skip("the plugin offers no control capability")
        counter = itertools.count(1)
        prefix = self.new_request_id()
        requests = list(self.control_requests(courthub_agency, lambda: f"{prefix}-{next(counter)}"))
        if not requests:
            pytest.fail("implement control_requests(): control requests that succeed in the sandbox", pytrace=False)

        async def call(request: ControlRequest) -> ControlResult:
            outcome = await courthub_host.call_control(courthub_plugin_name, request, timeout_s=self.call_timeout_s)
            return outcome.unwrap()

        async def body() -> None:
            for request in requests:
                first = await call(request)
                state = self.agency_state(courthub_agency)
                again = await call(request)
                assert self.agency_state(courthub_agency) == state, (
                    f"{request.action.value} {request.request_id}: repeating the request changed the agency"
                )
                assert (again.status, again.measure_id, again.controlled_amount_fen) == (
                    first.status,
                    first.measure_id,
                    first.controlled_amount_fen,
                ), f"{request.action.value}: the repeated request got a different outcome"
            assert state is not None, "agency_state() must return a snapshot of the sandbox"

        _run(body())

    def test_concurrent_duplicates_take_effect_once(
        self, courthub_host: PluginHost, courthub_plugin_name: str, courthub_agency: Any
    ) -> None:
        caps = self._caps(self._info(courthub_host, courthub_plugin_name), "courthub_control")
        if not caps:
            pytest.skip("the plugin offers no control capability")
        prefix = self.new_request_id()
        counter = itertools.count(1)
        requests = list(self.control_requests(courthub_agency, lambda: f"{prefix}-{next(counter)}"))
        if not requests:
            pytest.fail("implement control_requests(): control requests that succeed in the sandbox", pytrace=False)
        request = requests[0]

        async def body() -> None:
            outcomes = await asyncio.gather(
                *(
                    courthub_host.call_control(courthub_plugin_name, request, timeout_s=self.call_timeout_s)
                    for _ in range(3)
                )
            )
            results = [o.unwrap() for o in outcomes]
            state = self.agency_state(courthub_agency)
            again = (
                await courthub_host.call_control(courthub_plugin_name, request, timeout_s=self.call_timeout_s)
            ).unwrap()
            assert self.agency_state(courthub_agency) == state
            assert len({(r.status, r.measure_id) for r in [*results, again]}) == 1, (
                "concurrent duplicates of one request id must get one outcome"
            )

        _run(body())

    # -- health and events -------------------------------------------------------------------

    def test_health_answers(self, courthub_host: PluginHost, courthub_plugin_name: str) -> None:
        if not courthub_host.hook(courthub_plugin_name, "courthub_health").get_hookimpls():
            pytest.fail("implement courthub_health", pytrace=False)
        outcome = _run(courthub_host.call_health(courthub_plugin_name, timeout_s=self.call_timeout_s))
        health = outcome.unwrap()
        assert health.status is HealthStatus.UP, f"health against the sandbox: {health.to_dict()}"

    def test_event_hooks_accept_events(self, courthub_host: PluginHost, courthub_plugin_name: str) -> None:
        subject = self.known_subject or self.unknown_subject
        case = CaseFiled(self.case_number, self.court.court_code, int(time.time() * 1000), (subject,))
        measure = MeasureExpiring(
            "conformance-measure",
            self.case_number,
            self.court.court_code,
            courthub_plugin_name,
            ControlAction.FREEZE,
            "conformance-asset",
            int(time.time() * 1000) + 86_400_000,
            1,
        )
        note = Notification(self.new_request_id(), (Recipient("测试", "13800000000", "judge"),), "conformance")

        async def body() -> None:
            outcomes = [*await courthub_host.case_filed(case, timeout_s=self.call_timeout_s)]
            if courthub_host.hook(courthub_plugin_name, "courthub_measure_expiring").get_hookimpls():
                outcomes.append(await courthub_host.measure_expiring(measure, timeout_s=self.call_timeout_s))
            outcomes += await courthub_host.notify(note, timeout_s=self.call_timeout_s)
            for outcome in outcomes:
                assert outcome.ok, outcome.failure

        _run(body())
