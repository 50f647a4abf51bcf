"""``court-hub supervise …``: 督办 — an upper court supervises one case at a lower court."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from hub.cli.client import call
from hub.cli.node_cmds import HomeOpt, JsonOpt
from hub.cli.output import console, emit_json, table
from hub.codes import CaseNumber, CourtCode
from hub.config import Home
from hub.workflows.supervision import ESCALATIONS

supervise_app = typer.Typer(help="督办 supervision of a case at a lower court.", no_args_is_help=True)

STATES = {"issued": "已督办", "reminded": "已催报", "replied": "已回复", "escalated": "已升级", "closed": "已办结"}


def _show_row(row: dict[str, Any]) -> None:
    console.print(
        f"督办 {row['item_id']}  {escape(row['title'])}  {row['issuer']} → {row['party']}  "
        f"{STATES.get(row['state'], row['state'])}  期限 {row.get('deadline') or '—'}"
    )


@supervise_app.command("send")
def send(
    home: HomeOpt,
    to: Annotated[str, typer.Option("--to", help="The lower court that handles the case.")],
    case: Annotated[str, typer.Option("--case", help="案号 of the supervised case.")],
    text: Annotated[str, typer.Option(help="What the upper court asks for.")] = "",
    reply_days: Annotated[int, typer.Option(min=1, max=90, help="Reply deadline in days.")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Issue a supervision letter (督办函) for one case."""
    number = str(CaseNumber.parse(case))
    court = CourtCode.parse(to)
    result = call(
        Home(home),
        "workflow.create",
        {
            "workflow": "supervision",
            "parties": [str(court)],
            "title": f"关于{number}案件的督办函",
            "data": {"text": text, "reply_days": reply_days},
            "case_number": number,
        },
    )
    if json_out:
        emit_json(result)
    else:
        console.print(f"督办函已发出 {result['item_id']} → {court}，{reply_days} 日内回复")


def _act(home: HomeOpt, item: str, party: str, action: str, data: dict[str, Any], json_out: bool) -> None:
    row = call(Home(home), "workflow.act", {"item_id": item, "party": party, "action": action, "data": data})
    if json_out:
        emit_json(row)
    else:
        _show_row({**row, "deadline": None})


@supervise_app.command("reply")
def reply(
    home: HomeOpt,
    item: Annotated[str, typer.Argument(help="Supervision item id.")],
    text: Annotated[str, typer.Option(help="The lower court's reply.")],
    party: Annotated[str, typer.Option(help="This court's code (the supervised court).")],
    json_out: JsonOpt = False,
) -> None:
    """Reply to a supervision letter (the supervised court)."""
    _act(home, item, str(CourtCode.parse(party)), "reply", {"text": text}, json_out)


@supervise_app.command("escalate")
def escalate(
    home: HomeOpt,
    item: Annotated[str, typer.Argument(help="Supervision item id.")],
    party: Annotated[str, typer.Option(help="The supervised court.")],
    option: Annotated[str, typer.Option(help=f"One of {', '.join(ESCALATIONS)}.")] = "调卷",
    court: Annotated[str, typer.Option(help="With 指定: the court designated to take over.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Record an escalation decision: 调卷, 提级 or 指定 (the supervising court)."""
    data: dict[str, Any] = {"option": option}
    if court:
        data["court"] = court
    _act(home, item, str(CourtCode.parse(party)), "escalate", data, json_out)


@supervise_app.command("close")
def close(
    home: HomeOpt,
    item: Annotated[str, typer.Argument(help="Supervision item id.")],
    party: Annotated[str, typer.Option(help="The supervised court.")],
    json_out: JsonOpt = False,
) -> None:
    """Close a supervision after the reply (the supervising court)."""
    _act(home, item, str(CourtCode.parse(party)), "close", {}, json_out)


@supervise_app.command("list")
def list_items(
    home: HomeOpt,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only items past their deadline.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Supervisions this court issued or received."""
    rows = call(Home(home), "workflow.list", {"workflow": "supervision", "overdue": overdue})
    if json_out:
        emit_json(rows)
        return
    table(
        "督办 supervision",
        ["id", "案号", "督办法院", "承办法院", "状态", "期限", "超期"],
        [
            [
                r["item_id"][:12],
                r["case_number"],
                r["issuer"],
                r["party"],
                STATES.get(r["state"], r["state"]),
                r["deadline"],
                "是" if r["overdue"] else "",
            ]
            for r in rows
        ],
    )


@supervise_app.command("show")
def show(
    home: HomeOpt, item: Annotated[str, typer.Argument(help="Supervision item id.")], json_out: JsonOpt = False
) -> None:
    """One supervision with its full history at this court."""
    data = call(Home(home), "workflow.show", {"item_id": item})
    if json_out:
        emit_json(data)
        return
    for row in data["items"]:
        _show_row(row)
    table(
        "经过 history",
        ["时间", "步骤", "由", "从", "到"],
        [[e["at"], e["action"], e["actor"], e["from"], e["to"]] for e in data["events"]],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(supervise_app, name="supervise")
