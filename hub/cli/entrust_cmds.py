"""``court-hub entrust …`` (事项委托) and ``court-hub approval …`` (远程电子签章审批).

Each command calls one admin operation of the running node (``entrust.*``, ``approval.*``); item
ids may be shortened to a unique prefix of at least 6 characters. ``--json`` prints the result as
the node returned it.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.agency_cmds import yuan, yuan_to_fen
from hub.cli.client import call
from hub.cli.node_cmds import HomeOpt, JsonOpt
from hub.cli.output import console, emit_json, fail, table
from hub.config import Home

entrust_app = typer.Typer(help="Entrusted matters between courts (事项委托).", no_args_is_help=True)
approval_app = typer.Typer(help="Sealed approvals by an upper court (远程电子签章审批).", no_args_is_help=True)

ItemArg = Annotated[str, typer.Argument(help="Item id (or a unique prefix of at least 6 characters).")]
FilesOpt = Annotated[
    list[Path] | None, typer.Option("--file", help="Attach a file (repeatable; ≤256 KB each).", exists=True)
]

STATES = {
    "submitted": "已提交",
    "register_overdue": "逾期未登记",
    "registered": "已登记",
    "in_progress": "办理中",
    "material_requested": "待补充材料",
    "material_lapsed": "逾期未补充",
    "returning": "退回中",
    "return_overdue": "逾期未退回",
    "returned": "已退回",
    "completed": "已办结",
    "escalated": "已报请共同上级",
    "withdrawn": "已撤回",
    "requested": "待审批",
    "approved": "已批准",
    "denied": "不予批准",
}
LEVELS = {"national": "最高人民法院", "high": "高级人民法院", "intermediate": "中级人民法院", "basic": "基层人民法院"}
ITEMS = {"inquire": "查询", "freeze": "冻结", "seal": "查封", "investigate": "调查", "serve": "送达"}


def _files(paths: list[Path] | None) -> list[dict[str, str]]:
    out = []
    for path in paths or []:
        content = path.read_bytes()
        if len(content) > 256 * 1024:
            fail(f"--file {path}: {len(content)} bytes; the limit is 262144 (256 KB)")
        out.append({"name": path.name, "content_b64": base64.b64encode(content).decode()})
    return out


def _call(home: Path, method: str, args: dict[str, Any]) -> Any:
    return call(Home(home), method, args)


def _state(state: str) -> str:
    return f"{STATES.get(state, state)} {state}"


def _print_matter(m: dict[str, Any]) -> None:
    console.print(f"[bold]{m['title']}[/]  {m['item_id']}")
    console.print(
        f"委托法院 {m['entrusting']} → 受托法院 {m['entrusted']}  事项 {ITEMS.get(m['item'] or '', m['item'])}  "
        f"案号 {m['case_number']}"
    )
    deadline = f"  期限 {m['deadline']}" + ("（已逾期）" if m["overdue"] else "") if m["deadline"] else ""
    console.print(f"状态 {_state(m['state'])}{deadline}")
    data = m.get("data", {})
    if data.get("amount_fen"):
        console.print(f"金额 {yuan(int(data['amount_fen']))}")
    for key, label in (
        ("material_request", "需补充材料"),
        ("return_reason", "退回理由"),
        ("return_explanation", "书面说明"),
        ("escalated_to", "已报请"),
        ("result", "办理结果"),
    ):
        if data.get(key):
            console.print(f"{label}：{data[key]}")
    if m.get("events"):
        table(
            "经过 history",
            ["时间", "法院", "步骤", "状态"],
            [[e["at"], e["actor"], e["action"], f"{e['from'] or ''} → {e['to']}"] for e in m["events"]],
        )


def _done(result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit_json(result)
    else:
        _print_matter(result)


# -- entrust ---------------------------------------------------------------------------------------


@entrust_app.command("create")
def entrust_create(
    home: HomeOpt,
    to: Annotated[str, typer.Option("--to", help="The entrusted court's code, e.g. 豫0102.")],
    item: Annotated[str, typer.Option("--item", help="inquire, freeze, seal, investigate or serve.")],
    case: Annotated[str, typer.Option("--case", help="This court's case number (案号).")],
    subject_name: Annotated[str, typer.Option("--subject-name", help="被执行人 name.")] = "",
    id_number: Annotated[str, typer.Option("--id-number", help="被执行人 ID number.")] = "",
    agency: Annotated[str, typer.Option(help="Agency for inquire/freeze/seal (bank, land …).")] = "",
    asset: Annotated[str, typer.Option(help="Account, 不动产权证号, plate number …")] = "",
    amount: Annotated[str, typer.Option("--amount", help="Amount to freeze, in yuan.")] = "",
    term_days: Annotated[int | None, typer.Option("--term-days", help="Term of a new measure.")] = None,
    measure_expiry: Annotated[
        str,
        typer.Option(
            "--measure-expiry",
            help="Expiry of an existing freeze/seal handed over (YYYY-MM-DD); under one month left is refused.",
        ),
    ] = "",
    text: Annotated[str, typer.Option(help="The letter's requirements (委托函).")] = "",
    title: Annotated[str, typer.Option(help="Title (default: item and case).")] = "",
    files: FilesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Entrust a matter to another court (routed via the common superior court)."""
    args: dict[str, Any] = {"to": to, "item": item, "case_number": case, "text": text, "files": _files(files)}
    if subject_name or id_number:
        args.update(subject_name=subject_name, id_number=id_number)
    for key, value in (("agency", agency), ("asset", asset), ("title", title), ("measure_expiry", measure_expiry)):
        if value:
            args[key] = value
    if amount:
        args["amount_fen"] = yuan_to_fen(amount)
    if term_days is not None:
        args["term_days"] = term_days
    _done(_call(home, "entrust.create", args), json_out)


