"""``court-hub demo``: a small local federation, scenarios across it, and what happened.

Everything is real: node processes on loopback with TLS, embedded nats-servers, SQLite stores,
enrollment by join tokens, agency simulators. After the federation and agency steps (一–九) comes
one scenario of each command-center workflow across branches of the tree (十–十八: duty, directive
feedback, 督办, 执行要情, a cross-city entrusted freeze, a sealed approval, request and petition,
case-node deadlines and the 终本 gate, subtree statistics). The narrative is in the Chinese court
staff use; ``--json`` records every step with its outcome.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.markup import escape

from hub.audit import verify as verify_chain
from hub.cli.output import console, emit_json, table
from hub.clock import SystemClock, iso
from hub.codes import CourtCode
from hub.config import Home
from hub.errors import CourtHubError
from hub.federation.envelope import open_envelope
from hub.federation.interceptors import REASON_KEY
from hub.federation.topology import load_trust
from hub.localtree import DEMO_TREE, LocalTree
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.provision import open_store
from hub.seal import verify as verify_seal
from plugins.agency.approval import ApprovalError
from plugins.agency.sim import SimulatorProcess


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        console.print(text)


def verify_home(path: Path) -> dict[str, Any]:
    """Offline audit-chain check of one node home (what ``court-hub audit verify`` does)."""
    home = Home(path)
    config = home.load()
    store = open_store(home, config)
    try:
        trust = store.read_sync(
            lambda conn: load_trust(conn, CourtCode.parse(config.trust.root or config.node.court), SystemClock())
        )

        def check(raw: bytes) -> None:
            opened = open_envelope(epb.Envelope.FromString(raw))
            verify_seal(
                opened.envelope.seal, opened.envelope.header, trust.evidence_key(opened.origin), kid=str(opened.origin)
            )

        result = store.read_sync(lambda conn: verify_chain(conn, check))
    finally:
        store.close()
    return {"ok": result.ok, "entries": result.entries, "seals": result.seals_checked, "problem": result.problem}


def demo(
    json_out: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the federation running and say how to reach it.")] = False,
    directory: Annotated[Path | None, typer.Option("--dir", help="Where to put the node homes.")] = None,
) -> None:
    """Start a province, two cities and three basic courts as real processes and run a scenario."""
    base = directory or Path(tempfile.mkdtemp(prefix="court-hub-demo-"))
    quiet = json_out
    summary: dict[str, Any] = {"base": str(base), "nodes": [], "steps": []}
    tree = LocalTree(base, DEMO_SPECS)
    sims: list[SimulatorProcess] = []
    started = time.monotonic()
    try:
        _say(quiet, "[bold]一、组网 — 各院执行指挥中心节点接入[/]")
        tree.start_all()
        for spec in DEMO_TREE:
            st = tree.status(spec.court)
            parent = st["parent"]["court"] if st["parent"] else "（根节点 root）"
            summary["nodes"].append(
                {"court": spec.court, "name": spec.name, "parent": parent, "home": str(tree.homes[spec.court])}
            )
        if not quiet:
            table(
                "节点 nodes",
                ["法院代字", "法院", "上级", "监听"],
                [
                    [s.court, s.name, n["parent"], tree.status(s.court)["listen"]]
                    for s, n in zip(DEMO_TREE, summary["nodes"], strict=True)
                ],
            )
        _say(quiet, f"组网完成，用时 {time.monotonic() - started:.1f} 秒（TLS 证书指纹锁定、加入令牌一次有效）\n")

        _say(quiet, "[bold]二、省法院向全省下发指令（辖区广播）[/]")
        eid = tree.send_directive(
            "豫", "豫", "关于开展“雷霆行动”集中执行的指令", "请全省各级法院于本周内集中开展执行攻坚。", subtree=True
        )
        tree.wait_until(lambda: _delivered(tree, "豫", eid) == 5, 30, "全省回执")
        recips = _recipients(tree, "豫", eid)
        if not quiet:
            table(
                "送达回执 receipts",
                ["收文法院", "状态", "回执时间"],
                [[r["court"], "已送达" if r["state"] == "delivered" else r["state"], r["receipt_at"]] for r in recips],
            )
        summary["steps"].append({"step": "province_broadcast", "directive": eid, "recipients": recips})

        _say(quiet, "\n[bold]三、商丘中院向辖区基层法院下发指令[/]")
        eid2 = tree.send_directive(
            "豫14", "豫14", "关于涉民生案件专项执行的通知", "梁园区、睢阳区法院请于十日内反馈。", subtree=True
        )
        tree.wait_until(lambda: _delivered(tree, "豫14", eid2) == 2, 30, "中院回执")
        recips2 = _recipients(tree, "豫14", eid2)
        _say(quiet, "、".join(f"{r['court']} 已送达" for r in recips2))
        summary["steps"].append({"step": "city_broadcast", "directive": eid2, "recipients": recips2})

        _say(quiet, "\n[bold]四、跨市连通：梁园区法院 → 郑州市中原区法院（经省法院中转）[/]")
        pings = tree.ping("豫1402", "豫0102", count=3)
        rtts = [round(p.round_trip_ms, 1) for p in pings if p.ok]
        _say(quiet, f"路由 {' → '.join(pings[0].route)}；往返 {rtts} 毫秒")
        summary["steps"].append({"step": "cross_city_ping", "route": list(pings[0].route), "round_trip_ms": rtts})

        _say(quiet, "\n[bold]五、全程留痕：各节点审计链与电子签章校验[/]")
        audits = {spec.court: verify_home(tree.homes[spec.court]) for spec in DEMO_TREE}
        if not quiet:
            table(
                "审计 audit",
                ["法院", "条目", "签章", "结果"],
                [[c, a["entries"], a["seals"], "完整" if a["ok"] else a["problem"]] for c, a in audits.items()],
            )
        summary["steps"].append({"step": "audit", "nodes": audits})
        ok = all(a["ok"] for a in audits.values()) and bool(rtts)
        ok = _agency_scenario(tree, quiet, summary, sims) and ok
        ok = _workflow_scenarios(Scene(tree, quiet, summary, sims)) and ok
        summary["ok"] = ok
        if keep:
            summary["kept"] = True
            _say(quiet, "\n节点保持运行。查看状态： court-hub status --home <目录>")
            for n in summary["nodes"]:
                _say(quiet, f"  {n['court']} {n['name']}: court-hub status --home {n['home']}")
            _say(quiet, f"停止：kill $(cat {base}/node-*/node.pid)")
            for sim in sims:
                _say(quiet, f"  协查机构模拟服务 {sim.kind}: {sim.url} (pid {sim.pid})")
        if json_out:
            emit_json(summary)
        else:
            console.print("\n[green]演示完成[/]" if ok else "\n[red]演示发现问题[/]")
        if not ok:
            raise typer.Exit(1)
    finally:
        if not keep:
            tree.stop_all()
            for sim in sims:
                sim.stop()


# -- 协查机构接入与立案即查 (agency plugins, 总对总 / 点对点) ------------------------------------

AGENCY_NAMES = {"bank": "银行", "land": "不动产登记", "public_security": "公安", "telecom": "电信运营商"}
DEMO_SEED = 7
# Who acts for the courts in requests to agencies (agencies want the judge's phone and two officers).
OFFICERS = {
    "豫1402": {"judge": "王立新", "judge_phone": "0370-3211234", "officer_ids": ["豫1402-0031", "豫1402-0047"]},
    "豫1403": {"judge": "赵敏", "judge_phone": "0370-3325566", "officer_ids": ["豫1403-0012", "豫1403-0019"]},
}
CASE_1402 = "（2026）豫1402执1号"
CASE_1403 = "（2026）豫1403执8号"


def _yuan(fen: int | None) -> str:
    return "" if fen is None else f"{fen // 100:,}.{fen % 100:02d}元"


def _served(item: dict[str, Any]) -> str:
    return "本院插件" if item["route"] == "local" else f"经 {item['served_by']} 协查"


def _agency_scenario(tree: LocalTree, quiet: bool, summary: dict[str, Any], sims: list[SimulatorProcess]) -> bool:
    """Steps 六–九: attach agencies, 立案即查 at a basic court, a freeze, a waiting freeze."""
    from plugins.agency.subjects import subject_by_role

    _say(quiet, "\n[bold]六、接入协查机构：省法院接入总对总，商丘中院接入银行点对点[/]")
    for kind in AGENCY_NAMES:
        sims.append(SimulatorProcess.start(kind, seed=DEMO_SEED))
    urls = {sim.kind: sim.url for sim in sims}
    tree.configure("豫", plugins={k: {"url": u, "scope": "national"} for k, u in urls.items()})
    tree.configure("豫14", plugins={"bank": {"url": urls["bank"], "scope": "豫14"}})
    tree.call("豫", "plugins.reload")
    tree.call("豫14", "plugins.reload")

    def reachable(court: str) -> dict[str, str]:
        caps: dict[str, str] = tree.status(court)["capabilities"]
        return {c: where for c, where in caps.items() if c.endswith(".inquiry")}

    expected = {"bank.inquiry": "豫14", "land.inquiry": "豫", "public_security.inquiry": "豫", "telecom.inquiry": "豫"}
    tree.wait_until(lambda: reachable("豫1402") == expected == reachable("豫1403"), 30, "能力通告")
    caps = reachable("豫1402")
    if not quiet:
        table(
            "梁园区法院可达的协查能力（能力通告沿组网下传）",
            ["协查机构", "能力", "承办法院", "方式"],
            [
                [AGENCY_NAMES[c.split(".")[0]], c, where, "点对点" if where != "豫" else "总对总"]
                for c, where in sorted(caps.items())
            ],
        )
    summary["steps"].append({"step": "agencies_attached", "simulators": urls, "reachable_from_豫1402": caps})

    rich = subject_by_role(DEMO_SEED, "rich")
    case = CASE_1402
    _say(quiet, f"\n[bold]七、立案即查：梁园区法院立案 {case}，被执行人 {rich.name}[/]")
    filed = tree.call(
        "豫1402",
        "case.file",
        {"number": case, "party": rich.name, "id_number": rich.id_no, "wait_s": 30, **OFFICERS["豫1402"]},
        timeout=60,
    )
    inquiries = filed["inquiries"]
    if not quiet:
        table(
            "各协查机构反馈",
            ["协查机构", "状态", "承办", "用时", "查得财产"],
            [
                [
                    AGENCY_NAMES.get(i["agency"], i["agency"]),
                    {"answered": "已反馈", "pending": "查询中", "failed": "失败", "timed_out": "超时"}[i["status"]],
                    _served(i),
                    f"{i['elapsed_ms']} 毫秒" if i["elapsed_ms"] is not None else "",
                    f"{i['assets']['count']} 项"
                    + (
                        f"，余额合计 {_yuan(i['assets']['total_amount_fen'])}"
                        if i["assets"]["total_amount_fen"]
                        else ""
                    ),
                ]
                for i in inquiries
            ],
        )
    answered = {i["agency"] for i in inquiries if i["status"] == "answered"}
    summary["steps"].append({"step": "case_filed", "case": case, "inquiries": _brief(inquiries)})

    account = max(rich.bank_accounts, key=lambda a: a.balance_fen or 0)
    amount = (account.balance_fen or 0) // 2
    _say(quiet, f"\n[bold]八、冻结：梁园区法院冻结账户 {account.asset_id} {_yuan(amount)}（经商丘中院点对点）[/]")
    freeze = _measure(tree, "豫1402", case, "freeze", account.asset_id, amount)
    lead = tree.status("豫1402")["agency"]["settings"]["reminder_lead_days"]
    if freeze.get("expires_at_ms"):
        remind_at = iso(freeze["expires_at_ms"] - lead * 86_400_000)[:10]
        _say(
            quiet,
            f"冻结成功：措施号 {freeze['measure_id']}，冻结 {_yuan(freeze['controlled_amount_fen'])}，"
            f"期限 {freeze['term_days']} 天，到期 {freeze['expires_at'][:10]}；系统将于 {remind_at} 提醒续冻",
        )
    summary["steps"].append({"step": "freeze", "measure": _brief([freeze])[0]})

    other = CASE_1403
    _say(quiet, f"\n[bold]九、轮候冻结：睢阳区法院立案 {other}，对同一账户轮候冻结；梁园区解冻后轮候自动生效[/]")
    tree.call(
        "豫1403",
        "case.file",
        {"number": other, "party": rich.name, "id_number": rich.id_no, "wait_s": 30, **OFFICERS["豫1403"]},
        timeout=60,
    )
    waiting = _measure(tree, "豫1403", other, "wait", account.asset_id, amount)
    _say(quiet, f"睢阳区法院轮候冻结：{_outcome(waiting)}，轮候第 {waiting.get('queue_position')} 位")
    release = _measure(tree, "豫1402", case, "release", account.asset_id, None)
    events = (release.get("result") or {}).get("attributes", {}).get("events") or []
    _say(
        quiet,
        f"梁园区法院解除冻结：{release.get('outcome')}" + (f"（银行回执：{'；'.join(events)}）" if events else ""),
    )
    again = tree.call("豫1403", "case.inquire", {"number": other, "agencies": ["bank"], "wait_s": 30}, timeout=60)
    promoted = next((m for m in again["measures"] if m["request_id"] == waiting.get("request_id")), waiting)
    _say(
        quiet,
        f"睢阳区法院再次查询银行：轮候冻结 {promoted.get('measure_id')} 现状态 "
        f"{'生效中' if promoted.get('state') == 'active' else promoted.get('state')}"
        + (f"，到期 {promoted['expires_at'][:10]}" if promoted.get("expires_at") else ""),
    )
    summary["steps"].append(
        {"step": "waiting_freeze", "waiting": _brief([waiting])[0], "release": _brief([release])[0],
         "after_release": _brief([promoted])[0]}
    )  # fmt: skip
    return (
        answered == set(AGENCY_NAMES)
        and freeze.get("state") == "active"
        and waiting.get("state") == "waiting"
        and promoted.get("state") == "active"
    )


def _outcome(measure: dict[str, Any]) -> str:
    names = {
        "done": "已执行",
        "partial": "部分控制",
        "queued": "已登记轮候",
        "not_controlled": "未控制",
        "rejected": "被拒绝",
    }
    outcome = str(measure.get("outcome") or "")
    if not outcome:
        return f"{measure.get('status')}：{measure.get('reason') or ''}"
    return names.get(outcome, outcome) + (f"（{measure['reason']}）" if measure.get("reason") else "")


def _measure(tree: LocalTree, court: str, case: str, action: str, asset: str, amount: int | None) -> dict[str, Any]:
    args: dict[str, Any] = {"number": case, "action": action, "agency": "bank", "asset": asset, "wait_s": 30}
    if amount is not None:
        args["amount_fen"] = amount
    measure: dict[str, Any] = tree.call(court, "control.request", args, timeout=60)["measure"]
    return measure


def _brief(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("agency", "action", "status", "route", "served_by", "plugin", "elapsed_ms", "outcome", "state",
            "measure_id", "controlled_amount_fen", "expires_at", "queue_position", "assets")  # fmt: skip
    return [{k: i[k] for k in keep if k in i} for i in items]


def _recipients(tree: LocalTree, court: str, eid: str) -> list[dict[str, Any]]:
    for item in tree.call(court, "directive.list"):
        if item["id"] == eid:
            return list(item["recipients"])
    return []


def _delivered(tree: LocalTree, court: str, eid: str) -> int:
    return sum(1 for r in _recipients(tree, court, eid) if r["state"] == "delivered")


# -- 指挥中心日常工作流 (issue 5): one short scenario of each workflow, across branches ---------------

# 郑州市中原区法院 acts on an entrusted freeze with its own bank connection; agencies want the judge's
# phone and two officers, which a node reads from its [agency] settings at start.
DEMO_SPECS = [
    replace(
        s,
        agency={"judge_name": "刘洋", "judge_phone": "0371-6795588", "officer_ids": ["豫0102-0021", "豫0102-0034"]},
    )
    if s.court == "豫0102"
    else s
    for s in DEMO_TREE
]
DUTY_OFFICER = ("王立新", "13903701234")  # 梁园区法院今日值班
WORKFLOW_TIMEOUT_S = 30


@dataclass
class Scene:
    """What a workflow scenario needs: the running tree, where to write, and the simulators."""

    tree: LocalTree
    quiet: bool
    summary: dict[str, Any]
    sims: list[SimulatorProcess]

    def say(self, text: str) -> None:
        _say(self.quiet, text)

    def call(self, court: str, op: str, args: dict[str, Any] | None = None) -> Any:
        return self.tree.call(court, op, args or {}, timeout=60)

    def poll(self, court: str, op: str, args: dict[str, Any]) -> Any:
        """The operation's answer, or None while it is refused (the item has not arrived yet)."""
        try:
            return self.call(court, op, args)
        except grpc.RpcError:
            return None

    def wait(self, what: str, predicate: Callable[[], bool]) -> None:
        self.tree.wait_until(predicate, WORKFLOW_TIMEOUT_S, what)

    def wf_state(self, court: str, item_id: str) -> str | None:
        """The state of a workflow item as ``court`` holds it (None: not there yet)."""
        shown = self.poll(court, "workflow.show", {"item_id": item_id})
        return str(shown["items"][0]["state"]) if shown and shown["items"] else None


