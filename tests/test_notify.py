"""Notifications for workflow events: the courthub_notify hook through the plugin host, and the
built-in log notifier (a log line and an audit entry per notification). In-process tree; the SMS
gateway is a real plugin registered with the node's real plugin host.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from inproc import InProcTree, inproc_tree
from test_wf_directives import routes_known

from hub.codes import CourtCode
from hub.localtree import NodeSpec
from hub.notify import notifier, recorded
from hub.plugins import hookimpl
from hub.plugins.hookspec import PLUGIN_API_VERSION
from hub.plugins.models import AgencyKind, Notification, PluginInfo
from hub.workflows import directive_flow as df
from hub.workflows import duty, requests

SPECS = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1402", "商丘市梁园区人民法院", "豫14"),
]


class Sms:
    """A 12368 SMS gateway plugin that fails its first ``fail_first`` sends."""

    def __init__(self, fail_first: int = 0) -> None:
        self.sent: list[Notification] = []
        self.fail_first = fail_first
        self.calls = 0

    @hookimpl
    def courthub_plugin_info(self) -> PluginInfo:
        return PluginInfo("sms-12368", "1.0", PLUGIN_API_VERSION, AgencyKind.OTHER, ("sms.notify",))

    @hookimpl
    async def courthub_notify(self, notification: Notification) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise ConnectionError("短信网关不可用")
        self.sent.append(notification)


async def _records(tree: InProcTree, court: str) -> list[dict[str, Any]]:
    return await tree[court].store.read(lambda c: recorded(c, 100))


async def test_events_reach_the_duty_officer_and_the_petitioner_through_the_hook_and_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.notify")
    async with inproc_tree(tmp_path, SPECS) as tree:
        await routes_known(tree)
        county = tree["豫1402"]
        sms = Sms()
        county.agency.host.register(sms)
        await duty.set_duty(county, duty.court_date(tree.clock.now_ms()), "王值班", "13800000001")
        item = (await df.issue(tree["豫"], CourtCode.parse("豫1402"), "紧急执行指令", "立即处置", level="urgent"))["id"]
        await tree.settle(lambda: len(sms.sent) == 1)
        note = sms.sent[0]
        assert [(r.name, r.phone, r.role) for r in note.recipients] == [("王值班", "13800000001", "other")]
        assert "收到指令" in note.text and "紧急执行指令" in note.text and "来自豫" in note.text
        rec = (await _records(tree, "豫1402"))[0]
        assert rec["event"] == "directive.create" and rec["item_id"] == item
        assert rec["channels"] == ["log", "sms-12368"] and rec["failed"] == {}
        assert rec["recipients"] == [{"name": "王值班", "phone": "138****0001", "role": "other"}]
        assert any("通知 notification" in m and "紧急执行指令" in m for m in caplog.messages)

        # Steps this court takes itself are not echoed to it; the issuer hears of the answer (log
        # only there: 豫 has no SMS plugin and no duty officer on file).
        await df.feedback(county, item, "已处置完毕")

        async def told() -> bool:
            return any(r["event"] == "directive.answer" for r in await _records(tree, "豫"))

        await tree.settle(told)
        answer = next(r for r in await _records(tree, "豫") if r["event"] == "directive.answer")
        assert answer["recipients"] == [] and answer["channels"] == ["log"] and "已处置完毕" in answer["text"]
        assert len(sms.sent) == 1

        # A petition handed down: the court is told; its reply goes to the petitioner too (party SMS).
        pet = (
            await requests.send_petition(
                tree["豫14"], "豫1402", "信访人反映执行不力", "反映案件未执结", "赵某", phone="13900000003"
            )
        )["id"]
        await tree.settle(lambda: len(sms.sent) == 2)
        await requests.act(county, "petition", pet, "reply", {"text": "执行款已发放"})
        await tree.settle(lambda: len(sms.sent) == 3)
        party = sms.sent[2]
        assert [(r.name, r.phone, r.role) for r in party.recipients] == [("赵某", "13900000003", "party")]
        assert party.text.startswith("您反映的信访事项「信访人反映执行不力」已由商丘市梁园区人民法院办理答复")
        # Each notification once: the cursor has moved past them all.
        assert await notifier(county).dispatch() == []
        assert len({n.notification_id for n in sms.sent}) == 3


async def test_a_failed_send_is_offered_again_with_the_same_id(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, SPECS[:2]) as tree:
        city = tree["豫14"]
        sms = Sms(fail_first=1)
        city.agency.host.register(sms)
        await duty.sign_in(city, "李值班", "13800000009")
        await df.issue(tree["豫"], CourtCode.parse("豫14"), "指令", "执行")

        async def failed_once() -> bool:
            recs = await _records(tree, "豫14")
            return bool(recs and recs[0]["failed"])

        await tree.settle(failed_once)
        first = (await _records(tree, "豫14"))[0]
        assert "短信网关不可用" in first["failed"]["sms-12368"] and first["channels"] == ["log"]
        assert sms.sent == []
        tree.clock.advance(seconds=59)
        await notifier(city).dispatch()
        assert sms.calls == 1  # not yet: the retry waits a minute of the node's clock
        tree.clock.advance(seconds=1)
        await tree.settle(lambda: len(sms.sent) == 1)
        assert sms.sent[0].notification_id == first["id"]
        retried = (await _records(tree, "豫14"))[0]
        assert retried["action"] == "notification.retried" and retried["attempt"] == 2
        assert retried["failed"] == {} and retried["channels"] == ["log", "sms-12368"]
        tree.clock.advance(seconds=600)
        await notifier(city).dispatch()
        assert len(sms.sent) == 1  # delivered once: not offered again