@entrust_app.command("register")
def entrust_register(
    home: HomeOpt,
    item: ItemArg,
    handler: Annotated[str, typer.Option(help="承办人.")] = "",
    phone: Annotated[str, typer.Option(help="承办人 phone.")] = "",
    note: Annotated[str, typer.Option(help="Remark.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Register a matter received (within 7 days)."""
    _done(
        _call(home, "entrust.register", {"item_id": item, "handler": handler, "phone": phone, "note": note}), json_out
    )


@entrust_app.command("request-material")
def entrust_request_material(
    home: HomeOpt,
    item: ItemArg,
    text: Annotated[str, typer.Option(help="What is missing.")],
    json_out: JsonOpt = False,
) -> None:
    """Ask the entrusting court for missing material (it has 30 days)."""
    _done(_call(home, "entrust.request_material", {"item_id": item, "text": text}), json_out)


@entrust_app.command("supply")
def entrust_supply(
    home: HomeOpt,
    item: ItemArg,
    text: Annotated[str, typer.Option(help="What is supplied.")],
    files: FilesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Supply the material asked for (the matter goes back where it was)."""
    _done(_call(home, "entrust.supply", {"item_id": item, "text": text, "files": _files(files)}), json_out)


@entrust_app.command("return")
def entrust_return(
    home: HomeOpt,
    item: ItemArg,
    reason: Annotated[str, typer.Option(help="Why the matter is returned.")],
    approval_item: Annotated[
        str, typer.Option("--approval-item", help="The approved `approval` request (entrust_return) of the high court.")
    ] = "",
    approval: Annotated[str, typer.Option(help="Or the sealed decision token itself.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Return a matter (needs the high court's approval; then 15 days to hand the papers back)."""
    args: dict[str, Any] = {"item_id": item, "reason": reason}
    if approval_item:
        args["approval_item"] = approval_item
    if approval:
        args["approval"] = approval
    _done(_call(home, "entrust.return", args), json_out)


@entrust_app.command("hand-back")
def entrust_hand_back(
    home: HomeOpt,
    item: ItemArg,
    text: Annotated[str, typer.Option(help="The written explanation (书面说明).")],
    files: FilesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Hand the letter and file back to the entrusting court (after an approved return)."""
    _done(_call(home, "entrust.hand_back", {"item_id": item, "text": text, "files": _files(files)}), json_out)


@entrust_app.command("progress")
def entrust_progress(
    home: HomeOpt,
    item: ItemArg,
    note: Annotated[str, typer.Option(help="What was done.")] = "",
    via_agency: Annotated[
        bool, typer.Option("--via-agency", help="Run it through this court's own agency plugin (freeze/seal/inquire).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Record progress — or, with --via-agency, have this court's plugins do the work."""
    if via_agency:
        _done(_call(home, "entrust.execute", {"item_id": item}), json_out)
    else:
        _done(_call(home, "entrust.progress", {"item_id": item, "note": note}), json_out)


@entrust_app.command("complete")
def entrust_complete(
    home: HomeOpt,
    item: ItemArg,
    result: Annotated[str, typer.Option(help="The result (办理结果).")],
    files: FilesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Complete a matter with its result (attachments: receipts, rulings served …)."""
    _done(_call(home, "entrust.complete", {"item_id": item, "result": result, "files": _files(files)}), json_out)


@entrust_app.command("escalate")
def entrust_escalate(home: HomeOpt, item: ItemArg, json_out: JsonOpt = False) -> None:
    """Report an overdue matter to the common superior court (automatic after six months)."""
    _done(_call(home, "entrust.escalate", {"item_id": item}), json_out)


@entrust_app.command("withdraw")
def entrust_withdraw(
    home: HomeOpt, item: ItemArg, reason: Annotated[str, typer.Option(help="Why.")], json_out: JsonOpt = False
) -> None:
    """Withdraw a matter this court entrusted."""
    _done(_call(home, "entrust.withdraw", {"item_id": item, "reason": reason}), json_out)


@entrust_app.command("list")
def entrust_list(
    home: HomeOpt,
    state: Annotated[str, typer.Option(help="Only this state.")] = "",
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue matters.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Matters this court entrusted or was entrusted with."""
    rows = _call(home, "entrust.list", {"state": state, "overdue": overdue})
    if json_out:
        emit_json(rows)
        return
    table(
        "事项委托 entrusted matters",
        ["id", "方向", "委托法院", "受托法院", "事项", "案号", "状态", "期限"],
        [
            [
                r["item_id"][:12],
                "委托" if r["role"] == "entrusting" else "受托",
                r["entrusting"],
                r["entrusted"],
                ITEMS.get(r["item"] or "", r["item"]),
                r["case_number"],
                _state(r["state"]),
                (r["deadline"] or "") + (" 逾期" if r["overdue"] else ""),
            ]
            for r in rows
        ],
    )


@entrust_app.command("show")
def entrust_show(home: HomeOpt, item: ItemArg, json_out: JsonOpt = False) -> None:
    """One matter with its history at this court."""
    _done(_call(home, "entrust.show", {"item_id": item}), json_out)


# -- approvals -------------------------------------------------------------------------------------


@approval_app.command("request")
def approval_request(
    home: HomeOpt,
    action: Annotated[str, typer.Option(help="border_control (边控), location (定位), renewal, entrust_return …")],
    case: Annotated[str, typer.Option("--case", help="Case number (案号).")],
    subject_id: Annotated[str, typer.Option("--subject-id", help="The person's ID number (or the matter's id).")],
    reason: Annotated[str, typer.Option(help="Why the action is needed.")],
    subject_name: Annotated[str, typer.Option("--subject-name")] = "",
    to: Annotated[str, typer.Option("--to", help="Approving court (default: the configured level above).")] = "",
    ttl_days: Annotated[int, typer.Option("--ttl-days", help="How long an approval stays valid.")] = 7,
    term_days: Annotated[int | None, typer.Option("--term-days", help="Term of the measure asked for.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Ask the court at the configured level for a sealed approval."""
    args: dict[str, Any] = {
        "action": action,
        "case_number": case,
        "subject_id": subject_id,
        "reason": reason,
        "ttl_days": ttl_days,
    }
    for key, value in (("subject_name", subject_name), ("to", to), ("term_days", term_days)):
        if value:
            args[key] = value
    result = _call(home, "approval.request", args)
    if json_out:
        emit_json(result)
        return
    level = LEVELS.get(result["required_level"], result["required_level"])
    console.print(f"审批请求已报送 {result['to']}（{result['action']}，由{level}审批）：{result['item_id']}")
    if result.get("warning"):
        console.print(f"[yellow]注意：{result['warning']}[/]")


@approval_app.command("decide")
def approval_decide(
    home: HomeOpt,
    item: ItemArg,
    approve: Annotated[bool, typer.Option("--approve/--deny", help="Approve or deny.")],
    reason: Annotated[str, typer.Option(help="Reason (required to deny).")] = "",
    ttl_days: Annotated[int | None, typer.Option("--ttl-days", help="Validity of the approval.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Decide a request addressed to this court; the decision is sealed with this court's key."""
    args: dict[str, Any] = {"item_id": item, "approve": approve, "reason": reason}
    if ttl_days is not None:
        args["ttl_days"] = ttl_days
    result = _call(home, "approval.decide", args)
    if json_out:
        emit_json(result)
        return
    console.print(f"{_state(result['state'])}  决定编号 {result.get('decision_id', '')}")
    console.print(result["token"], soft_wrap=True)


@approval_app.command("withdraw")
def approval_withdraw(
    home: HomeOpt, item: ItemArg, reason: Annotated[str, typer.Option(help="Why.")] = "", json_out: JsonOpt = False
) -> None:
    """Withdraw a request this court made."""
    result = _call(home, "approval.withdraw", {"item_id": item, "reason": reason})
    if json_out:
        emit_json(result)
    else:
        console.print(f"{result['item_id']}: {_state(result['state'])}")


@approval_app.command("list")
def approval_list(
    home: HomeOpt, state: Annotated[str, typer.Option(help="Only this state.")] = "", json_out: JsonOpt = False
) -> None:
    """Requests this court made or must decide."""
    rows = _call(home, "approval.list", {"state": state})
    if json_out:
        emit_json(rows)
        return
    table(
        "电子签章审批 approvals",
        ["id", "方向", "请求法院", "审批法院", "事项", "案号", "对象", "状态", "决定编号"],
        [
            [
                r["item_id"][:12],
                "请求" if r["role"] == "requester" else "审批",
                r["requester"],
                r["approver"],
                r["action"],
                r["case_number"],
                r["subject_id"],
                _state(r["state"]),
                (r["decision_id"] or "")[:12],
            ]
            for r in rows
        ],
    )


@approval_app.command("show")
def approval_show(
    home: HomeOpt,
    item: ItemArg,
    token: Annotated[bool, typer.Option("--token", help="Print only the sealed token (for a plugin).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """One request, its decision (verified against the tree's certificates) and history."""
    result = _call(home, "approval.show", {"item_id": item})
    if token:
        if not result.get("token"):
            fail(f"approval {item} has no decision yet")
        print(result["token"])
        return
    if json_out:
        emit_json(result)
        return
    row = result["item"]
    console.print(f"[bold]{row['title']}[/]  {row['item_id']}")
    console.print(f"{row['issuer']} → {row['party']}  {row['data'].get('action')}  {_state(row['state'])}")
    verified = result.get("verified")
    if verified:
        if "error" in verified:
            console.print(f"[red]签章校验失败：{verified['error']}[/]")
        else:
            console.print(f"签章有效：{verified['approver']} 决定编号 {verified['decision_id']}")
    table(
        "经过 history",
        ["时间", "法院", "步骤", "状态"],
        [[e["at"], e["actor"], e["action"], f"{e['from'] or ''} → {e['to']}"] for e in result["events"]],
    )


@approval_app.command("levels")
def approval_levels(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Which level decides each action at this node (<home>/approvals.toml overrides the defaults)."""
    levels = _call(home, "approval.levels", {})
    if json_out:
        emit_json(levels)
        return
    table("审批层级 approval levels", ["action", "level"], [[a, lvl] for a, lvl in levels.items()])


def register(app: typer.Typer) -> None:
    app.add_typer(entrust_app, name="entrust")
    app.add_typer(approval_app, name="approval")