def _workflow_scenarios(scene: Scene) -> bool:
    """Steps 十–十八: each scenario records its own step (with ``ok``); a failed one says why and
    the demo goes on with the next."""
    ok = True
    for scenario in (
        _duty,
        _directive_feedback,
        _supervision,
        _important_report,
        _entrusted_freeze,
        _sealed_approval,
        _request_and_petition,
        _deadlines_and_conclude,
        _statistics,
    ):
        started = time.monotonic()
        try:
            record = scenario(scene)
        except (grpc.RpcError, TimeoutError, CourtHubError, ApprovalError) as exc:
            message = _error_text(exc)
            scene.say(f"[red]未完成：{escape(message)}[/]")
            record = {"step": scenario.__name__.strip("_"), "ok": False, "error": message}
        record["elapsed_s"] = round(time.monotonic() - started, 2)
        scene.summary["steps"].append(record)
        ok = ok and bool(record["ok"])
    return ok


def _error_text(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"{exc.details()} ({_reason(exc)})"
    return str(exc)


def _reason(exc: grpc.RpcError) -> str:
    return next((str(v) for k, v in exc.trailing_metadata() or () if k == REASON_KEY), "error")


def _duty(s: Scene) -> dict[str, Any]:
    s.say("\n[bold]十、值班：梁园区法院排定今日值班员并签到[/]")
    officer, phone = DUTY_OFFICER
    s.call("豫1402", "duty.set", {"officer": officer, "phone": phone})
    s.call("豫1402", "duty.signin", {"officer": officer})
    current = s.tree.status("豫1402")["duty"] or {}
    s.say(
        f"今日（{current.get('date')}）值班：{current.get('officer')}，"
        f"{'已签到' if current.get('signed_in') else '未签到'}；紧急指令默认交值班员签收"
    )
    return {
        "step": "duty",
        "court": "豫1402",
        "officer": current.get("officer"),
        "date": current.get("date"),
        "signed_in": current.get("signed_in"),
        "ok": current.get("officer") == officer and current.get("signed_in") is True,
    }


def _directive_feedback(s: Scene) -> dict[str, Any]:
    s.say("\n[bold]十一、紧急指令与反馈：省法院向商丘中院辖区下发紧急指令，限 2 日内反馈[/]")
    issued = s.call(
        "豫",
        "directive.issue",
        {
            "to": "豫14",
            "subtree": True,
            "level": "urgent",
            "feedback_days": 2,
            "title": "关于涉民生案件春节前集中兑付的紧急指令",
            "body": "请商丘两级法院梳理涉农民工工资案件，于两日内反馈兑付情况。",
        },
    )
    eid = issued["id"]

    def table_() -> dict[str, Any]:
        shown: dict[str, Any] = s.call("豫", "directive.show", {"id": eid})
        return shown

    s.wait("紧急指令送达", lambda: table_()["summary"]["delivered"] == len(issued["recipients"]))
    s.call("豫1403", "directive.read", {"id": eid, "by": OFFICERS["豫1403"]["judge"]})
    s.call("豫1402", "directive.read", {"id": eid})  # by the duty officer it was assigned to
    report = "梁园区法院涉农民工工资案件 12 件，已兑付 9 件，计 86.4 万元；余 3 件本周内兑付。\n"
    s.call(
        "豫1402",
        "directive.feedback",
        {
            "id": eid,
            "text": "已按指令集中兑付，明细见附件。",
            "files": [{"name": "兑付情况.txt", "content_b64": base64.b64encode(report.encode()).decode()}],
        },
    )
    s.wait("反馈回到省法院", lambda: _recipient(table_(), "豫1402").get("answered") is True)
    shown = table_()
    names = {"delivered": "已送达", "read": "已签收", "answered": "已反馈", "reminded": "已催报"}
    rows = [
        {
            "court": r["court"],
            "state": r["state"],
            "delivered": r["delivered"],
            "read": r["read"],
            "read_by": r["read_by"],
            "answered": r["answered"],
            "on_time": r["on_time"],
            "files": [f["name"] for f in (r["feedback"] or {}).get("files") or []],
        }
        for r in shown["recipients"]
    ]
    if not s.quiet:
        table(
            f"省法院看到的逐院情况（反馈期限 {str(shown['recipients'][0]['feedback_due'])[:10]}）",
            ["收文法院", "状态", "签收人", "反馈附件"],
            [[r["court"], names.get(r["state"], r["state"]), r["read_by"] or "", "、".join(r["files"])] for r in rows],
        )
    answered = _recipient(shown, "豫1402")
    return {
        "step": "directive_feedback",
        "directive": eid,
        "level": shown["level"],
        "recipients": rows,
        "summary": shown["summary"],
        "ok": answered.get("answered") is True
        and answered.get("on_time") is True
        and answered.get("read_by") == DUTY_OFFICER[0]
        and _recipient(shown, "豫1403").get("state") == "read"
        and _recipient(shown, "豫14").get("state") == "delivered",
    }


def _recipient(shown: dict[str, Any], court: str) -> dict[str, Any]:
    return next((dict(r) for r in shown["recipients"] if r["court"] == court), {})


def _supervision(s: Scene) -> dict[str, Any]:
    s.say(f"\n[bold]十二、督办：商丘中院督办睢阳区法院 {CASE_1403}[/]")
    created = s.call(
        "豫14",
        "workflow.create",
        {
            "workflow": "supervision",
            "parties": ["豫1403"],
            "title": f"关于{CASE_1403}案件的督办函",
            "data": {"text": "请报告轮候冻结生效后的执行进展。", "reply_days": 10},
            "case_number": CASE_1403,
        },
    )
    item = created["item_id"]
    s.wait("督办函送达", lambda: s.wf_state("豫1403", item) == "issued")
    reply = "轮候冻结已生效，已通知被执行人限期履行，拟于期满后扣划。"
    s.call("豫1403", "workflow.act", {"item_id": item, "party": "豫1403", "action": "reply", "data": {"text": reply}})
    s.wait("督办回复", lambda: s.wf_state("豫14", item) == "replied")
    s.call("豫14", "workflow.act", {"item_id": item, "party": "豫1403", "action": "close"})
    s.wait("督办办结", lambda: s.wf_state("豫1403", item) == "closed")
    s.say(f"睢阳区法院回复：{reply}\n商丘中院办结督办，双方状态均为“办结”")
    states = {c: s.wf_state(c, item) for c in ("豫14", "豫1403")}
    return {
        "step": "supervision",
        "item_id": item,
        "case_number": CASE_1403,
        "reply": reply,
        "states": states,
        "ok": set(states.values()) == {"closed"},
    }


def _important_report(s: Scene) -> dict[str, Any]:
    s.say("\n[bold]十三、执行要情：梁园区法院报送暴力抗拒执行，逐级转报，省法院批示[/]")
    sent = s.call(
        "豫1402",
        "report.send",
        {
            "title": "执行现场遭遇暴力抗拒",
            "text": "今日上午在被执行人住所执行时，被执行人亲属阻挠并推搡执行人员，已报警处置。",
            "category": "violence",
            "urgency": "urgent",
            "case_number": CASE_1402,
        },
    )
    rid = sent["id"]
    s.wait("要情转报至省法院", lambda: s.poll("豫", "report.show", {"id": rid}) is not None)
    instruction = "依法严肃处理妨害执行行为，确保执行人员安全，处置结果续报。"
    s.call("豫", "report.instruct", {"id": rid, "text": instruction})

    def instructed() -> list[dict[str, Any]]:
        shown = s.poll("豫1402", "report.show", {"id": rid}) or {}
        return [i for i in shown.get("instructions", []) if i["by"] == "豫"]

    s.wait("批示下达梁园区法院", lambda: bool(instructed()))
    hops = s.call("豫14", "report.show", {"id": rid})["hops"]
    route = [hops[0]["from"], *(h["to"] for h in hops)]
    s.say(f"报送路径 {' → '.join(route)}（紧急要情按规则自动转报）\n省法院批示已转至梁园区法院：{instruction}")
    return {
        "step": "important_report",
        "report_id": rid,
        "category": "violence",
        "urgency": "urgent",
        "route": route,
        "hops": [{k: h[k] for k in ("from", "to", "state")} for h in hops],
        "instructions_at_reporter": instructed(),
        "ok": route == ["豫1402", "豫14", "豫"] and bool(instructed()),
    }


def _entrusted_freeze(s: Scene) -> dict[str, Any]:
    from plugins.agency.subjects import subject_by_role

    rich = subject_by_role(DEMO_SEED, "rich")
    account = min(rich.bank_accounts, key=lambda a: a.balance_fen or 0)  # not the one frozen in 八
    via = CourtCode.parse("豫1402").common_ancestor(CourtCode.parse("豫0102"))
    names = {spec.court: spec.name for spec in DEMO_TREE}
    s.say(f"\n[bold]十四、跨市事项委托：梁园区法院委托郑州市中原区法院冻结银行账户（经{names[str(via)]}中转）[/]")
    bank = next(sim.url for sim in s.sims if sim.kind == "bank")
    s.tree.configure("豫0102", plugins={"bank": {"url": bank, "scope": "豫0102"}})
    s.call("豫0102", "plugins.reload")
    shown = s.call(
        "豫1402",
        "entrust.create",
        {
            "to": "豫0102",
            "item": "freeze",
            "case_number": CASE_1402,
            "subject_name": rich.name,
            "id_number": rich.id_no,
            "agency": "bank",
            "asset": account.asset_id,
            "amount_fen": account.balance_fen,
            "term_days": 365,
            "text": "被执行人在郑州开户的银行账户，请协助冻结。",
        },
    )
    item = shown["item_id"]
    s.wait("委托送达中原区法院", lambda: s.wf_state("豫0102", item) == "submitted")
    s.call("豫0102", "entrust.register", {"item_id": item, "handler": "刘洋", "phone": "0371-6795588"})
    s.call("豫0102", "entrust.execute", {"item_id": item})  # through 豫0102's own bank connection
    s.wait("委托办结（两端）", lambda: {s.wf_state(c, item) for c in ("豫1402", "豫0102")} == {"completed"})
    ends = {c: s.call(c, "entrust.show", {"item_id": item}) for c in ("豫1402", "豫0102")}
    mine = ends["豫1402"]
    agency = mine["data"].get("agency_result") or {}
    s.say(
        f"委托冻结账户 {account.asset_id} {_yuan(account.balance_fen)}；中原区法院登记后经本院银行接口办理\n"
        f"办结结果回到梁园区法院：{mine['result']}\n"
        f"全程：{'、'.join(_ENTRUST_STEPS.get(e['action'], e['action']) for e in mine['events'])}"
    )
    return {
        "step": "entrusted_freeze",
        "item_id": item,
        "entrusting": "豫1402",
        "entrusted": "豫0102",
        "via": str(via),
        "states": {c: e["state"] for c, e in ends.items()},
        "result": mine["result"],
        "agency_result": agency,
        "plugin": ends["豫0102"]["data"].get("plugin"),
        "events": [e["action"] for e in mine["events"]],
        "ok": all(e["state"] == "completed" for e in ends.values()) and agency.get("status") in ("done", "partial"),
    }


_ENTRUST_STEPS = {"create": "提交", "register": "登记", "progress": "办理中", "complete": "办结"}


def _sealed_approval(s: Scene) -> dict[str, Any]:
    from plugins.agency.approval import verify_approval
    from plugins.agency.subjects import subject_by_role

    rich = subject_by_role(DEMO_SEED, "rich")
    s.say(f"\n[bold]十五、远程电子签章：梁园区法院申请对 {rich.name} 边控，由省法院审批签章[/]")
    asked = s.call(
        "豫1402",
        "approval.request",
        {
            "action": "border_control",
            "case_number": CASE_1402,
            "subject_id": rich.id_no,
            "subject_name": rich.name,
            "reason": "被执行人名下财产不足清偿，近期有出境迹象，申请限制出境。",
            "term_days": 180,
        },
    )
    item = asked["item_id"]
    s.wait("审批申请送达省法院", lambda: s.wf_state(asked["to"], item) == "requested")
    s.call(asked["to"], "approval.decide", {"item_id": item, "approve": True, "reason": "同意边控六个月"})
    s.wait("审批决定回到梁园区法院", lambda: s.wf_state("豫1402", item) == "approved")
    shown = s.call("豫1402", "approval.show", {"item_id": item})
    token = str(shown["token"])
    checked = s.call(
        "豫1402",
        "approval.verify",
        {"token": token, "action": "border_control", "subject_id": rich.id_no, "case_number": CASE_1402},
    )
    # What an executing agency does with the approving court's key (from its certificate).
    approver = CourtCode.parse(str(checked["approver"]))
    key = _certified_key(s.tree, "豫1402", approver)
    claims = verify_approval(token, "border_control", rich.id_no, trusted={str(approver): [key]}, now_ms=_now_ms())
    until = iso(checked["expires_at_s"] * 1000)[:10]
    s.say(
        f"{approver}批准并签章（决定编号 {checked['decision_id'][:12]}，有效至 {until}）\n"
        f"梁园区法院验章：通过；公安机关（执行插件）以{claims.iss}证书公钥验章：通过"
    )
    return {
        "step": "sealed_approval",
        "item_id": item,
        "action": "border_control",
        "requester": "豫1402",
        "approver": str(approver),
        "state": shown["item"]["state"],
        "decision": checked["decision"],
        "decision_id": checked["decision_id"],
        "verified": "error" not in shown.get("verified", {}) and checked["decision"] == "approved",
        "agency_verified": claims.iss == str(approver) and claims.jti == checked["decision_id"],
        "ok": shown["item"]["state"] == "approved"
        and checked["decision"] == "approved"
        and str(approver) == "豫"
        and claims.jti == checked["decision_id"],
    }


def _now_ms() -> int:
    return SystemClock().now_ms()


def _certified_key(tree: LocalTree, holder: str, court: CourtCode) -> Ed25519PublicKey:
    """``court``'s public key as ``holder`` knows it from the tree's certificates."""
    home = Home(tree.homes[holder])
    config = home.load()
    store = open_store(home, config)
    try:
        trust = store.read_sync(
            lambda conn: load_trust(conn, CourtCode.parse(config.trust.root or config.node.court), SystemClock())
        )
    finally:
        store.close()
    return trust.public_key(court)


def _request_and_petition(s: Scene) -> dict[str, Any]:
    s.say("\n[bold]十六、事项请求与信访交办[/]")
    asked = s.call(
        "豫1403",
        "request.send",
        {
            "title": "关于轮候冻结转为扣划的请示",
            "text": "轮候冻结生效后，首封法院已解除冻结，本院可否直接扣划？请予答复。",
            "topic": "law",
            "answer_days": 5,
            "case_number": CASE_1403,
        },
    )
    rid = asked["id"]
    s.wait("请求送达商丘中院", lambda: s.wf_state("豫14", rid) == "requested")
    answer = "轮候冻结已转为正式冻结，可依法制作扣划裁定后扣划。"
    s.call("豫14", "request.answer", {"id": rid, "text": answer})
    s.wait("答复回到睢阳区法院", lambda: s.wf_state("豫1403", rid) == "answered")
    s.say(f"睢阳区法院请示 → 商丘中院答复：{answer}")

    handed = s.call(
        "豫",
        "petition.send",
        {
            "to": "豫0102",
            "title": "信访人李某反映执行款未到账",
            "text": "信访人反映其申请执行案件执行款逾期未发放，请核查办理并答复。",
            "petitioner": "李某",
            "phone": "13812345678",
            "reply_days": 30,
        },
    )
    pid = handed["id"]
    s.wait("信访件交办至中原区法院", lambda: s.wf_state("豫0102", pid) == "handed_down")
    s.call("豫0102", "petition.accept", {"id": pid, "by": "刘洋"})
    reply = "经核查，执行款已于今日发放至信访人账户，已电话告知信访人。"
    s.call("豫0102", "petition.reply", {"id": pid, "text": reply})
    s.wait("办理答复回到省法院", lambda: s.wf_state("豫", pid) == "replied")
    s.call("豫", "petition.close", {"id": pid, "text": "答复属实，予以结案。"})
    s.wait("信访结案", lambda: s.wf_state("豫0102", pid) == "closed")
    s.say(f"省法院交办信访件 → 郑州市中原区法院签收并答复：{reply}\n省法院审核结案")
    request = {c: s.wf_state(c, rid) for c in ("豫1403", "豫14")}
    petition = {c: s.wf_state(c, pid) for c in ("豫", "豫0102")}
    return {
        "step": "request_and_petition",
        "request": {"id": rid, "from": "豫1403", "to": asked["to"], "answer": answer, "states": request},
        "petition": {"id": pid, "from": "豫", "to": "豫0102", "reply": reply, "states": petition},
        "ok": set(request.values()) == {"answered"} and set(petition.values()) == {"closed"},
    }


def _deadlines_and_conclude(s: Scene) -> dict[str, Any]:
    s.say(f"\n[bold]十七、流程节点期限与终本把关：{CASE_1402}[/]")
    s.call("豫1402", "deadlines.tick")
    s.call("豫1402", "deadlines.done", {"number": CASE_1402, "node": "notice", "note": "执行通知书已送达"})
    nodes = s.call("豫1402", "deadlines.show", {"number": CASE_1402})["nodes"]
    states = {"open": "进行中", "done": "已完成", "done_late": "超期完成", "overdue": "已超期"}
    s.say("；".join(f"{n['label']} {states.get(n['state'], n['state'])}（期限 {n['due'][:10]}）" for n in nodes))
    args = {
        "number": CASE_1402,
        "checklist": {
            "report_order_served": True,
            "report_checked": True,
            "consumption_restricted": True,
            "dishonest": "listed",
            "debtor_whereabouts": "known",
            "obstruction": "sanctioned",
            "applicant_heard": True,
        },
        "applicant": {"name": "商丘市某建材有限公司", "phone": "13700370001"},
    }
    checked = s.call("豫1402", "conclude.check", args)
    missing = [i for i in checked["items"] if not i["ok"]]
    refusal: dict[str, Any] = {}
    try:
        s.call("豫1402", "conclude.submit", args)
    except grpc.RpcError as exc:
        refusal = {"reason": _reason(exc), "message": exc.details()}
    s.say(
        "申请终本：系统拒绝（"
        + (refusal.get("reason") or "未拒绝")
        + "），尚缺：\n"
        + "\n".join(f"  · {i['label']}（{i['basis']}）" for i in missing)
    )
    return {
        "step": "deadlines_and_conclude",
        "case_number": CASE_1402,
        "nodes": [{k: n[k] for k in ("node", "label", "state", "due")} for n in nodes],
        "conclude_ok": checked["ok"],
        "missing": [{"item": i["item"], "label": i["label"], "why": i["why"]} for i in missing],
        "refusal": refusal,
        "ok": not checked["ok"] and bool(missing) and refusal.get("reason") == "checklist_incomplete",
    }


def _statistics(s: Scene) -> dict[str, Any]:
    s.say("\n[bold]十八、统计：各院签章报送统计摘要，逐级汇总至省法院[/]")
    levels = [["豫1402", "豫1403", "豫0102"], ["豫14", "豫01"]]
    for courts in levels:  # basic courts first, then the cities with their children's figures in
        sent = {c: s.call(c, "stats.send") for c in courts}
        for court, done in sent.items():
            _wait_summary(s, str(done["to"]), court, int(done["seq"]))
    shown = s.call("豫", "stats.show", {"subtree": True})
    own, subtree, children = shown["own"], shown["subtree"], shown["children"]
    mine, figures = _headline(own, 1), _headline(subtree, int(shown["courts"]))
    consistent = _added(own, [kid["subtree"] for kid in children.values()]) == subtree
    if not s.quiet:
        table(
            "全省统计（本院 + 各下级法院签章摘要）",
            ["指标", "省法院本院", "全辖区"],
            [
                [label, *(_cell(f, key) for f in (mine, figures))]
                for label, key in (
                    ("法院数", "courts"),
                    ("发出指令", "directives_sent"),
                    ("按期反馈", "directives_answered_on_time"),
                    ("网络查控 发出/反馈", ("inquiries_sent", "inquiries_answered")),
                    ("事项委托 委托办结/受托办结", ("entrust_completed_issued", "entrust_completed_received")),
                    ("控制措施 生效中", "measures_active"),
                )
            ],
        )
    s.say(f"汇总与“本院 + 各下级摘要”逐项核对：{'一致' if consistent else '不一致'}")
    return {
        "step": "statistics",
        "court": "豫",
        "children": {c: {"seq": k["seq"], "courts": k["courts"]} for c, k in children.items()},
        "own": mine,
        "figures": figures,
        "consistent": consistent,
        "ok": consistent
        and figures["courts"] == len(DEMO_TREE)
        and figures["entrust_completed_issued"] == figures["entrust_completed_received"] == 1
        and figures["directives_answered_on_time"] >= 1,
    }


def _headline(fig: dict[str, Any], courts: int) -> dict[str, int]:
    """The figures the demo shows, from one court's (or a subtree's) statistics."""
    entrust = fig["workflows"].get("entrust", {})
    return {
        "courts": courts,
        "directives_sent": fig["directives"]["sent"],
        "directives_answered_on_time": fig["directives"].get("answered_on_time", 0),
        "inquiries_sent": sum(a["sent"] for a in fig["inquiries"].values()),
        "inquiries_answered": sum(a.get("answered", 0) for a in fig["inquiries"].values()),
        "entrust_completed_issued": entrust.get("issued", {}).get("completed", 0),
        "entrust_completed_received": entrust.get("received", {}).get("completed", 0),
        "measures_active": fig["measures"]["active"],
    }


def _cell(fig: dict[str, int], key: str | tuple[str, str]) -> str:
    return "/".join(str(fig[k]) for k in key) if isinstance(key, tuple) else str(fig[key])


def _wait_summary(s: Scene, parent: str, child: str, seq: int) -> None:
    """Until ``parent`` holds ``child``'s signed summary number ``seq`` (or a newer one)."""

    def arrived() -> bool:
        kids = s.call(parent, "stats.show", {"subtree": True}).get("children", {})
        return int(kids.get(child, {}).get("seq", 0)) >= seq

    s.wait(f"{parent} 收到 {child} 的统计摘要", arrived)


def _added(own: dict[str, Any], others: list[dict[str, Any]]) -> dict[str, Any]:
    """``own`` plus ``others`` as a parent adds its children's figures (sums; ``*_max_ms`` maxima)."""
    total: dict[str, Any] = json.loads(json.dumps(own))
    for other in others:
        _add_into(total, other)
    return total


def _add_into(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict):
            inner = into.setdefault(key, {})
            _add_into(inner, value)
        elif key.endswith("_max_ms"):
            into[key] = max(into.get(key, 0), value)
        else:
            into[key] = into.get(key, 0) + value
