"""Command-center commands (指挥中心): directives completed, reports, requests, petitions, duty,
notifications.

``court-hub directive issue|show|read|feedback|reconsider|decide|remind``, ``court-hub report
send|comment|forward|instruct|update|close|list|show``, ``court-hub request send|answer|remind|
withdraw|list|show``, ``court-hub petition send|accept|reply|remind|return|close|list|show``,
``court-hub duty set|signin|show``, ``court-hub notify list`` — all with ``--json``. Item ids may be
given as a unique prefix (at least 6 characters).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.client import call
from hub.cli.node_cmds import HomeOpt, JsonOpt
from hub.cli.output import console, emit_json, fail, table
from hub.config import Home
from hub.workflows.directives import LEVEL_NAMES, LEVELS
from hub.workflows.engine import MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS_BYTES

report_app = typer.Typer(help="执行要情 important-case reports, upward level by level.", no_args_is_help=True)
request_app = typer.Typer(help="事项请求 requests for instructions to an upper court.", no_args_is_help=True)
petition_app = typer.Typer(help="信访 petitions handed down by an upper court.", no_args_is_help=True)
duty_app = typer.Typer(help="值班 duty roster and sign-in of this court.", no_args_is_help=True)
notify_app = typer.Typer(help="Notifications (12368 SMS) sent for workflow events.", no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(metavar="ID", help="Item id, or a unique prefix of it (6+ characters).")]
TextOpt = Annotated[str, typer.Option("--text", help="Text.")]
ByOpt = Annotated[str, typer.Option("--by", help="The officer acting (default: the duty officer).")]

STATES = {
    "delivered": "已送达",
    "read": "已签收",
    "answered": "已反馈",
    "reminded": "已催报",
    "reconsidering": "复议中",
    "upheld": "维持原指令",
    "withdrawn": "已撤回",
    "reported": "已上报",
    "updated": "已续报",
    "commented": "已批注",
    "forwarded": "已转报",
    "instructed": "已批示",
    "closed": "已办结",
    "requested": "待答复",
    "handed_down": "已交办",
    "accepted": "已签收",
    "replied": "已答复",
    "returned": "退回重办",
    "escalated": "超期督办",
}


def _st(state: str) -> str:
    return f"{STATES.get(state, state)} {state}"


def _done(result: Any, json_out: bool, message: str) -> None:
    if json_out:
        emit_json(result)
    else:
        console.print(message)


def _step(home: Path, method: str, args: dict[str, Any], json_out: bool, what: str) -> None:
    result = call(Home(home), method, args)
    state = result.get("state", "") if isinstance(result, dict) else ""
    _done(result, json_out, f"{what}: {_st(state)}" if state else what)


def _yn(value: Any) -> str:
    return "✓" if value else ""


# -- directives ------------------------------------------------------------------------------------


def directive_issue(
    home: HomeOpt,
    to: Annotated[str, typer.Option("--to", help="Court code of the recipient (or subtree top with --subtree).")],
    title: Annotated[str, typer.Option(help="Title, e.g. 关于开展集中执行行动的通知.")],
    body: Annotated[str, typer.Option(help="Text of the directive.")],
    subtree: Annotated[bool, typer.Option("--subtree", help="Send to the court and every court below it.")] = False,
    level: Annotated[str, typer.Option(help=f"One of: {', '.join(LEVELS)}.")] = "routine",
    feedback_days: Annotated[
        float, typer.Option(help="Feedback deadline in days (0: by level — routine 10, urgent 3, emergency hours).")
    ] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Issue a directive with a feedback deadline; recipients' status: `directive show`."""
    if level not in LEVELS:
        fail(f"--level {level!r} must be one of {', '.join(LEVELS)}")
    args = {
        "to": to,
        "title": title,
        "body": body,
        "subtree": subtree,
        "level": level,
        "feedback_days": feedback_days,
    }
    r = call(Home(home), "directive.issue", args)
    _done(
        r,
        json_out,
        f"指令已发出 directive {r['id']} → {', '.join(r['recipients']) or r['to']}; "
        f"反馈期限 feedback due {r['feedback_due']}",
    )


