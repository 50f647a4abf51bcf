"""``court-hub deadlines …`` (流程节点期限, 繁简分流), ``court-hub conclude …`` (终本 and its
follow-up), ``court-hub stats`` and ``court-hub bench tree``.

Each command calls admin operations of the running node (``deadlines.*``, ``conclude.*``,
``stats.*``); ``--json`` prints what the node returned.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

import hub.workflows.stats  # noqa: F401 - registers the stats.summary envelope kind (audit verify opens it)
from hub.cli.agency_cmds import yuan, yuan_to_fen
from hub.cli.client import call
from hub.cli.node_cmds import HomeOpt, JsonOpt
from hub.cli.output import console, emit_json, fail, table
from hub.config import Home

deadlines_app = typer.Typer(help="Case-node deadlines (流程节点期限) and triage (繁简分流).", no_args_is_help=True)
conclude_app = typer.Typer(help="终结本次执行程序 (终本): the checklist and the follow-up.", no_args_is_help=True)

CaseArg = Annotated[str, typer.Argument(help="案号, e.g. （2024）豫1402执123号")]
NodeArg = Annotated[str, typer.Argument(help="Case node, e.g. assign, notice, clues, investigate, conclude.")]
SubtreeOpt = Annotated[bool, typer.Option("--subtree", help="Include every court below (from signed summaries).")]
NODE_STATES = {"open": "进行中", "overdue": "已超期", "done": "按期完成", "done_late": "超期完成"}


def _at_ms(text: str | None, option: str) -> int | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} {text!r} is not an ISO date/time (e.g. 2026-03-01 or 2026-03-01T09:30:00+08:00)")
    if when.tzinfo is None:
        when = datetime.fromisoformat(text + "+08:00") if "T" in text else datetime.fromisoformat(text + "T00:00+08:00")
    return int(when.timestamp() * 1000)


def _print_nodes(data: dict[str, Any]) -> None:
    console.print(
        f"[bold]{escape(data['case_number'])}[/]  立案 {data['filed_at']}  "
        f"{data['track']}案（{escape(data['triage_rule'])}）"
        f"  标的 {yuan(data.get('amount_fen')) or '—'}  当事人 {data['parties']}"
    )
    table(
        "流程节点",
        ["节点", "名称", "开始", "期限", "完成", "状态", "超期天数"],
        [
            [
                f"{n['node']}#{n['seq']}" if n["seq"] > 1 else n["node"],
                n["label"],
                n["started_at"],
                n["due"],
                n["done_at"],
                NODE_STATES.get(n["state"], n["state"]),
                n["overdue_days"] or "",
            ]
            for n in data["nodes"]
        ],
    )


# -- deadlines -------------------------------------------------------------------------------------


@deadlines_app.command("list")
def deadlines_list(home: HomeOpt, limit: int = 200, json_out: JsonOpt = False) -> None:
    """Tracked cases with their open, overdue and finished nodes."""
    rows = call(Home(home), "deadlines.list", {"limit": limit})
    if json_out:
        emit_json(rows)
        return
    table(
        "流程节点 tracked cases",
        ["案号", "繁简", "立案", "进行中", "超期", "已完成", "其中超期完成"],
        [[r["case_number"], r["track"], r["filed_at"], r["open"], r["overdue"], r["done"], r["late"]] for r in rows],
    )


@deadlines_app.command("show")
def deadlines_show(home: HomeOpt, number: CaseArg, json_out: JsonOpt = False) -> None:
    """One case: its triage track and every node with its deadline."""
    data = call(Home(home), "deadlines.show", {"number": number})
    if json_out:
        emit_json(data)
    else:
        _print_nodes(data)


@deadlines_app.command("overdue")
def deadlines_overdue(home: HomeOpt, subtree: SubtreeOpt = False, json_out: JsonOpt = False) -> None:
    """Open nodes past their deadline at this court (``--subtree``: and every court below)."""
    data = call(Home(home), "deadlines.overdue", {"subtree": subtree})
    if json_out:
        emit_json(data)
        return
    table(
        f"超期流程节点 overdue ({data['total']})",
        ["法院", "案号", "节点", "期限", "超期天数", "督办"],
        [
            [o["court"], o["case_number"], o["label"], o["due"], o["overdue_days"], o.get("supervision") or ""]
            for o in data["overdue"]
        ],
    )
    if subtree and data.get("reported"):
        console.print("summaries: " + ", ".join(f"{c} {at}" for c, at in sorted(data["reported"].items())))


@deadlines_app.command("track")
def deadlines_track(
    home: HomeOpt,
    number: CaseArg,
    amount: Annotated[str | None, typer.Option(help="执行标的 in yuan.")] = None,
    parties: Annotated[int, typer.Option(min=1, help="Number of parties (triage).")] = 2,
    filed: Annotated[str | None, typer.Option(help="Filing date (default: now), e.g. 2026-03-01.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Track a case filed outside the hub (or triage a tracked one again)."""
    args: dict[str, Any] = {"number": number, "parties": parties}
    if amount is not None:
        args["amount_fen"] = yuan_to_fen(amount)
    if filed:
        args["filed_at_ms"] = _at_ms(filed, "--filed")
    data = call(Home(home), "deadlines.track", args)
    if json_out:
        emit_json(data)
    else:
        _print_nodes(data)


