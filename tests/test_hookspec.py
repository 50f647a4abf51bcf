"""The hook API contract: names, docstrings, documentation (datasette-style), and the models.

Like datasette's ``test_plugin_hooks_are_documented``: every hook specification must have a real
docstring and its own section in ``docs/plugins.md`` with a minimal example, and the docs must not
describe hooks that do not exist.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import FunctionType
from typing import Any

import pytest

from hub.errors import InvalidInput
from hub.plugins import (
    PLUGIN_API_VERSION,
    AgencyKind,
    ControlAction,
    ControlRequest,
    ControlResult,
    ControlStatus,
    CourtInfo,
    HealthResult,
    InquiryRequest,
    InquiryResult,
    InvalidModel,
    PluginInfo,
    Subject,
    hookimpl,
    hookspec,
)
from hub.plugins.models import coerce

spec_module = importlib.import_module("hub.plugins.hookspec")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _hooks() -> dict[str, FunctionType]:
    return {
        name: fn
        for name, fn in vars(spec_module).items()
        if isinstance(fn, FunctionType) and hasattr(fn, "courthub_spec")
    }


HOOKS = _hooks()


def _spec_opts(fn: FunctionType) -> dict[str, Any]:
    opts: dict[str, Any] = fn.__dict__["courthub_spec"]
    return opts


def _doc_sections() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    parts = re.split(r"^### (\S+)\s*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_markers_and_version() -> None:
    assert hookspec.project_name == hookimpl.project_name == "courthub"
    assert re.fullmatch(r"\d+\.\d+", PLUGIN_API_VERSION)
    assert len(HOOKS) >= 8


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_names_start_with_courthub(name: str) -> None:
    assert name.startswith("courthub_")


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_docstring_explains_call_arguments_and_return(name: str) -> None:
    fn = HOOKS[name]
    doc = inspect.getdoc(fn) or ""
    assert len(doc) > 200, f"{name}: the docstring must say when it is called, its arguments and return"
    assert re.search(r"\bcalled\b", doc, re.IGNORECASE), f"{name}: say when the hook is called"
    assert ":return:" in doc, f"{name}: say what the return value does"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{name}: document argument {param!r}"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_documented_with_an_example(name: str) -> None:
    sections = _doc_sections()
    assert name in sections, f"docs/plugins.md has no '### {name}' section"
    body = sections[name]
    assert "@hookimpl" in body and f"def {name}(" in body, f"docs/plugins.md: {name} needs a minimal example"


def test_docs_describe_no_unknown_hooks() -> None:
    documented = {n for n in _doc_sections() if n.startswith("courthub_")}
    assert documented == set(HOOKS)


def test_hook_groups_cover_every_hook() -> None:
    assert set(spec_module.REQUEST_HOOKS) | set(spec_module.EVENT_HOOKS) == set(HOOKS)
    assert not set(spec_module.REQUEST_HOOKS) & set(spec_module.EVENT_HOOKS)
    for name in spec_module.REQUEST_HOOKS:
        assert _spec_opts(HOOKS[name])["firstresult"], f"{name} answers for one plugin: firstresult"
    for name in spec_module.EVENT_HOOKS:
        assert not _spec_opts(HOOKS[name])["firstresult"]
    for name in HOOKS:
        assert inspect.iscoroutinefunction(HOOKS[name]) == (name in spec_module.ASYNC_HOOKS), name
    for hook in spec_module.OPERATION_HOOKS.values():
        assert hook in HOOKS


# -- models ----------------------------------------------------------------------------------

COURT = CourtInfo(court_code="豫1402", court_name="梁园区人民法院", judge_name="王法官", officer_ids=("a", "b"))
SUBJECT = Subject(name="张三", id_no="410102199001011234")


def _control(**kw: Any) -> ControlRequest:
    base: dict[str, Any] = {
        "request_id": "c-1",
        "capability": "bank.control",
        "action": "freeze",
        "case_number": "(2024)豫1402执123号",
        "court": COURT,
        "subject": SUBJECT,
        "asset_id": "6222",
        "amount_fen": 100,
        "term_days": 365,
    }
    return ControlRequest(**{**base, **kw})


def test_models_round_trip_and_canonicalise() -> None:
    request = _control()
    assert request.case_number == "（2024）豫1402执123号"  # canonical full-width form
    assert ControlRequest.from_dict(request.to_dict()) == request
    inquiry = InquiryRequest("i-1", "bank.inquiry", "（2024）豫1402执1号", COURT, SUBJECT, {"from": "2024-01-01"})
    assert InquiryRequest.from_dict(inquiry.to_dict()) == inquiry
    result = ControlResult("c-1", ControlAction.FREEZE, ControlStatus.PARTIAL, "M1", 100, 40, reason="余额不足")
    assert ControlResult.from_dict(result.to_dict()) == result
    info = PluginInfo("bank-a", "1.0", PLUGIN_API_VERSION, AgencyKind.BANK, ("bank.inquiry",), "豫14")
    assert PluginInfo.from_dict(info.to_dict()) == info


def test_bank_control_codes() -> None:
    codes = {a.bank_code for a in ControlAction if a.bank_code}
    assert codes == {"01", "02", "03", "04", "05", "06", "08"}
    assert ControlAction.from_bank_code("03") is ControlAction.WAITING
    assert ControlAction.SEAL.bank_code is None
    assert ControlAction.BORDER_CONTROL.needs_approval and not ControlAction.FREEZE.needs_approval
    with pytest.raises(InvalidInput):
        ControlAction.from_bank_code("07")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"term_days": None}, "ControlRequest.term_days"),
        ({"term_days": 5000}, "ControlRequest.term_days"),
        ({"amount_fen": 0}, "ControlRequest.amount_fen"),
        ({"action": "renew"}, "ControlRequest.measure_id"),
        ({"action": "border_control"}, "ControlRequest.approval"),
        ({"case_number": "（2024）豫1402民123号"}, "ControlRequest.case_number"),
        ({"request_id": "has space"}, "ControlRequest.request_id"),
    ],
)
def test_control_request_validation_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidModel) as err:
        _control(**changes)
    assert err.value.field == field


def _answered(*assets: Any) -> dict[str, Any]:
    return {"request_id": "r", "status": "answered", "assets": list(assets)}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (None, "InquiryResult"),
        ({"request_id": "r", "status": "maybe"}, "InquiryResult.status"),
        (_answered({"kind": "deposit"}), "InquiryResult.assets[0].asset_id"),
        (_answered({"kind": "d", "asset_id": "x", "attributes": []}), "InquiryResult.assets[0].attributes"),
        (
            _answered({"kind": "d", "asset_id": "x", "attributes": {"a": float("nan")}}),
            "InquiryResult.assets[0].attributes.a",
        ),
        ({**_answered({"kind": "d", "asset_id": "x"}), "status": "not_found"}, "InquiryResult.assets"),
        ({"request_id": "r", "status": "rejected"}, "InquiryResult.message"),
    ],
)
def test_garbage_results_name_the_field(data: Any, field: str) -> None:
    with pytest.raises(InvalidModel) as err:
        coerce(data, InquiryResult)
    assert err.value.field == field
    assert isinstance(err.value, InvalidInput)


def test_coerce_revalidates_instances_mutated_after_construction() -> None:
    result = ControlResult("c-1", ControlAction.FREEZE, ControlStatus.DONE)
    object.__setattr__(result, "controlled_amount_fen", "lots")
    with pytest.raises(InvalidModel, match=r"ControlResult\.controlled_amount_fen"):
        coerce(result, ControlResult)
    with pytest.raises(InvalidModel, match="expected HealthResult or a dict"):
        coerce(42, HealthResult)


def test_plugin_info_validation() -> None:
    with pytest.raises(InvalidModel, match=r"PluginInfo.capabilities\[1\]: duplicate"):
        PluginInfo("x", "1", "1.0", AgencyKind.BANK, ("bank.inquiry", "bank.inquiry"))
    with pytest.raises(InvalidModel, match=r"PluginInfo\.scope"):
        PluginInfo("x", "1", "1.0", AgencyKind.BANK, ("bank.inquiry",), scope="Henan")
    with pytest.raises(InvalidModel, match=r"PluginInfo\.name"):
        PluginInfo("Bank A", "1", "1.0", AgencyKind.BANK, ("bank.inquiry",))