def directive_show(home: HomeOpt, ident: IdArg, json_out: JsonOpt = False) -> None:
    """Per-recipient status table (issuer): delivered, read, answered, overdue, reminders."""
    d = call(Home(home), "directive.show", {"id": ident})
    if json_out:
        emit_json(d)
        return
    console.print(
        f"[bold]{d['title']}[/] ({LEVEL_NAMES.get(d['level'], d['level'])}) {d['id']} from {d['origin']} "
        f"[{'发文' if d['role'] == 'issuer' else '收文'}]"
    )
    table(
        "指令反馈情况 recipients",
        ["court", "state", "送达", "签收", "反馈", "按期", "逾期", "催报", "反馈期限", "feedback"],
        [
            [
                r["court"],
                _st(r["state"]),
                _yn(r["delivered"]),
                f"{_yn(r['read'])} {r['read_by'] or ''}",
                r["answered_at"] or "",
                "" if r["on_time"] is None else ("✓" if r["on_time"] else "✗"),
                _yn(r["overdue"]),
                r["reminders"] or "",
                r["feedback_due"],
                (r["feedback"] or {}).get("text", "")[:40]
                + (f" (+{len(r['feedback']['files'])} files)" if r["feedback"] and r["feedback"].get("files") else ""),
            ]
            for r in d["recipients"]
        ],
    )
    s = d["summary"]
    console.print(
        f"送达 {s['delivered']}/{s['recipients']}  签收 {s['read']}  反馈 {s['answered']} "
        f"(按期 {s['answered_on_time']})  逾期 {s['overdue']}  已催报 {s['reminded']}"
    )


def directive_read(home: HomeOpt, ident: IdArg, by: ByOpt = "", json_out: JsonOpt = False) -> None:
    """Sign for a directive received (签收)."""
    _step(home, "directive.read", {"id": ident, "by": by}, json_out, "已签收 read")


def _read_files(files: list[Path]) -> list[dict[str, str]]:
    total = 0
    out = []
    for f in files:
        if not f.is_file():
            fail(f"--file {f}: no such file")
        size = f.stat().st_size
        if size > MAX_ATTACHMENT_BYTES:
            fail(f"--file {f}: {size} bytes; an attachment may be at most {MAX_ATTACHMENT_BYTES} bytes")
        total += size
        out.append({"name": f.name, "content_b64": base64.b64encode(f.read_bytes()).decode()})
    if total > MAX_ATTACHMENTS_BYTES:
        fail(f"attachments total {total} bytes; the limit is {MAX_ATTACHMENTS_BYTES}")
    return out


