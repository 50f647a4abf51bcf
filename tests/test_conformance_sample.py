"""The conformance kit, in process, against the sample plugin in ``examples/courthub-sample-agency``.

The example's own test module (what an integrator writes) is loaded and its fixtures and
``TestSampleAgency`` class are collected here, with the kit's fixtures imported directly so the
run does not depend on the ``pytest11`` entry point being installed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "courthub-sample-agency"
if str(EXAMPLE / "src") not in sys.path:
    sys.path.insert(0, str(EXAMPLE / "src"))

_spec = importlib.util.spec_from_file_location(
    "courthub_sample_agency_conformance", EXAMPLE / "tests" / "test_conformance.py"
)
assert _spec is not None and _spec.loader is not None
_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_example)

from hub.plugins.conformance import courthub_host, courthub_plugin_name  # noqa: E402, F401

courthub_agency = _example.courthub_agency
courthub_plugin = _example.courthub_plugin
courthub_plugin_config = _example.courthub_plugin_config
TestSampleAgency = _example.TestSampleAgency
