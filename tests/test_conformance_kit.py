"""The conformance kit catches broken plugins, and the example plugin's own suite passes.

Like pytest's ``pytester``: each case writes a throwaway test module that subclasses
``PluginConformance`` for a deliberately broken variant of the sample plugin, runs pytest on it in
a subprocess, and checks which conformance tests fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "courthub-sample-agency"

pytestmark = pytest.mark.timeout(120)

_HEADER = textwrap.dedent(
    """
    import time
    from typing import Any, ClassVar
    import pytest
    from courthub_sample_agency.plugin import SampleAgencyPlugin, SampleBank, serve
    from hub.plugins import PluginConfigError, Subject, hookimpl
    from hub.plugins.conformance import PluginConformance, courthub_host, courthub_plugin_name

    ZHANG = Subject(name="张三", id_no="410102199001011234")

    @pytest.fixture
    def courthub_agency():
        bank = SampleBank()
        bank.open_account(ZHANG.id_no, ZHANG.name, "6222000000000001", 1_000_000)
        with serve(bank, "kit"):
            yield bank

    @pytest.fixture
    def courthub_plugin_config(courthub_agency):
        return {"endpoint": "memory://kit"}

    class Base(PluginConformance):
        known_subject = ZHANG
        invalid_configs: ClassVar = ({}, {"endpoint": 42})
        unreachable_config: ClassVar = {"endpoint": "memory://nowhere"}

        def control_requests(self, agency, make_id):
            return [self.control(make_id(), "freeze", "bank.control", asset_id="6222000000000001",
                                 amount_fen=1000, term_days=30)]

        def agency_state(self, agency):
            return agency.snapshot()

        def slow_down(self, agency, seconds):
            agency.delay_s = seconds
            return True
    """
)

# name → (plugin class body, the conformance tests that must fail)
BROKEN = {
    "not_idempotent": (
        """
        class Plugin(SampleAgencyPlugin):
            @hookimpl
            async def courthub_control(self, request):
                # Forgets to pass the request id on: every delivery is a new freeze.
                self._bank().answers.pop(request.request_id, None)
                return await SampleAgencyPlugin.courthub_control(self, request)
        """,
        {"test_control_requests_are_idempotent", "test_concurrent_duplicates_take_effect_once"},
    ),
    "untyped_errors": (
        """
        class Plugin(SampleAgencyPlugin):
            @hookimpl
            async def courthub_inquire(self, request):
                if self.endpoint == "memory://nowhere":
                    raise ConnectionError("refused")  # a bare exception, not AgencyUnavailable
                return await SampleAgencyPlugin.courthub_inquire(self, request)
        """,
        {"test_errors_are_typed_when_agency_unreachable"},
    ),
    "lax_configure": (
        """
        class Plugin(SampleAgencyPlugin):
            @hookimpl
            def courthub_configure(self, config):
                self.endpoint = config.get("endpoint")  # accepts anything
        """,
        {"test_configure_rejects_invalid_config_cleanly"},
    ),
    "blocks_the_loop": (
        """
        class Plugin(SampleAgencyPlugin):
            @hookimpl
            async def courthub_inquire(self, request):
                time.sleep(self._bank().delay_s)  # blocking: the host's timeout cannot end it
                return await SampleAgencyPlugin.courthub_inquire(self, request)
        """,
        {"test_host_timeout_ends_a_slow_call_cleanly"},
    ),
}


def _run_pytest(path: Path, cwd: Path, *extra: str) -> dict[str, str]:
    """Run pytest on ``path``; return test name → outcome (passed / failed / skipped / error)."""
    report = cwd / "report.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE / "src"), str(ROOT)])}
    args = [sys.executable, "-m", "pytest", "-q", str(path), "--rootdir", str(cwd), f"--junitxml={report}"]
    args += ["-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function", *extra]
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=100)
    assert report.exists(), done.stdout + done.stderr
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = (
            "failed"
            if "failure" in kinds
            else "error"
            if "error" in kinds
            else "skipped"
            if "skipped" in kinds
            else "passed"
        )
        outcomes[case.attrib["name"]] = outcome
    return outcomes


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_kit_catches_broken_plugin(tmp_path: Path, variant: str) -> None:
    body, must_fail = BROKEN[variant]
    module = tmp_path / f"test_{variant}.py"
    module.write_text(
        _HEADER
        + textwrap.dedent(body)
        + textwrap.dedent(
            """
            @pytest.fixture
            def courthub_plugin():
                return Plugin()

            class TestBroken(Base):
                pass
            """
        )
    )
    outcomes = _run_pytest(module, tmp_path)
    failed = {name for name, outcome in outcomes.items() if outcome in ("failed", "error")}
    assert failed == must_fail, outcomes
    assert outcomes["test_info_is_valid_and_api_version_matches"] == "passed"


def test_example_plugin_suite_passes(tmp_path: Path) -> None:
    """What the integrator runs: the example's tests, with the kit loaded as a pytest plugin."""
    installed = any(ep.value == "hub.plugins.conformance" for ep in entry_points(group="pytest11"))
    extra = () if installed else ("-p", "hub.plugins.conformance")
    outcomes = _run_pytest(EXAMPLE / "tests" / "test_conformance.py", tmp_path, *extra)
    assert outcomes and set(outcomes.values()) == {"passed"}, outcomes