def directive_feedback(
    home: HomeOpt,
    ident: IdArg,
    text: TextOpt,
    file: Annotated[list[Path] | None, typer.Option("--file", help="Attachment (repeatable).")] = None,
    by: ByOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Answer a directive (反馈) with text and attachments."""
    args = {"id": ident, "text": text, "files": _read_files(file or []), "by": by}
    _step(home, "directive.feedback", args, json_out, "已反馈 feedback sent")


def directive_reconsider(
    home: HomeOpt,
    ident: IdArg,
    reason: Annotated[str, typer.Option(help="Why the directive should be reconsidered.")],
    by: ByOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Ask the issuer to reconsider (申请复议) — within 5 days of delivery."""
    _step(home, "directive.reconsider", {"id": ident, "reason": reason, "by": by}, json_out, "已申请复议")


def directive_decide(
    home: HomeOpt,
    ident: IdArg,
    court: Annotated[str, typer.Option(help="The recipient court that asked.")],
    decision: Annotated[str, typer.Option(help="uphold (维持) or withdraw (撤回).")],
    reason: Annotated[str, typer.Option(help="The reasons of the decision.")],
    feedback_days: Annotated[float, typer.Option(help="New feedback deadline when upheld (days).")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Decide a reconsideration request (issuer)."""
    args = {"id": ident, "court": court, "decision": decision, "reason": reason, "feedback_days": feedback_days}
    _step(home, "directive.decide", args, json_out, f"复议决定 {decision}")


def directive_remind(
    home: HomeOpt,
    ident: IdArg,
    court: Annotated[str, typer.Option(help="One recipient (default: all that have not answered).")] = "",
    text: Annotated[str, typer.Option("--text", help="Note with the reminder.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """催报 by hand."""
    done = call(Home(home), "directive.remind", {"id": ident, "court": court, "text": text})
    _done(done, json_out, f"已催报 reminded: {', '.join(r['party'] for r in done) or '—'}")


def directive_attachment(
    home: HomeOpt,
    sha256: Annotated[str, typer.Argument(metavar="SHA256", help="The attachment's digest (or 8+ first digits).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write it here (default: its name, in .).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Save an attachment received with feedback (stored by digest)."""
    r = call(Home(home), "attachment.get", {"sha256": sha256})
    target = out or Path(r["name"])
    if target.exists():
        fail(f"{target} exists; choose another --out")
    target.write_bytes(base64.b64decode(r["content_b64"]))
    info = {k: r[k] for k in ("sha256", "name", "media_type", "size")} | {"saved_to": str(target)}
    _done(info, json_out, f"saved {r['name']} ({r['size']} bytes, sha256 {r['sha256'][:16]}…) → {target}")


# -- reports -----------------------------------------------------------------------------------------


@report_app.command("send")
def report_send(
    home: HomeOpt,
    title: Annotated[str, typer.Option(help="Title of the report.")],
    text: TextOpt,
    category: Annotated[
        str,
        typer.Option(help="violence, mass_incident, public_opinion, major_case, emergency or other."),
    ],
    urgency: Annotated[str, typer.Option(help="routine (一般), urgent (紧急) or critical (特急).")] = "routine",
    to: Annotated[str, typer.Option(help="A court above (default: the parent court).")] = "",
    case_number: Annotated[str, typer.Option("--case", help="案号, if the report concerns a case.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Report an important case or event upward (执行要情)."""
    args = {
        "title": title,
        "text": text,
        "category": category,
        "urgency": urgency,
        "to": to,
        "case_number": case_number,
    }
    r = call(Home(home), "report.send", args)
    _done(r, json_out, f"要情已上报 report {r['id']} → {r['to']} ({r['urgency']})")


def _report_step(action: str, label: str) -> Any:
    def cmd(home: HomeOpt, ident: IdArg, text: TextOpt, json_out: JsonOpt = False) -> None:
        _step(home, f"report.{action}", {"id": ident, "text": text}, json_out, label)

    cmd.__doc__ = f"{label} ({action})."
    return cmd


report_app.command("comment")(_report_step("comment", "批注 comment"))
report_app.command("instruct")(_report_step("instruct", "批示 instruction — flows back down to the reporter"))
report_app.command("update")(_report_step("update", "续报 follow-up — relayed up to every court that has it"))
report_app.command("close")(_report_step("close", "办结 close"))


@report_app.command("forward")
def report_forward(
    home: HomeOpt,
    ident: IdArg,
    note: Annotated[str, typer.Option(help="A note for the court above.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """转报上级: forward a report to the court above (urgent ones are forwarded by rule)."""
    _step(home, "report.forward", {"id": ident, "note": note}, json_out, "已转报 forwarded")


@report_app.command("list")
def report_list(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Reports sent, received and forwarded here."""
    items = call(Home(home), "report.list")
    if json_out:
        emit_json(items)
        return
    table(
        "执行要情 reports",
        ["id", "标题", "类别", "紧急程度", "报送法院", "路径", "state", "批示", "updated"],
        [
            [
                i["report_id"][:12],
                i["title"],
                i["category_name"],
                i["urgency_name"],
                i["reporter"],
                " → ".join([i["hops"][0]["from"], *(h["to"] for h in i["hops"])]),
                _st(i["state"]),
                len(i["instructions"]) or "",
                i["updated_at"],
            ]
            for i in items
        ],
    )


@report_app.command("show")
def report_show(home: HomeOpt, ident: IdArg, json_out: JsonOpt = False) -> None:
    """A report, its hops here and its history (comments, instructions, follow-ups)."""
    r = call(Home(home), "report.show", {"id": ident})
    if json_out:
        emit_json(r)
        return
    console.print(
        f"[bold]{r['title']}[/] {r['category_name']} {r['urgency_name']} — {r['reporter']} {r['reported_at']}"
    )
    console.print(r.get("text") or "")
    table(
        "经过 history",
        ["at", "step", "court", "by", "text"],
        [[e["at"], e["action"], e["actor"], e["data"].get("by", ""), e["data"].get("text", "")] for e in r["history"]],
    )


# -- requests and petitions --------------------------------------------------------------------------


@request_app.command("send")
def request_send(
    home: HomeOpt,
    title: Annotated[str, typer.Option(help="Title of the request.")],
    text: TextOpt,
    topic: Annotated[str, typer.Option(help="law, coordination, measure or other.")] = "other",
    answer_days: Annotated[int, typer.Option(help="Answer deadline in days (1–60).")] = 10,
    to: Annotated[str, typer.Option(help="A court above (default: the parent court).")] = "",
    case_number: Annotated[str, typer.Option("--case", help="案号, if it concerns a case.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Ask an upper court for instructions (事项请求)."""
    args = {
        "title": title,
        "text": text,
        "topic": topic,
        "answer_days": answer_days,
        "to": to,
        "case_number": case_number,
    }
    r = call(Home(home), "request.send", args)
    _done(r, json_out, f"事项请求已发出 request {r['id']} → {r['to']}")


@request_app.command("answer")
def request_answer(home: HomeOpt, ident: IdArg, text: TextOpt, json_out: JsonOpt = False) -> None:
    """Answer a request (答复) — the upper court."""
    _step(home, "request.answer", {"id": ident, "text": text}, json_out, "已答复 answered")


@request_app.command("remind")
def request_remind(home: HomeOpt, ident: IdArg, text: TextOpt = "", json_out: JsonOpt = False) -> None:
    """催办 by hand — the asking court."""
    _step(home, "request.remind", {"id": ident, "text": text}, json_out, "已催办 reminded")


@request_app.command("withdraw")
def request_withdraw(home: HomeOpt, ident: IdArg, text: TextOpt = "", json_out: JsonOpt = False) -> None:
    """Withdraw a request — the asking court."""
    _step(home, "request.withdraw", {"id": ident, "text": text}, json_out, "已撤回 withdrawn")


@petition_app.command("send")
def petition_send(
    home: HomeOpt,
    to: Annotated[str, typer.Option("--to", help="The court below that handles it.")],
    title: Annotated[str, typer.Option(help="Title of the petition case.")],
    text: TextOpt,
    petitioner: Annotated[str, typer.Option(help="The petitioner's name (信访人).")],
    phone: Annotated[str, typer.Option(help="The petitioner's phone: told by SMS when it is answered.")] = "",
    reply_days: Annotated[int, typer.Option(help="Reply deadline in days (1–90).")] = 30,
    case_number: Annotated[str, typer.Option("--case", help="案号, if it concerns a case.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Hand a petition case down (信访交办) with a reply deadline."""
    args = {
        "to": to,
        "title": title,
        "text": text,
        "petitioner": petitioner,
        "phone": phone,
        "reply_days": reply_days,
        "case_number": case_number,
    }
    r = call(Home(home), "petition.send", args)
    _done(r, json_out, f"信访件已交办 petition {r['id']} → {r['to']}")


@petition_app.command("accept")
def petition_accept(home: HomeOpt, ident: IdArg, by: ByOpt = "", json_out: JsonOpt = False) -> None:
    """Sign for a petition handed down (签收)."""
    _step(home, "petition.accept", {"id": ident, "by": by}, json_out, "已签收 accepted")


@petition_app.command("reply")
def petition_reply(home: HomeOpt, ident: IdArg, text: TextOpt, json_out: JsonOpt = False) -> None:
    """Reply to a petition (办理答复); the petitioner is told by SMS."""
    _step(home, "petition.reply", {"id": ident, "text": text}, json_out, "已答复 replied")


@petition_app.command("remind")
def petition_remind(home: HomeOpt, ident: IdArg, text: TextOpt = "", json_out: JsonOpt = False) -> None:
    """催办 by hand — the court that handed it down."""
    _step(home, "petition.remind", {"id": ident, "text": text}, json_out, "已催办 reminded")


@petition_app.command("return")
def petition_return(
    home: HomeOpt,
    ident: IdArg,
    reason: Annotated[str, typer.Option(help="Why the reply is not accepted.")],
    redo_days: Annotated[int, typer.Option(help="New deadline in days (1–90).")] = 15,
    json_out: JsonOpt = False,
) -> None:
    """Send a reply back to be redone (退回重办)."""
    args = {"id": ident, "reason": reason, "redo_days": redo_days}
    _step(home, "petition.return", args, json_out, "已退回重办 returned")


@petition_app.command("close")
def petition_close(home: HomeOpt, ident: IdArg, text: TextOpt = "", json_out: JsonOpt = False) -> None:
    """Close a petition case (结案)."""
    _step(home, "petition.close", {"id": ident, "text": text}, json_out, "已结案 closed")


def _list_cmd(workflow: str, title: str) -> Any:
    def cmd(home: HomeOpt, json_out: JsonOpt = False) -> None:
        items = call(Home(home), f"{workflow}.list")
        if json_out:
            emit_json(items)
            return
        table(
            title,
            ["id", "标题", "from", "to", "state", "期限 deadline", "逾期", "updated"],
            [
                [
                    i["id"][:12],
                    i["title"],
                    i["from"],
                    i["to"],
                    _st(i["state"]),
                    i["deadline"],
                    _yn(i["overdue"]),
                    i["updated_at"],
                ]
                for i in items
            ],
        )

    cmd.__doc__ = f"{title}: sent and received here."
    return cmd


def _show_cmd(workflow: str) -> Any:
    def cmd(home: HomeOpt, ident: IdArg, json_out: JsonOpt = False) -> None:
        r = call(Home(home), f"{workflow}.show", {"id": ident})
        if json_out:
            emit_json(r)
            return
        console.print(f"[bold]{r['title']}[/] {r['from']} → {r['to']}  {_st(r['state'])}  期限 {r['deadline'] or '—'}")
        console.print(r["data"].get("text", ""))
        table(
            "经过 history",
            ["at", "step", "court", "text"],
            [
                [e["at"], e["action"], e["actor"], e["data"].get("text") or e["data"].get("reason") or ""]
                for e in r["history"]
            ],
        )

    cmd.__doc__ = f"One {workflow} and its history."
    return cmd


request_app.command("list")(_list_cmd("request", "事项请求 requests"))
request_app.command("show")(_show_cmd("request"))
petition_app.command("list")(_list_cmd("petition", "信访交办 petitions"))
petition_app.command("show")(_show_cmd("petition"))


# -- duty and notifications --------------------------------------------------------------------------


def _officer_line(d: dict[str, Any] | None) -> str:
    if not d:
        return "今日无值班安排 nobody on duty today"
    signed = f"已签到 {d['signed_in_at']}" if d["signed_in"] else "未签到 not signed in"
    stand = f" (替班, rostered {d['rostered']})" if d.get("stand_in") else ""
    return f"值班 duty {d['date']}: {d['officer']} {d['phone']} — {signed}{stand}"


@duty_app.command("set")
def duty_set(
    home: HomeOpt,
    officer: Annotated[str, typer.Option(help="The duty officer's name.")],
    date: Annotated[str, typer.Option(help="YYYY-MM-DD (court time; default today).")] = "",
    phone: Annotated[str, typer.Option(help="Phone for notifications.")] = "",
    days: Annotated[int, typer.Option(help="Also the following days (1–31).")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Roster a duty officer (排班)."""
    r = call(Home(home), "duty.set", {"officer": officer, "date": date, "phone": phone, "days": days})
    _done(r, json_out, f"已排班 {r['officer']}: {', '.join(r['dates'])}")


@duty_app.command("signin")
def duty_signin(
    home: HomeOpt,
    officer: Annotated[str, typer.Option(help="The officer taking today's shift.")],
    phone: Annotated[str, typer.Option(help="Phone (default: the roster's).")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Sign in for today's shift (值班签到)."""
    r = call(Home(home), "duty.signin", {"officer": officer, "phone": phone})
    _done(r, json_out, _officer_line(r))


@duty_app.command("show")
def duty_show(
    home: HomeOpt,
    days: Annotated[int, typer.Option(help="Roster days to show from today.")] = 7,
    json_out: JsonOpt = False,
) -> None:
    """Today's duty officer, the roster ahead and recent sign-ins."""
    r = call(Home(home), "duty.show", {"days": days})
    if json_out:
        emit_json(r)
        return
    console.print(_officer_line(r["current"]))
    table(
        "值班表 roster",
        ["date", "officer", "phone"],
        [[x["date"], x["officer"], x.get("phone", "")] for x in r["roster"]],
    )
    table(
        "签到记录 sign-ins",
        ["at", "officer", "rostered", "替班"],
        [[x["at"], x["officer"], x.get("rostered") or "", _yn(x.get("stand_in"))] for x in r["signins"]],
    )


@notify_app.command("list")
def notify_list(
    home: HomeOpt,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Notifications recorded by the log notifier, with the plugins that sent them."""
    items = call(Home(home), "notify.list", {"limit": limit})
    if json_out:
        emit_json(items)
        return
    table(
        "通知 notifications",
        ["at", "event", "to", "channels", "failed", "text"],
        [
            [
                i["at"],
                i["event"],
                ", ".join(f"{r['name']} {r['phone']}" for r in i["recipients"]) or "—",
                ", ".join(i["channels"]),
                ", ".join(i["failed"]),
                i["text"][:60],
            ]
            for i in items
        ],
    )


def register(app: typer.Typer) -> None:
    """Add the command-center commands to the CLI."""
    from hub.cli.record_cmds import directive_app

    directive_app.command("issue")(directive_issue)
    directive_app.command("show")(directive_show)
    directive_app.command("read")(directive_read)
    directive_app.command("feedback")(directive_feedback)
    directive_app.command("reconsider")(directive_reconsider)
    directive_app.command("decide")(directive_decide)
    directive_app.command("remind")(directive_remind)
    directive_app.command("attachment")(directive_attachment)
    app.add_typer(report_app, name="report")
    app.add_typer(request_app, name="request")
    app.add_typer(petition_app, name="petition")
    app.add_typer(duty_app, name="duty")
    app.add_typer(notify_app, name="notify")
