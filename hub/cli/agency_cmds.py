"""Agency commands: cases and 立案即查, control measures, plugins, workers, simulators, bench.

``court-hub case file|show|list|inquire``, ``court-hub control``, ``court-hub plugins list|reload``,
``court-hub worker``, ``court-hub agency-sim``, ``court-hub bench inquiry``; and ``court-hub
status`` with the node's agency section (plugins, queue depth, dead letters with reasons).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from hub.cli.client import call
from hub.cli.node_cmds import HomeOpt, JsonOpt
from hub.cli.node_cmds import status as node_status
from hub.cli.output import console, emit_json, fail, table
from hub.clock import iso
from hub.config import Home
from hub.errors import InvalidInput, Unavailable

plugins_app = typer.Typer(help="Agency plugins (协查机构接入): list, reload.", no_args_is_help=True)

STATES = {"pending": "查询中", "answered": "已反馈", "failed": "失败", "timed_out": "超时"}
AGENCIES = {"bank": "银行", "land": "不动产登记", "public_security": "公安", "telecom": "电信运营商"}
ACTIONS = {
    "freeze": "冻结",
    "renew": "续冻/续封",
    "waiting": "轮候",
    "release": "解除",
    "release_waiting": "解除轮候",
    "deduct": "扣划",
    "freeze_and_deduct": "冻结并扣划",
    "seal": "查封",
    "border_control": "边控",
    "location": "定位",
}
MEASURE_STATES = {"active": "生效中", "waiting": "轮候中", "released": "已解除", "lapsed": "已失效", "ended": "已终结"}
OUTCOMES = {
    "done": "已执行",
    "partial": "部分控制",
    "queued": "已轮候",
    "not_controlled": "未控制",
    "rejected": "被拒绝",
}


def yuan_to_fen(text: str) -> int:
    try:
        value = Decimal(text.replace(",", "").strip())
    except InvalidOperation:
        fail(f"--amount {text!r} is not an amount in yuan (e.g. 50000 or 1234.56)")
    if value <= 0 or value != value.quantize(Decimal("0.01")):
        fail(f"--amount {text!r} must be positive with at most two decimals (yuan)")
    return int(value * 100)


def yuan(fen: int | None) -> str:
    if fen is None:
        return ""
    return f"{fen // 100:,}.{fen % 100:02d}元"


def _ms(value: int | None) -> str:
    return "" if value is None else f"{value} ms"


def _route(item: dict[str, Any]) -> str:
    where = item.get("served_by") or ""
    return f"本院 {where}" if item["route"] == "local" else f"经上级 {where}".strip()


# -- cases -----------------------------------------------------------------------------------


def case_file(
    home: HomeOpt,
    number: Annotated[str, typer.Option("--number", help="案号, e.g. （2026）豫1402执1号.")],
    party: Annotated[str, typer.Option("--party", help="被执行人 name.")],
    id_number: Annotated[str, typer.Option("--id-number", help="被执行人 ID number.")],
    id_type: Annotated[str, typer.Option("--id-type", help="resident_id, uscc or passport.")] = "resident_id",
    amount: Annotated[str | None, typer.Option("--amount", help="执行标的 in yuan.")] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="承办法官 (default: [agency] judge_name).")] = None,
    judge_phone: Annotated[str | None, typer.Option("--judge-phone", help="承办法官联系电话.")] = None,
    officer: Annotated[list[str] | None, typer.Option("--officer", help="执行公务证号 (give two).")] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for every agency's answer.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """File an enforcement case (立案); inquiries start at every reachable agency (立案即查)."""
    args: dict[str, Any] = {
        "number": number,
        "party": party,
        "id_number": id_number,
        "id_type": id_type,
        "judge": judge,
        "judge_phone": judge_phone,
        "officer_ids": officer or None,
        "wait_s": wait,
    }
    if amount is not None:
        args["amount_fen"] = yuan_to_fen(amount)
    data = call(Home(home), "case.file", args, timeout=wait + 60)
    if json_out:
        emit_json(data)
        return
    case = data["case"]
    verb = "已立案" if data.get("created") else "案件已存在"
    console.print(
        f"[green]{verb}[/] {case['case_number']}  被执行人 {case['party']['name']}（{case['party']['id_no']}）"
    )
    _print_case(data)


def case_show(
    home: HomeOpt,
    number: Annotated[str, typer.Argument(help="案号")],
    json_out: JsonOpt = False,
) -> None:
    """A case: per-agency inquiry status, timings and results; control measures and reminders."""
    data = call(Home(home), "case.show", {"number": number})
    if json_out:
        emit_json(data)
        return
    case = data["case"]
    console.print(
        f"[bold]{case['case_number']}[/]  被执行人 {case['party']['name']}（{case['party']['id_no']}）"
        f"  立案 {case['filed_at']}  承办 {case['judge_name']}"
    )
    _print_case(data)


def _print_case(data: dict[str, Any]) -> None:
    inquiries = data.get("inquiries") or []
    if inquiries:
        table(
            "立案即查 各机构反馈",
            ["机构", "状态", "承办", "插件", "发出", "用时", "财产", "说明"],
            [
                [
                    AGENCIES.get(i["agency"], i["agency"]),
                    STATES.get(i["status"], i["status"]) + (f"（{i['answer']}）" if i.get("answer") else ""),
                    _route(i),
                    i.get("plugin") or "",
                    iso(i["requested_at_ms"]),
                    _ms(i.get("elapsed_ms")),
                    _assets(i),
                    escape((i.get("message") or "")[:60]),
                ]
                for i in inquiries
            ],
        )
    elif data["case"].get("inquiries_started_at_ms") is None:
        console.print("立案即查：待发起")
    else:
        console.print("立案即查：无可达的协查机构（未接入插件）")
    measures = data.get("measures") or []
    if measures:
        table(
            "控制措施",
            ["措施", "机构", "财产", "状态", "结果", "措施号", "申请/控制", "到期", "轮候", "承办", "原因"],
            [
                [
                    ACTIONS.get(m["action"], m["action"]),
                    AGENCIES.get(m["agency"], m["agency"]),
                    m.get("asset_id") or m.get("target_measure_id") or "",
                    STATES.get(m["status"], m["status"])
                    + (f" / {MEASURE_STATES.get(m['state'], m['state'])}" if m.get("state") else ""),
                    OUTCOMES.get(m.get("outcome") or "", m.get("outcome") or ""),
                    m.get("measure_id") or "",
                    f"{yuan(m.get('requested_amount_fen'))}/{yuan(m.get('controlled_amount_fen'))}"
                    if m.get("requested_amount_fen") is not None
                    else "",
                    (m.get("expires_at") or "")[:10],
                    m.get("queue_position") or "",
                    _route(m),
                    escape((m.get("reason") or "")[:50]),
                ]
                for m in measures
            ],
        )
    reminders = data.get("reminders") or []
    if reminders:
        table(
            "续冻提醒",
            ["提醒时间", "机构", "措施号", "财产", "到期", "剩余天数", "类型"],
            [
                [
                    r["raised_at"],
                    AGENCIES.get(r["agency"], r["agency"]),
                    r.get("measure_id") or "",
                    r.get("asset_id") or "",
                    r["expires_at"][:10],
                    r["days_left"],
                    "已失效" if r["kind"] == "lapsed" else ("最后提醒" if r["stage"] >= 2 else "续行提醒"),
                ]
                for r in reminders
            ],
        )


def _assets(item: dict[str, Any]) -> str:
    a = item.get("assets") or {}
    if not a.get("count"):
        return "无" if item["status"] == "answered" else ""
    text = f"{a['count']} 项"
    if a.get("total_amount_fen"):
        text += f"，合计 {yuan(a['total_amount_fen'])}"
    return text


def case_list(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Cases filed here, newest first, with their inquiry counts."""
    items = call(Home(home), "case.list")
    if json_out:
        emit_json(items)
        return
    table(
        "案件",
        ["案号", "被执行人", "立案", "已反馈", "查询中", "失败", "超时"],
        [
            [
                c["case_number"],
                c["party_name"],
                iso(c["filed_at_ms"]),
                c["inquiries"]["answered"],
                c["inquiries"]["pending"],
                c["inquiries"]["failed"],
                c["inquiries"]["timed_out"],
            ]
            for c in items
        ],
    )


