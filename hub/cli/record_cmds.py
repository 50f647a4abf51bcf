"""Directives, case numbers and the audit chain."""

from __future__ import annotations

from typing import Annotated

import typer

from hub.audit import verify as verify_chain
from hub.cli.client import call, with_admin
from hub.cli.node_cmds import HomeOpt, JsonOpt
from hub.cli.output import console, emit_json, fail, table
from hub.clock import SystemClock
from hub.codes import CaseNumber, CourtCode
from hub.config import Home
from hub.federation.envelope import open_envelope
from hub.federation.topology import load_trust
from hub.proto.courthub.v1 import admin_pb2 as apb
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.provision import open_store
from hub.seal import verify as verify_seal
from hub.workflows.directives import LEVEL_NAMES, LEVELS

directive_app = typer.Typer(help="Directives (指令) from upper courts.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log (全程留痕).", no_args_is_help=True)
case_app = typer.Typer(help="Enforcement cases and case numbers (案号).", no_args_is_help=True)


@directive_app.command("send")
def directive_send(
    home: HomeOpt,
    to: Annotated[str, typer.Option("--to", help="Court code of the recipient (or subtree top with --subtree).")],
    title: Annotated[str, typer.Option(help="Title, e.g. 关于开展集中执行行动的通知.")],
    body: Annotated[str, typer.Option(help="Text of the directive.")],
    subtree: Annotated[bool, typer.Option("--subtree", help="Send to the court and every court below it.")] = False,
    level: Annotated[str, typer.Option(help=f"One of: {', '.join(LEVELS)}.")] = "routine",
    json_out: JsonOpt = False,
) -> None:
    """Send a directive to one court or a whole subtree."""
    code = CourtCode.parse(to)
    if level not in LEVELS:
        fail(f"--level {level!r} must be one of {', '.join(LEVELS)}")
    request = apb.SendDirectiveRequest(to=str(code), subtree=subtree, title=title, body=body, level=level)
    reply = with_admin(Home(home), lambda stub: stub.SendDirective(request, timeout=30))
    result = {"id": reply.envelope_id, "to": str(code), "subtree": subtree, "recipients": list(reply.recipients)}
    if json_out:
        emit_json(result)
    else:
        console.print(f"指令已发出 directive {reply.envelope_id} → {', '.join(reply.recipients) or code}")


@directive_app.command("list")
def directive_list(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Directives sent and received; for sent ones, each recipient's delivery state."""
    items = call(Home(home), "directive.list")
    if json_out:
        emit_json(items)
        return
    table(
        "指令 directives",
        ["id", "方向", "发文法院 origin", "to", "级别", "标题 title", "created", "received", "delivered"],
        [
            [
                i["id"][:12],
                "发出" if i["direction"] == "sent" else "收到",
                i["origin"],
                i["to"] + (" (辖区)" if i["subtree"] else ""),
                LEVEL_NAMES.get(i["level"], i["level"]),
                i["title"],
                i["created_at"],
                i["received_at"],
                f"{i['delivered']}/{len(i['recipients'])}" if i["direction"] == "sent" else "",
            ]
            for i in items
        ],
    )


@audit_app.command("verify")
def audit_verify(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Re-check the audit chain and every seal in it, offline; name the first bad entry."""
    h = Home(home)
    config = h.load()
    store = open_store(h, config)
    root = CourtCode.parse(config.trust.root or config.node.court)
    try:
        trust = store.read_sync(lambda conn: load_trust(conn, root, SystemClock()))

        def check(raw: bytes) -> None:
            opened = open_envelope(epb.Envelope.FromString(raw))
            key = trust.evidence_key(opened.origin)
            verify_seal(opened.envelope.seal, opened.envelope.header, key, kid=str(opened.origin))

        result = store.read_sync(lambda conn: verify_chain(conn, check))
    finally:
        store.close()
    data = {
        "ok": result.ok,
        "entries": result.entries,
        "seals_checked": result.seals_checked,
        "first_bad_entry": result.bad_seq,
        "problem": result.problem,
    }
    if json_out:
        emit_json(data)
    elif result.ok:
        console.print(f"[green]audit chain intact[/]: {result.entries} entries, {result.seals_checked} seals verified")
    else:
        console.print(f"[red]audit chain broken at entry {result.bad_seq}[/]: {result.problem}")
    if not result.ok:
        raise typer.Exit(1)


@case_app.command("parse")
def case_parse(
    text: Annotated[str, typer.Argument(help="案号, e.g. （2024）豫1402执123号")], json_out: JsonOpt = False
) -> None:
    """Parse and validate a case number (案号)."""
    case = CaseNumber.parse(text)
    data = {
        "case_number": str(case),
        "year": case.year,
        "court": str(case.court),
        "court_level": case.court.level.value,
        "type": case.type.value,
        "serial": case.serial,
    }
    if json_out:
        emit_json(data)
    else:
        console.print(f"{case}: year {case.year}, court {case.court}, type {case.type.value}, serial {case.serial}")
