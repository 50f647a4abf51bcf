"""Hostile data from inside the node: a plugin that returns malicious answers, and attachment
names built to escape into the file system.

A plugin is third-party code talking to an agency the court does not control; whatever it returns
is validated by the host (hub/plugins/models.py) before anything stores or forwards it. Each
malicious answer below is refused as ``invalid`` with a detail that names the field, the failure
names the plugin, and a well-behaved plugin on the same host is unaffected.

Attachment names are labels carried between courts, never paths: ``make_attachment`` refuses
separators, traversal, NUL and control characters, so no name can reach outside a directory it
is written into.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from test_plugin_host import Bank, inquiry

from hub.errors import InvalidInput
from hub.plugins import InquiryRequest, InquiryStatus, hookimpl
from hub.plugins.host import PluginHost
from hub.workflows.engine import check_attachment, make_attachment


def _asset(**overrides: Any) -> dict[str, Any]:
    asset: dict[str, Any] = {"kind": "deposit", "asset_id": "6222000000000001", "institution": "工商银行商丘分行"}
    asset.update(overrides)
    return asset


def _deep(depth: int) -> Any:
    value: Any = "底"
    for _ in range(depth):
        value = {"d": value}
    return value


# (case id, the answer's fields besides request_id, the field the refusal must name)
MALICIOUS: list[tuple[str, dict[str, Any], str]] = [
    ("oversized-message", {"status": "rejected", "message": "拒" * 1_000_000}, "InquiryResult.message"),
    ("oversized-asset-id", {"status": "answered", "assets": [_asset(asset_id="6" * 100_000)]}, "asset_id"),
    (
        "oversized-attributes",
        {"status": "answered", "assets": [_asset(attributes={"x": "y" * (2 << 20)})]},
        "attributes",
    ),
    ("wrong-type-status", {"status": 1}, "InquiryResult.status"),
    ("wrong-type-assets", {"status": "answered", "assets": "all of them"}, "InquiryResult.assets"),
    ("wrong-type-amount", {"status": "answered", "assets": [_asset(amount_fen="1e99")]}, "amount_fen"),
    ("bool-as-amount", {"status": "answered", "assets": [_asset(amount_fen=True)]}, "amount_fen"),
    ("negative-amount", {"status": "answered", "assets": [_asset(amount_fen=-1)]}, "amount_fen"),
    ("huge-amount", {"status": "answered", "assets": [_asset(amount_fen=10**30)]}, "amount_fen"),
    ("nan-attribute", {"status": "answered", "assets": [_asset(attributes={"rate": float("nan")})]}, "attributes"),
    ("huge-nesting", {"status": "answered", "assets": [_asset(attributes=_deep(50_000))]}, "attributes"),
    ("object-attribute", {"status": "answered", "assets": [_asset(attributes={"f": open})]}, "attributes"),
    ("non-string-key", {"status": "answered", "assets": [_asset(attributes={1: "x"})]}, "attributes"),
    ("kind-injection", {"status": "answered", "assets": [_asset(kind="deposit'; DROP TABLE jobs; --")]}, "kind"),
    ("status-unknown", {"status": "answered_and_frozen"}, "InquiryResult.status"),
    ("assets-when-not-found", {"status": "not_found", "assets": [_asset()]}, "InquiryResult.assets"),
    ("other-request-id", {"request_id": "req-someone-else", "status": "not_found"}, "InquiryResult.request_id"),
    ("request-id-injection", {"request_id": "req-1\n--", "status": "not_found"}, "InquiryResult.request_id"),
    ("blank-asset-id", {"status": "answered", "assets": [_asset(asset_id=" \t ")]}, "asset_id"),
    ("nul-in-asset-id", {"status": "answered", "assets": [_asset(asset_id="61\x0022")]}, "asset_id"),
    ("terminal-escape", {"status": "answered", "assets": [_asset(institution="\x1b[31mred")]}, "institution"),
    ("header-injection", {"status": "answered", "assets": [_asset(holder_name="a\r\nSet-Cookie: x")]}, "holder_name"),
    ("nul-in-message", {"status": "rejected", "message": "x\x00y"}, "InquiryResult.message"),
]


class Malicious(Bank):
    """Returns whatever ``answer`` says, as a plain dict (what an untyped plugin would do)."""

    name = "bank-evil"

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__()
        self.answer = answer

    @hookimpl
    async def courthub_inquire(self, request: InquiryRequest) -> Any:
        return {"request_id": request.request_id, **self.answer}


@pytest.mark.parametrize(("answer", "field"), [pytest.param(a, f, id=i) for i, a, f in MALICIOUS])
async def test_malicious_plugin_answers_are_refused_naming_plugin_and_field(answer: dict[str, Any], field: str) -> None:
    host = PluginHost(default_timeout_s=5)
    host.register(Malicious(answer))
    host.register(Bank())
    outcome = await host.call_inquire("bank-evil", inquiry())
    assert outcome.value is None and outcome.failure is not None
    failure = outcome.failure
    assert failure.kind == "invalid", failure
    assert failure.plugin == "bank-evil" and "bank-evil" in str(failure)
    assert field in failure.detail, failure.detail
    assert len(failure.detail) < 1000  # the refusal does not echo a megabyte back into logs
    # The plugin next to it is not affected.
    good = await host.call_inquire("bank-a", inquiry())
    assert good.ok and good.unwrap().status is InquiryStatus.NOT_FOUND


async def test_injected_fields_do_not_travel_on() -> None:
    """Fields the model does not know are dropped, never carried into stores or envelopes."""
    host = PluginHost(default_timeout_s=5)
    answer = {
        "status": "answered",
        "assets": [_asset(__class__="x", sql="'; DROP TABLE jobs; --", attributes={"note": "ok"})],
        "court_code": "京",  # an attempt to speak for another court
        "approved": True,
    }
    host.register(Malicious(answer))
    outcome = await host.call_inquire("bank-evil", inquiry())
    result = outcome.unwrap().to_dict()
    assert set(result) <= {"request_id", "status", "assets", "answered_at_ms", "agency_ref", "message"}
    assert set(result["assets"][0]) <= {
        "kind",
        "asset_id",
        "institution",
        "holder_name",
        "amount_fen",
        "currency",
        "attributes",
    }
    assert result["assets"][0]["attributes"] == {"note": "ok"}


# --------------------------------------------------------------------------- attachment names


TRAVERSALS = [
    "../../etc/passwd",
    "..\\..\\windows\\system32\\config\\sam",
    "/etc/passwd",
    "C:\\Windows\\win.ini",
    "C:/Windows/win.ini",
    "\\\\server\\share\\x",
    "a/../../b",
    "..",
    ".",
    "evil\x00.pdf",
    "line\nbreak.txt",
    "tab\there",
    "\x1b[31mred.txt",
    "",
    "x" * 121,
    "....//....//etc/passwd",
    "..%2f..%2fetc%2fpasswd/",
    "foo/..",
]


@pytest.mark.parametrize("name", TRAVERSALS, ids=lambda n: repr(n)[:30])
def test_attachment_names_that_are_paths_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        make_attachment(name, b"content")
    assert "attachment name" in refused.value.message
    assert "\x00" not in refused.value.message
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "name", ["判决书.pdf", "..hidden-looking.txt", "a..b.txt", "报告 (1).docx", "'; DROP TABLE attachments; --.txt"]
)
def test_attachment_names_that_are_labels_stay_inside(name: str, tmp_path: Path) -> None:
    """What is accepted, written into a directory by its name, lands inside that directory."""
    att = make_attachment(name, b"content")
    target = (tmp_path / att.name).resolve()
    assert target.parent == tmp_path.resolve()
    target.write_bytes(att.content)
    assert os.listdir(tmp_path) == [att.name]


def test_attachment_from_a_peer_is_checked_too() -> None:
    """A peer can hand-craft the protobuf (bypassing make_attachment): the receiver checks again."""
    att = make_attachment("ok.txt", b"content")
    att.name = "../../etc/cron.d/evil"
    with pytest.raises(InvalidInput):
        check_attachment(att)
    att.name = "ok.txt"
    att.content = b"swapped after hashing"
    with pytest.raises(InvalidInput) as refused:
        check_attachment(att)
    assert "SHA-256" in refused.value.message