def case_inquire(
    home: HomeOpt,
    number: Annotated[str, typer.Argument(help="案号")],
    agency: Annotated[list[str] | None, typer.Option("--agency", help="Only these agencies (bank, land …).")] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the answers.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Ask the reachable agencies again (e.g. to see a waiting freeze take effect)."""
    data = call(Home(home), "case.inquire", {"number": number, "agencies": agency, "wait_s": wait}, timeout=wait + 60)
    if json_out:
        emit_json(data)
        return
    _print_case(data)


# -- control ---------------------------------------------------------------------------------


def control(
    home: HomeOpt,
    number: Annotated[str, typer.Argument(help="案号")],
    action: Annotated[
        str,
        typer.Argument(
            help="freeze, renew, wait, release, release-waiting, deduct, freeze-deduct, seal, border-control"
        ),
    ],
    agency: Annotated[str, typer.Option("--agency", help="bank, land, public_security, telecom.")],
    asset: Annotated[str | None, typer.Option("--asset", help="Account no., 不动产权证号, plate, phone.")] = None,
    measure: Annotated[str | None, typer.Option("--measure", help="The agency's measure id (renew, release).")] = None,
    amount: Annotated[str | None, typer.Option("--amount", help="Amount in yuan (freeze, deduct).")] = None,
    term_days: Annotated[int | None, typer.Option("--term-days", help="Term (default: the legal maximum).")] = None,
    approval: Annotated[str | None, typer.Option("--approval", help="Sealed approval (边控, 定位).")] = None,
    payee: Annotated[str | None, typer.Option("--payee", help="执行款专户 for deduct.")] = None,
    document_no: Annotated[str | None, typer.Option("--document-no", help="Ruling number (default 案号之N).")] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the agency's answer.")] = 30,
    json_out: JsonOpt = False,
) -> None:
    """Request a control measure (冻结, 续冻, 轮候, 解冻, 扣划, 查封 …) here or via an upper court."""
    args: dict[str, Any] = {
        "number": number,
        "action": action,
        "agency": agency,
        "asset": asset,
        "measure": measure,
        "term_days": term_days,
        "approval": approval,
        "payee": payee,
        "document_no": document_no,
        "wait_s": wait,
    }
    if amount is not None:
        args["amount_fen"] = yuan_to_fen(amount)
    data = call(Home(home), "control.request", args, timeout=wait + 60)
    if json_out:
        emit_json(data)
        return
    m = data["measure"]
    head = f"{ACTIONS.get(m['action'], m['action'])} {AGENCIES.get(m['agency'], m['agency'])} {m.get('asset_id') or ''}"
    console.print(f"[bold]{head}[/]  {STATES.get(m['status'], m['status'])}  {_route(m)}  请求号 {m['request_id']}")
    if m["status"] == "answered":
        console.print(
            f"结果 {OUTCOMES.get(m.get('outcome') or '', m.get('outcome'))}  措施号 {m.get('measure_id') or '—'}"
            + (f"  控制 {yuan(m.get('controlled_amount_fen'))}" if m.get("controlled_amount_fen") is not None else "")
            + (f"  到期 {m['expires_at']}" if m.get("expires_at") else "")
            + (f"  轮候第 {m['queue_position']} 位" if m.get("queue_position") else "")
            + (f"  原因 {escape(m['reason'])}" if m.get("reason") else "")
        )
    elif m["status"] != "pending":
        console.print(f"[red]{escape(m.get('reason') or '')}[/]")


# -- plugins ---------------------------------------------------------------------------------


@plugins_app.command("list")
def plugins_list(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Plugins of the node: name, version, API version, capabilities, scope, state, health."""
    h = Home(home)
    try:
        data = call(h, "plugins.list", {"health": True})
    except Unavailable:
        data = asyncio.run(_offline_plugins(h))
    if json_out:
        emit_json(data)
        return
    table(
        f"插件 plugins at {data['court']}",
        ["name", "version", "API", "capabilities", "scope", "state", "health", "message"],
        [
            [
                p["name"],
                p.get("version") or "",
                p.get("api_version") or "",
                ", ".join(p.get("capabilities") or []),
                p.get("scope") or "",
                p["state"],
                (p.get("health") or {}).get("status", ""),
                escape((p.get("message") or (p.get("health") or {}).get("message") or "")[:70]),
            ]
            for p in data["plugins"]
        ],
    )
    if data.get("offered") is not None:
        console.print(f"本院提供 offered: {', '.join(data['offered']) or '—'}")
    if data.get("reachable"):
        console.print("可达 reachable: " + ", ".join(f"{c}@{court}" for c, court in data["reachable"].items()))


async def _offline_plugins(home: Home) -> dict[str, Any]:
    """The node is stopped: load its plugins here, as it would, and check their health."""
    from importlib.metadata import entry_points

    from hub.agency.routing import LocalPlugins
    from hub.agency.service import close_plugins
    from hub.plugins.hookspec import ENTRY_POINT_GROUP
    from hub.plugins.host import PluginHost

    config = home.load()
    sections = {ep.name: {"enabled": False} for ep in entry_points(group=ENTRY_POINT_GROUP)}
    sections.update({k: dict(v) for k, v in config.plugins.items()})
    host = PluginHost(sections)
    host.load_entry_points()
    await host.check_health()
    scopes = LocalPlugins.build(host, config.plugins).scopes()
    out = []
    for status in host.list():
        item = status.to_dict()
        item["scope"] = scopes.get(status.name, item["scope"])
        if status.state == "disabled" and status.name not in config.plugins:
            item["message"] = f"not configured on this node (add a [plugins.{status.name}] section)"
        out.append(item)
    await close_plugins(host)
    return {"court": config.node.court, "plugins": out, "offered": None, "reachable": {}, "node": "stopped"}


@plugins_app.command("reload")
def plugins_reload(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Re-read [plugins.*] from config.toml in the running node; changed capabilities are announced."""
    data = call(Home(home), "plugins.reload")
    if json_out:
        emit_json(data)
        return
    console.print(f"已重新加载 {len(data['plugins'])} 个插件；本院提供 {', '.join(data['offered']) or '—'}")


# -- status ----------------------------------------------------------------------------------


def status(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Court, links, backlog, audit head; agency plugins, job queue depth and dead letters."""
    node_status(home, json_out)
    if json_out:
        return
    a = call(Home(home), "agency.status")
    q = a["queue"]
    plugins = ", ".join(
        f"{p['name']}({p['state']}{'/' + p['health'] if p.get('health') else ''})" for p in a["plugins"]
    )
    console.print(f"agency plugins: {plugins or '—'}; offered: {', '.join(a['offered']) or '—'}")
    console.print(
        f"agency queue 待处理: {q['depth']} jobs"
        + (f", oldest {q['oldest_pending_age_ms']} ms" if q["oldest_pending_age_ms"] is not None else "")
        + f"; cases {a['cases']}; measures in force {a['measures_in_force']}; reminders raised {a['reminders_raised']}"
    )
    if q["dead_letters"]:
        table(
            "死信 dead letters",
            ["job", "plugin", "case", "status", "attempts", "reason", "message"],
            [
                [
                    d["job_id"][:12],
                    d["plugin"],
                    d["case_number"],
                    d["status"],
                    d["attempts"],
                    d["reason"],
                    escape((d["message"] or "")[:70]),
                ]
                for d in q["dead_letters"]
            ],
        )


# -- worker ----------------------------------------------------------------------------------


def worker(
    home: HomeOpt,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=1000, help="Calls in flight per plugin (default: [agency] worker_concurrency)."),
    ] = None,
    plugin: Annotated[list[str] | None, typer.Option("--plugin", help="Only these plugins (default: all).")] = None,
    nats_url: Annotated[
        str,
        typer.Option(help="NATS URL or comma-separated cluster list (default: [bus] nats_url, else the node's)."),
    ] = "",
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run an extra worker on the node's agency queue (same store, same NATS) until SIGTERM.

    A worker needs only the node's config.toml (no keys): ``[store] url`` (PostgreSQL when workers
    run beside the node) and ``[bus] nats_url`` (or COURTHUB_STORE__URL / COURTHUB_BUS__NATS_URL).
    With several NATS URLs it reconnects to a surviving server; a worker killed mid-call loses
    nothing — its jobs come back to another worker after the consumer's ack wait (docs/scale-out.md).
    """
    from importlib.metadata import entry_points

    from hub.agency.service import close_plugins, retry_policy
    from hub.jobs import run_worker
    from hub.natsserver import nats_servers
    from hub.plugins.hookspec import ENTRY_POINT_GROUP
    from hub.plugins.host import PluginHost
    from hub.store import Store

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    h = Home(home)
    config = h.load()
    url = nats_url or config.bus.nats_url
    if not url:
        try:
            url = _bus_url(h)
        except Unavailable:
            fail(f"the node at {h.path} is not running and no --nats-url was given: start it first")
    try:
        servers = nats_servers(url)
    except InvalidInput as exc:
        fail(f"--nats-url / [bus] nats_url: {exc}")
    if not config.store.url:
        console.print(
            f"[yellow]note[/]: [store] url is empty, so this worker uses the SQLite file {h.database}; "
            "workers on other machines need a shared PostgreSQL store"
        )
    in_flight = concurrency or config.agency.worker_concurrency
    sections = {ep.name: {"enabled": False} for ep in entry_points(group=ENTRY_POINT_GROUP)}
    sections.update({k: dict(v) for k, v in config.plugins.items()})

    async def main() -> None:
        host = PluginHost(sections)
        host.load_entry_points()
        names = [n for n in host.names() if not plugin or n in plugin]
        if not names:
            fail("no active plugin to work for (check [plugins.*] in config.toml)")
        store = Store(h.store_url(config))
        await asyncio.to_thread(store.migrate)
        store.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        console.print(
            f"[green]worker[/] for {config.court}: {', '.join(names)} on {', '.join(servers)} "
            f"({in_flight} calls in flight per plugin)"
        )
        try:
            w = await run_worker(
                store,
                url,
                str(config.court),
                host,
                stop,
                plugins=names,
                concurrency=in_flight,
                sweep_interval_s=None,
                policy=retry_policy(config.agency),
            )
            s = w.stats
            console.print(f"worker stopped: handled {s.handled}, answered {s.answered}, retried {s.retried}")
        finally:
            await close_plugins(host)
            await asyncio.to_thread(store.close)

    asyncio.run(main())


def _bus_url(home: Home) -> str:
    from hub.cli.client import with_admin
    from hub.proto.courthub.v1 import admin_pb2 as apb

    reply = with_admin(home, lambda stub: stub.Status(apb.StatusRequest(), timeout=10))
    return str(json.loads(reply.json)["bus"]["url"])


# -- simulators ------------------------------------------------------------------------------


def agency_sim(
    kind: Annotated[str, typer.Argument(help="bank, land, public_security or telecom.")],
    listen: Annotated[str, typer.Option(help="HOST:PORT to bind (port 0: a free port).")] = "127.0.0.1:0",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 1,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Directory of its store (default: temp).")] = None,
    delay_ms: Annotated[int, typer.Option("--delay-ms", min=0, help="Delay every answer by this much.")] = 0,
    approvers: Annotated[Path | None, typer.Option(help="Trusted approvers JSON file (边控, 定位).")] = None,
    now: Annotated[str | None, typer.Option(help="Pin the simulator clock (ISO-8601 or epoch ms).")] = None,
    ready_file: Annotated[Path | None, typer.Option("--ready-file", help="Write the base URL here.")] = None,
) -> None:
    """Run a reference agency simulator (deterministic synthetic data) until SIGTERM."""
    from plugins.agency.sim import KINDS, run_simulator

    if kind not in KINDS:
        fail(f"unknown agency kind {kind!r}; expected one of {', '.join(sorted(KINDS))}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pinned: int | str | None = int(now) if now is not None and now.isdigit() else now
    try:
        run_simulator(kind, listen, seed, data_dir, delay_ms, approvers=approvers, now=pinned, ready_file=ready_file)
    except (ValueError, OSError) as exc:
        fail(str(exc))


# -- bench -----------------------------------------------------------------------------------


def bench_inquiry(
    cases: Annotated[int, typer.Option("--cases", "-n", min=1, max=10_000, help="Cases filed in one burst.")] = 100,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """立案即查 throughput and latency through the bus and queue vs plugins called directly."""
    from hub.bench.inquiry import run

    result = run(cases)
    if json_out:
        emit_json(result)
        return
    table("bench inquiry", ["figure", "value"], [[k, v] for k, v in result.items() if not isinstance(v, dict)])
    console.print(
        f"p99 filing → last answer {result['bus_p99_ms']} ms (target < {result['target_p99_ms']} ms); "
        f"ratio bus/direct {result['ratio']} (target ≥ {result['target_ratio']})"
    )


def register(app: typer.Typer) -> None:
    """Add the agency commands to the CLI."""
    from hub.cli.bench_cmds import bench_app
    from hub.cli.record_cmds import case_app

    case_app.command("file")(case_file)
    case_app.command("show")(case_show)
    case_app.command("list")(case_list)
    case_app.command("inquire")(case_inquire)
    app.command("control")(control)
    app.add_typer(plugins_app, name="plugins")
    app.command("worker")(worker)
    app.command("agency-sim")(agency_sim)
    bench_app.command("inquiry")(bench_inquiry)