@deadlines_app.command("start")
def deadlines_start(
    home: HomeOpt,
    number: CaseArg,
    node: NodeArg,
    at: Annotated[str | None, typer.Option(help="When the event happened (default: now).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """An event-anchored node opens, e.g. ``clues`` when the applicant gives a property clue."""
    args: dict[str, Any] = {"number": number, "node": node}
    if at:
        args["at_ms"] = _at_ms(at, "--at")
    data = call(Home(home), "deadlines.start", args)
    if json_out:
        emit_json(data)
    else:
        console.print(f"{escape(data['case_number'])} {data['node']}#{data['seq']} opened; due {data['due']}")


@deadlines_app.command("done")
def deadlines_done(
    home: HomeOpt,
    number: CaseArg,
    node: NodeArg,
    note: Annotated[str, typer.Option(help="What was done.")] = "",
    at: Annotated[str | None, typer.Option(help="When (default: now).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """A node is completed (on time or late is recorded)."""
    args: dict[str, Any] = {"number": number, "node": node, "note": note}
    if at:
        args["at_ms"] = _at_ms(at, "--at")
    data = call(Home(home), "deadlines.done", args)
    if json_out:
        emit_json(data)
    else:
        console.print(
            f"{escape(data['case_number'])} {data['node']} done {data['done_at']} "
            + ("按期" if data["on_time"] else f"[red]超期[/]（期限 {data['due']}）")
        )


@deadlines_app.command("rules")
def deadlines_rules(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """The configured node rules and triage rules ([case_mgmt] in config.toml)."""
    data = call(Home(home), "deadlines.rules")
    if json_out:
        emit_json(data)
        return
    table(
        "流程节点规则",
        ["节点", "名称", "期限", "起算", "自动完成", "超期督办", "依据"],
        [
            [
                name,
                r["label"],
                r["term"],
                r["anchor"],
                r.get("done_on") or "",
                "是" if r["supervise"] else "",
                r["basis"],
            ]
            for name, r in data["nodes"].items()
        ],
    )
    table(
        f"繁简分流 (default {data['triage']['default']})",
        ["规则", "结果", "标的", "当事人", "查有财产"],
        [
            [
                r["name"],
                r["track"],
                f"{yuan(r.get('min_amount_fen')) or ''}–{yuan(r.get('max_amount_fen')) or ''}",
                f"{r.get('min_parties') or ''}–{r.get('max_parties') or ''}",
                "" if r.get("assets_found") is None else ("是" if r["assets_found"] else "否"),
            ]
            for r in data["triage"]["rules"]
        ],
    )


@deadlines_app.command("triage")
def deadlines_triage(
    home: HomeOpt,
    amount: Annotated[str | None, typer.Option(help="执行标的 in yuan.")] = None,
    parties: Annotated[int, typer.Option(min=1)] = 2,
    assets: Annotated[bool, typer.Option("--assets-found", help="立案即查 found assets.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Which track (简/繁) a case with these facts gets under this node's rules."""
    args: dict[str, Any] = {"parties": parties, "assets_found": assets}
    if amount is not None:
        args["amount_fen"] = yuan_to_fen(amount)
    data = call(Home(home), "deadlines.triage", args)
    if json_out:
        emit_json(data)
    else:
        console.print(f"{data['track']}案 ({escape(data['triage_rule'])})")


@deadlines_app.command("check")
def deadlines_check(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Run the periodic check now: track new cases, mark overdue nodes, raise supervision."""
    data = call(Home(home), "deadlines.tick")
    if json_out:
        emit_json(data)
    else:
        console.print(
            f"tracked {len(data['tracked'])}, completed {len(data['completed'])}, newly overdue "
            f"{len(data['overdue'])}, supervision raised {len(data['supervised'])}"
        )


# -- 终本 ---------------------------------------------------------------------------------------------

ItemOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--item",
        help="A checklist item attested: KEY (yes) or KEY=VALUE (dishonest=listed|criteria_not_met, "
        "debtor_whereabouts=known|searched, obstruction=none|sanctioned). Repeatable.",
    ),
]
ApplicantName = Annotated[str | None, typer.Option("--applicant-name", help="申请执行人 (told after each query).")]
ApplicantPhone = Annotated[str | None, typer.Option("--applicant-phone")]
AssetsNote = Annotated[str | None, typer.Option("--assets-note", help="Why the assets found cannot be disposed of.")]
ChecklistFile = Annotated[Path | None, typer.Option("--checklist-file", exists=True, help="JSON object of answers.")]


def _checklist_args(
    number: str,
    items: list[str] | None,
    name: str | None,
    phone: str | None,
    note: str | None,
    file: Path | None,
) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except ValueError as exc:
            fail(f"--checklist-file {file}: not JSON: {exc}")
        if not isinstance(loaded, dict):
            fail(f"--checklist-file {file}: must be a JSON object")
        answers.update(loaded)
    for item in items or []:
        key, sep, value = item.partition("=")
        answers[key.strip()] = value.strip() if sep else True
    if note:
        answers["assets_note"] = note
    args: dict[str, Any] = {"number": number, "checklist": answers}
    if name or phone:
        args["applicant"] = {"name": name or "", "phone": phone or ""}
    return args


def _print_checklist(items: list[dict[str, Any]]) -> None:
    table(
        "终本条件（《关于严格规范终结本次执行程序的规定（试行）》）",
        ["", "项目", "内容", "依据", "来源", "说明"],
        [["✓" if i["ok"] else "✗", i["item"], i["label"], i["basis"], i["source"], escape(i["why"])] for i in items],
    )


@conclude_app.command("check")
def conclude_check(
    home: HomeOpt,
    number: CaseArg,
    item: ItemOpt = None,
    applicant_name: ApplicantName = None,
    applicant_phone: ApplicantPhone = None,
    assets_note: AssetsNote = None,
    checklist_file: ChecklistFile = None,
    json_out: JsonOpt = False,
) -> None:
    """The art. 1 checklist for a case as it stands (nothing is stored)."""
    args = _checklist_args(number, item, applicant_name, applicant_phone, assets_note, checklist_file)
    data = call(Home(home), "conclude.check", args)
    if json_out:
        emit_json(data)
        return
    _print_checklist(data["items"])
    console.print("[green]可以终结本次执行程序[/]" if data["ok"] else "[red]不符合终本条件[/]")


@conclude_app.command("submit")
def conclude_submit(
    home: HomeOpt,
    number: CaseArg,
    item: ItemOpt = None,
    applicant_name: ApplicantName = None,
    applicant_phone: ApplicantPhone = None,
    assets_note: AssetsNote = None,
    checklist_file: ChecklistFile = None,
    json_out: JsonOpt = False,
) -> None:
    """Conclude the case for now (终本); refused with every missing item named."""
    args = _checklist_args(number, item, applicant_name, applicant_phone, assets_note, checklist_file)
    data = call(Home(home), "conclude.submit", args)
    if json_out:
        emit_json(data)
    else:
        console.print(f"[green]终结本次执行程序[/] {escape(number)}; next property query {data['next_inquiry']}")


@conclude_app.command("list")
def conclude_list(home: HomeOpt, subtree: SubtreeOpt = False, json_out: JsonOpt = False) -> None:
    """终本 cases, their follow-up and open 恢复执行 tasks (``--subtree``: every court below)."""
    data = call(Home(home), "conclude.list", {"subtree": subtree})
    if json_out:
        emit_json(data)
        return
    table(
        "终本案件",
        ["案号", "状态", "终本日期", "已查询", "下次查询", "恢复执行案号"],
        [
            [c["case_number"], c["state"], c["concluded_at"], c["rounds"], c["next_inquiry"], c["resume_case_number"]]
            for c in data["concluded"]
        ],
    )
    if data["resume_tasks"]:
        table(
            "恢复执行任务（执恢）",
            ["任务", "案号", "发现", "新财产"],
            [
                [t["task_id"], t["case_number"], t["raised_at"], "; ".join(str(a["asset_id"]) for a in t["assets"])]
                for t in data["resume_tasks"]
            ],
        )
    if subtree:
        table(
            f"下级法院终本后续查询 ({data['subtree_total']})",
            ["法院", "案号", "已查询", "下次查询", "恢复执行任务待办自"],
            [
                [f["court"], f["case_number"], f["rounds"], f["next_inquiry"], f["resume_task_open_since"] or ""]
                for f in data["subtree_followups"]
            ],
        )


@conclude_app.command("show")
def conclude_show(home: HomeOpt, number: CaseArg, json_out: JsonOpt = False) -> None:
    """A 终本 case: its checklist, each follow-up round (what the applicant was told), tasks."""
    data = call(Home(home), "conclude.show", {"number": number})
    if json_out:
        emit_json(data)
        return
    console.print(
        f"[bold]{escape(number)}[/]  {data['state']}  终本 {data['concluded_at']}  "
        f"next query {data['next_inquiry'] or '—'}  until {data['until']}"
    )
    table(
        "后续查询",
        ["次", "应查", "完成", "机构", "反馈", "新财产", "结果", "告知申请执行人"],
        [
            [
                r["round"],
                r["due"],
                r["completed_at"] or "查询中",
                r["inquiries"],
                r["answered"],
                len(r["new_assets"]),
                r["result"],
                escape(r["notice"] or ""),
            ]
            for r in data["rounds"]
        ],
    )


@conclude_app.command("resume")
def conclude_resume(
    home: HomeOpt,
    task: Annotated[str, typer.Argument(help="恢复执行 task id.")],
    number: Annotated[str, typer.Option("--number", help="The 执恢 case number, e.g. （2027）豫1402执恢3号.")],
    file: Annotated[bool, typer.Option("--file", help="File the 执恢 case here (立案即查 starts).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Resume enforcement (恢复执行) for a task: the follow-up of the 终本 case ends."""
    data = call(Home(home), "conclude.resume", {"task_id": task, "resume_number": number, "file": file})
    if json_out:
        emit_json(data)
    else:
        console.print(f"恢复执行 {escape(data['case_number'])} → {escape(data['resume_case_number'])}")


@conclude_app.command("dismiss")
def conclude_dismiss(
    home: HomeOpt,
    task: Annotated[str, typer.Argument(help="恢复执行 task id.")],
    reason: Annotated[str, typer.Option(help="Why the new assets cannot be disposed of.")],
    json_out: JsonOpt = False,
) -> None:
    """Dismiss a 恢复执行 task; the six-monthly follow-up goes on."""
    data = call(Home(home), "conclude.dismiss", {"task_id": task, "reason": reason})
    if json_out:
        emit_json(data)
    else:
        console.print(f"task {data['task_id']} dismissed")


@conclude_app.command("supervise")
def conclude_supervise(
    home: HomeOpt,
    number: CaseArg,
    text: Annotated[str | None, typer.Option(help="The 督办函 text.")] = None,
    reply_days: Annotated[int | None, typer.Option(min=1, max=90)] = None,
    json_out: JsonOpt = False,
) -> None:
    """An upper court supervises a 终本 case of a court below it (督办)."""
    args: dict[str, Any] = {"number": number, "text": text or "", "reply_days": reply_days}
    data = call(Home(home), "conclude.supervise", args)
    if json_out:
        emit_json(data)
    else:
        console.print(f"督办 {data['item_id']} → {data['court']} ({escape(data['case_number'])})")


@conclude_app.command("run")
def conclude_run(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Run the follow-up check now (start due queries, finish answered rounds)."""
    data = call(Home(home), "conclude.tick")
    if json_out:
        emit_json(data)
    else:
        console.print(f"rounds started {len(data['started'])}, completed {len(data['completed'])}")


# -- statistics --------------------------------------------------------------------------------------


def _flat(figures: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sorted(figures.items()):
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(_flat(value, name))
        else:
            out[name] = value
    return out


def stats(
    home: HomeOpt,
    subtree: SubtreeOpt = False,
    send: Annotated[bool, typer.Option("--send", help="Send this court's signed summary upward first.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Counts and durations of this court (``--subtree``: and of every court below, from their signed
    summaries aggregated level by level)."""
    data = call(Home(home), "stats.show", {"subtree": subtree, "send": send})
    if json_out:
        emit_json(data)
        return
    own = _flat(data["own"])
    if not subtree:
        table(f"{data['court']} {data['name']} 统计 ({data['at']})", ["项目", "本院"], [[k, v] for k, v in own.items()])
        return
    whole = _flat(data["subtree"])
    kids = {c: _flat(k["subtree"]) for c, k in sorted(data["children"].items())}
    table(
        f"{data['court']} {data['name']} 统计 ({data['at']}; {data['courts']} courts)",
        ["项目", "本院", *kids, "合计"],
        [[k, own.get(k, 0), *(kid.get(k, 0) for kid in kids.values()), v] for k, v in whole.items()],
    )
    for court, kid in sorted(data["children"].items()):
        console.print(f"{court} {kid['name']}: summary #{kid['seq']} of {kid['at']} ({kid['age_s']} s old)")


# -- bench ---------------------------------------------------------------------------------------------


def bench_tree(
    fanout: Annotated[int, typer.Option(min=1, max=6, help="Children per court: 1 + f + f² nodes.")] = 3,
    rounds: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    size: Annotated[int, typer.Option(min=0, max=65536, help="Directive body in bytes.")] = 1024,
    warmup: Annotated[int, typer.Option(min=0, max=100)] = 5,
    json_out: JsonOpt = False,
) -> None:
    """A directive broadcast from the root of a real-process tree until every receipt is back, vs the
    same fan-out with raw gRPC calls."""
    from hub.bench.tree import run

    result = run(fanout, rounds, size, warmup=warmup)
    if json_out:
        emit_json(result)
        return
    table("bench tree", ["figure", "value"], [[k, v] for k, v in result.items()])
    console.print(
        f"p99 {result['tree_p99_ms']} ms (target < {result['target_p99_ms']:.0f} ms); "
        f"ratio to raw gRPC p50 {result['ratio_p50']}x"
    )


def register(app: typer.Typer) -> None:
    from hub.cli.bench_cmds import bench_app

    app.add_typer(deadlines_app, name="deadlines")
    app.add_typer(conclude_app, name="conclude")
    app.command("stats")(stats)
    bench_app.command("tree")(bench_tree)
