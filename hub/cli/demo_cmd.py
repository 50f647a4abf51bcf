"""``court-hub demo``: a small local federation, a scenario across it, and what happened.

Everything is real: node processes on loopback with TLS, embedded nats-servers, SQLite stores,
enrollment by join tokens. The narrative is in the Chinese court staff use.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.audit import verify as verify_chain
from hub.cli.output import console, emit_json, table
from hub.clock import SystemClock, iso
from hub.codes import CourtCode
from hub.config import Home
from hub.federation.envelope import open_envelope
from hub.federation.topology import load_trust
from hub.localtree import DEMO_TREE, LocalTree
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.provision import open_store
from hub.seal import verify as verify_seal
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
    tree = LocalTree(base, DEMO_TREE)
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
    case = "（2026）豫1402执1号"
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

    other = "（2026）豫1403执8号"
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
