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
from hub.clock import SystemClock
from hub.codes import CourtCode
from hub.config import Home
from hub.federation.envelope import open_envelope
from hub.federation.topology import load_trust
from hub.localtree import DEMO_TREE, LocalTree
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.provision import open_store
from hub.seal import verify as verify_seal


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
        summary["ok"] = ok
        if keep:
            summary["kept"] = True
            _say(quiet, "\n节点保持运行。查看状态： court-hub status --home <目录>")
            for n in summary["nodes"]:
                _say(quiet, f"  {n['court']} {n['name']}: court-hub status --home {n['home']}")
            _say(quiet, f"停止：kill $(cat {base}/node-*/node.pid)")
        if json_out:
            emit_json(summary)
        else:
            console.print("\n[green]演示完成[/]" if ok else "\n[red]演示发现问题[/]")
        if not ok:
            raise typer.Exit(1)
    finally:
        if not keep:
            tree.stop_all()


def _recipients(tree: LocalTree, court: str, eid: str) -> list[dict[str, Any]]:
    for item in tree.call(court, "directive.list"):
        if item["id"] == eid:
            return list(item["recipients"])
    return []


def _delivered(tree: LocalTree, court: str, eid: str) -> int:
    return sum(1 for r in _recipients(tree, court, eid) if r["state"] == "delivered")
