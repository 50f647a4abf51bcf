"""终结本次执行程序 (终本): the art. 1 checklist, and the follow-up of art. 9.

最高人民法院《关于严格规范终结本次执行程序的规定（试行）》(2016). A case may be concluded "for now"
only when every item of art. 1 holds (and the applicant was told and heard, art. 5). The court
states the items it attests; the hub checks what it knows itself — the case was filed more than
three months ago (by the node's clock), the online inquiry (立案即查) has been answered by every
agency asked, assets it found are declared not disposable, the enforcement notice node is done —
and refuses with every missing item named (reason ``checklist_incomplete``; audit entry).

Afterwards, within five years, the hub queries the debtor's property again through every reachable
agency every six months on its own (the same inquiry as 立案即查, :mod:`hub.agency.service`), tells
the applicant the result (``courthub_notify`` plugins, 12368-style SMS; the text is kept with the
round), and when an agency reports an asset that was not known when the case was concluded it
raises a resume-enforcement task (恢复执行, case type 执恢) at the court. Filing the 执恢 case
(``conclude resume``) ends the follow-up; dismissing the task (assets not disposable) continues it.
Upper courts see every court's follow-ups in the signed summaries (:mod:`hub.workflows.stats`) and
may supervise one (``conclude supervise``: a 督办 item to the court of the case).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)

from hub.agency.schema import ANSWERED, PENDING, case_inquiries, cases
from hub.clock import iso
from hub.codes import CaseNumber, CaseType
from hub.errors import AuthorityError, InvalidInput, NotFound
from hub.federation.exchange import Tx
from hub.plugins.models import Notification, Recipient
from hub.store.schema import metadata
from hub.trust import below
from hub.workflows import deadlines
from hub.workflows.deadlines import add_months, case_number, day_text, spawn_loop, transact

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)

FOLLOWING, RESUMED, ENDED = "following", "resumed", "ended"

case_conclusions = Table(
    "case_conclusions",
    metadata,
    Column("case_number", String(64), primary_key=True),
    Column("court", String(16), nullable=False),
    Column("concluded_at_ms", BigInteger, nullable=False),
    Column("checklist", Text, nullable=False),  # JSON: the evaluated items
    Column("applicant", Text, nullable=False),  # JSON: {name, phone}
    Column("baseline_assets", Text, nullable=False),  # JSON list of asset keys known at conclusion
    Column("state", String(16), nullable=False),  # following | resumed | ended
    Column("rounds", Integer, nullable=False),
    Column("next_inquiry_at_ms", BigInteger, nullable=False),
    Column("followup_until_ms", BigInteger, nullable=False),
    Column("round_started_at_ms", BigInteger),  # a round is under way (NULL: none)
    Column("resume_case_number", String(64)),
    Column("updated_at_ms", BigInteger, nullable=False),
)
Index("ix_case_conclusions_due", case_conclusions.c.state, case_conclusions.c.next_inquiry_at_ms)

followup_rounds = Table(
    "followup_rounds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_number", String(64), nullable=False),
    Column("round", Integer, nullable=False),
    Column("due_at_ms", BigInteger, nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("requested", Boolean, nullable=False),  # the inquiries were queued
    Column("completed_at_ms", BigInteger),
    Column("inquiries", Integer),
    Column("answered", Integer),
    Column("assets_found", Integer),
    Column("new_assets", Text),  # JSON list of asset dicts
    Column("result", String(16)),  # new_assets | nothing_new | no_agency
    Column("notice", Text),  # what the applicant was told
    Column("notified_at_ms", BigInteger),
)
Index("ix_followup_rounds_case", followup_rounds.c.case_number, followup_rounds.c.round)

resume_tasks = Table(
    "resume_tasks",
    metadata,
    Column("task_id", String(32), primary_key=True),
    Column("case_number", String(64), nullable=False),
    Column("court", String(16), nullable=False),
    Column("round", Integer, nullable=False),
    Column("raised_at_ms", BigInteger, nullable=False),
    Column("assets", Text, nullable=False),  # JSON list of the new assets
    Column("state", String(16), nullable=False),  # open | filed | dismissed
    Column("resume_case_number", String(64)),  # the 执恢 case, once filed
    Column("done_at_ms", BigInteger),
    Column("note", Text),
)
Index("ix_resume_tasks_case", resume_tasks.c.case_number)


# -- the art. 1 checklist ------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    key: str
    label: str
    basis: str
    choices: Mapping[str, str] | None = None  # None: a yes/no attestation
    auto: bool = False  # checked by the hub, not attested


CHECKLIST: tuple[Item, ...] = (
    Item("notice_served", "已向被执行人发出执行通知书", "第1条第1项"),
    Item("report_order_served", "已责令被执行人报告财产（报告财产令已送达）", "第1条第1项"),
    Item("report_checked", "已核查被执行人的财产报告（拒不报告的已依法处理）", "第1条第1项"),
    Item("consumption_restricted", "已向被执行人发出限制消费令", "第1条第2项"),
    Item(
        "dishonest",
        "符合条件的已纳入失信被执行人名单",
        "第1条第2项",
        {"listed": "已纳入失信被执行人名单", "criteria_not_met": "不符合纳入条件"},
    ),
    Item("investigation_exhausted", "已穷尽财产调查措施，未发现可供执行的财产或发现的财产不能处置", "第1条第3项"),
    Item("online_inquiry", "网络查控已完成：每个被查询机构均已反馈", "第1条第3项、第3条", auto=True),
    Item("assets_not_disposable", "网络查控发现的财产不能处置（须说明理由）", "第1条第3项", auto=True),
    Item("three_months", "自立案之日起已超过三个月", "第1条第4项", auto=True),
    Item(
        "debtor_whereabouts",
        "被执行人下落不明的，已依法予以查找",
        "第1条第5项",
        {"known": "被执行人下落明确", "searched": "下落不明，已依法查找"},
    ),
    Item(
        "obstruction",
        "妨害执行的，已依法采取罚款、拘留等强制措施（构成犯罪的已启动刑事追究）",
        "第1条第5项",
        {"none": "无妨害执行行为", "sanctioned": "已依法处置"},
    ),
    Item("applicant_heard", "已告知申请执行人并听取其对终本的意见", "第5条"),
    Item("applicant", "申请执行人姓名及联系电话（每次查询结果的告知对象）", "第9条", auto=True),
)
ITEMS = {i.key: i for i in CHECKLIST}


def asset_key(agency: str, asset: Mapping[str, Any]) -> str:
    return f"{agency}:{asset.get('kind', '')}:{asset.get('asset_id', '')}"


def _assets(conn: Connection, number: str, since_ms: int | None = None) -> tuple[dict[str, dict[str, Any]], int, int]:
    """Assets in the answers to this case's inquiries (requested since ``since_ms``) by key; the
    number of inquiries and of answered ones."""
    q = select(
        case_inquiries.c.agency, case_inquiries.c.status, case_inquiries.c.result, case_inquiries.c.served_by
    ).where(case_inquiries.c.case_number == number)
    if since_ms is not None:
        q = q.where(case_inquiries.c.requested_at_ms >= since_ms)
    found: dict[str, dict[str, Any]] = {}
    total = answered = 0
    for r in conn.execute(q).all():
        total += 1
        if r.status != ANSWERED:
            continue
        answered += 1
        try:
            result = json.loads(r.result or "{}") or {}
        except ValueError:
            continue
        for a in result.get("assets") or []:
            if isinstance(a, dict):
                found[asset_key(r.agency, a)] = {
                    "agency": r.agency,
                    "kind": a.get("kind"),
                    "asset_id": a.get("asset_id"),
                    "institution": a.get("institution", ""),
                    "amount_fen": a.get("amount_fen"),
                }
    return found, total, answered


def evaluate(
    conn: Connection, node: Node, number: str, answers: Mapping[str, Any], applicant: Mapping[str, Any] | None, now: int
) -> list[dict[str, Any]]:
    """Every checklist item with ``ok`` and, when not, why — nothing is written."""
    case = conn.execute(select(cases).where(cases.c.case_number == number)).first()
    if case is None:
        raise NotFound(f"no case {number} at {node.me}: 终本 follow-up needs the case filed here (court-hub case file)")
    out: list[dict[str, Any]] = []

    def put(item: Item, ok: bool, value: Any, why: str = "", source: str = "attested") -> None:
        out.append(
            {
                "item": item.key,
                "label": item.label,
                "basis": item.basis,
                "ok": ok,
                "value": value,
                "source": source,
                "why": "" if ok else why,
            }
        )

    notice_done = conn.execute(
        select(deadlines.case_nodes.c.id).where(
            deadlines.case_nodes.c.case_number == number,
            deadlines.case_nodes.c.node == "notice",
            deadlines.case_nodes.c.done_at_ms.is_not(None),
        )
    ).first()
    found, total, answered = _assets(conn, number)
    pending = conn.execute(
        select(func.count())
        .select_from(case_inquiries)
        .where(case_inquiries.c.case_number == number, case_inquiries.c.status == PENDING)
    ).scalar_one()
    three = add_months(case.filed_at_ms, 3)
    for item in CHECKLIST:
        value = answers.get(item.key)
        if item.key == "notice_served" and notice_done is not None and value is None:
            put(item, True, True, source="case node 'notice' done")
        elif item.key == "online_inquiry":
            if total == 0:
                put(item, False, None, "no online inquiry was made for this case (no agency reachable?)", "hub")
            elif pending:
                put(item, False, None, f"{pending} of {total} agency inquiries have not been answered yet", "hub")
            elif answered == 0:
                put(
                    item, False, None, f"none of the {total} agency inquiries was answered (failed or timed out)", "hub"
                )
            else:
                put(item, True, f"{answered}/{total} answered", source="hub")
        elif item.key == "assets_not_disposable":
            if not found:
                put(item, True, "no assets found", source="hub")
            else:
                note = str(answers.get("assets_note", "")).strip()
                ok = value is True and bool(note)
                why = (
                    f"the online inquiry found {len(found)} asset(s); attest assets_not_disposable "
                    "with the reason in assets_note"
                )
                put(item, ok, {"assets": len(found), "note": note}, why, "hub+attested")
        elif item.key == "three_months":
            put(
                item,
                now > three,
                iso(case.filed_at_ms),
                f"filed {day_text(case.filed_at_ms)}; allowed after {day_text(three)}",
                "hub",
            )
        elif item.key == "applicant":
            why = "give the applicant's name and phone (applicant.name, applicant.phone)"
            try:
                if not applicant:
                    raise InvalidInput(why)
                r = Recipient(str(applicant.get("name", "")), str(applicant.get("phone", "")), "party")
                put(item, True, r.to_dict(), source="given")
            except InvalidInput as exc:
                put(item, False, None, exc.message if applicant else why, "given")
        elif item.choices is not None:
            ok = value in item.choices
            put(item, ok, value, f"answer one of: {', '.join(f'{k} ({v})' for k, v in item.choices.items())}")
        else:
            put(item, value is True, value, "not attested (true required)")
    return out


def missing_text(items: list[dict[str, Any]]) -> str:
    missing = [i for i in items if not i["ok"]]
    return "; ".join(f"{n}. {i['item']} {i['label']} — {i['why']}" for n, i in enumerate(missing, 1))


# -- the service ---------------------------------------------------------------------------------

_NODES: weakref.WeakKeyDictionary[Node, Conclusions] = weakref.WeakKeyDictionary()


def of(node: Node) -> Conclusions:
    found = _NODES.get(node)
    if found is None:
        raise NotFound(f"终本 follow-up is not set up on {node.me}")
    return found


class Conclusions:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def settings(self) -> deadlines.CaseMgmtSettings:
        return deadlines.settings(self.node)

    def _spawn(self, coro: Any) -> None:
        if self.node.stopping.is_set():  # nothing new once the node is stopping
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- concluding ----------------------------------------------------------------------------
    async def check(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``conclude.check``: the checklist evaluated, nothing stored."""
        number = case_number(args.get("number"))
        now = self.node.clock.now_ms()
        items = await self.node.store.read(
            lambda c: evaluate(c, self.node, number, _answers(args), _applicant(args), now)
        )
        return {"case_number": number, "ok": all(i["ok"] for i in items), "items": items}

    async def submit(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``conclude.submit``: conclude the case for now, or refuse naming what is missing."""
        number = case_number(args.get("number"))
        if CaseNumber.parse(number).court != self.node.me:
            raise AuthorityError(f"case {number} is not a case of {self.node.me}", reason="wrong_court")
        answers, applicant = _answers(args), _applicant(args)
        me = str(self.node.me)
        follow = self.settings.followup

        def fn(tx: Tx) -> dict[str, Any]:
            conn, now = tx.conn, tx.now_ms
            if conn.execute(select(case_conclusions).where(case_conclusions.c.case_number == number)).first():
                raise InvalidInput(f"case {number} is already concluded for now (终本)", reason="already_concluded")
            items = evaluate(conn, self.node, number, answers, applicant, now)
            if not all(i["ok"] for i in items):
                missing = [i["item"] for i in items if not i["ok"]]
                tx.audit.append(
                    "conclude_refused",
                    now,
                    origin=me,
                    detail={"case_number": number, "reason": "checklist_incomplete", "missing": missing},
                )
                return {"ok": False, "items": items}
            baseline, _, _ = _assets(conn, number)
            conn.execute(
                insert(case_conclusions).values(
                    case_number=number,
                    court=me,
                    concluded_at_ms=now,
                    checklist=json.dumps(items, ensure_ascii=False),
                    applicant=json.dumps(dict(applicant or {}), ensure_ascii=False),
                    baseline_assets=json.dumps(sorted(baseline), ensure_ascii=False),
                    state=FOLLOWING,
                    rounds=0,
                    next_inquiry_at_ms=add_months(now, follow.interval_months),
                    followup_until_ms=add_months(now, 12 * follow.years),
                    updated_at_ms=now,
                )
            )
            tracker = deadlines.of(self.node)
            tracker.ensure_tracked(tx, number)
            done = tracker.complete_in(tx, number, "concluded", now, "终结本次执行程序")
            detail = {"case_number": number, "next_inquiry": iso(add_months(now, follow.interval_months))}
            tx.audit.append("case_concluded_for_now", now, origin=me, detail={**detail, "nodes_done": done})
            tx.events.append(("case.concluded_for_now", detail))
            return {"ok": True, "items": items, **detail}

        result = await transact(self.node, fn)
        if not result["ok"]:
            raise InvalidInput(
                f"终本 refused for {number}: {missing_text(result['items'])}", reason="checklist_incomplete"
            )
        self.wake.set()
        return {"case_number": number, "concluded": True, **result}

    # -- follow-up -----------------------------------------------------------------------------
    async def tick(self) -> dict[str, Any]:
        """Start the rounds that are due, finish the rounds whose answers are all in."""
        async with self._lock:
            started = await self._start_due()
            completed = await self._complete_rounds()
        return {"started": started, "completed": completed}

    async def _start_due(self) -> list[dict[str, Any]]:
        now = self.node.clock.now_ms()

        def claim(tx: Tx) -> list[tuple[str, int, bool]]:
            out: list[tuple[str, int, bool]] = []
            # Rounds claimed earlier whose inquiries were never queued (a crash in between).
            for r in tx.conn.execute(
                select(followup_rounds.c.case_number, followup_rounds.c.id).where(
                    followup_rounds.c.requested.is_(False), followup_rounds.c.completed_at_ms.is_(None)
                )
            ).all():
                out.append((r.case_number, r.id, False))
            due = tx.conn.execute(
                select(case_conclusions)
                .where(
                    case_conclusions.c.state == FOLLOWING,
                    case_conclusions.c.round_started_at_ms.is_(None),
                    case_conclusions.c.next_inquiry_at_ms <= tx.now_ms,
                )
                .limit(100)
            ).all()
            for c in due:
                rid = tx.conn.execute(
                    insert(followup_rounds).values(
                        case_number=c.case_number,
                        round=c.rounds + 1,
                        due_at_ms=c.next_inquiry_at_ms,
                        started_at_ms=tx.now_ms,
                        requested=False,
                    )
                ).inserted_primary_key
                assert rid is not None
                tx.conn.execute(
                    update(case_conclusions)
                    .where(case_conclusions.c.case_number == c.case_number)
                    .values(round_started_at_ms=tx.now_ms, updated_at_ms=tx.now_ms)
                )
                tx.audit.append(
                    "followup_round_started",
                    tx.now_ms,
                    origin=str(self.node.me),
                    detail={"case_number": c.case_number, "round": c.rounds + 1, "due": iso(c.next_inquiry_at_ms)},
                )
                out.append((c.case_number, int(rid[0]), True))
            return out

        claimed = await transact(self.node, claim)
        started = []
        for number, rid, _fresh in claimed:
            try:
                queued = await self.node.agency.start_inquiries(number, again=True)
            except Exception as exc:
                log.warning("终本 follow-up of %s: inquiries not started: %s", number, exc)
                continue

            def mark(tx: Tx, rid: int = rid) -> None:
                tx.conn.execute(update(followup_rounds).where(followup_rounds.c.id == rid).values(requested=True))

            await transact(self.node, mark)
            started.append({"case_number": number, "round_id": rid, "local": len(queued), "at": iso(now)})
        return started

    async def _complete_rounds(self) -> list[dict[str, Any]]:
        me = str(self.node.me)
        follow = self.settings.followup
        court_name = self.node.config.node.name
        notices: list[Notification] = []

        def fn(tx: Tx) -> list[dict[str, Any]]:
            conn, now = tx.conn, tx.now_ms
            out = []
            rounds = conn.execute(
                select(followup_rounds).where(
                    followup_rounds.c.requested.is_(True), followup_rounds.c.completed_at_ms.is_(None)
                )
            ).all()
            for r in rounds:
                pending = conn.execute(
                    select(func.count())
                    .select_from(case_inquiries)
                    .where(
                        case_inquiries.c.case_number == r.case_number,
                        case_inquiries.c.requested_at_ms >= r.started_at_ms,
                        case_inquiries.c.status == PENDING,
                    )
                ).scalar_one()
                if pending:
                    continue
                c = conn.execute(select(case_conclusions).where(case_conclusions.c.case_number == r.case_number)).one()
                case = conn.execute(select(cases).where(cases.c.case_number == r.case_number)).one()
                found, total, answered = _assets(conn, r.case_number, r.started_at_ms)
                known = set(json.loads(c.baseline_assets))
                for prev in conn.execute(
                    select(followup_rounds.c.new_assets).where(
                        followup_rounds.c.case_number == r.case_number, followup_rounds.c.new_assets.is_not(None)
                    )
                ).scalars():
                    known.update(asset_key(a["agency"], a) for a in json.loads(prev))
                new = [a for k, a in sorted(found.items()) if k not in known]
                result = "no_agency" if total == 0 else "new_assets" if new else "nothing_new"
                applicant = json.loads(c.applicant)
                notice = _notice(court_name, applicant, r.case_number, case.party_name, r.round, now, total, new)
                conn.execute(
                    update(followup_rounds)
                    .where(followup_rounds.c.id == r.id)
                    .values(
                        completed_at_ms=now,
                        inquiries=total,
                        answered=answered,
                        assets_found=len(found),
                        new_assets=json.dumps(new, ensure_ascii=False),
                        result=result,
                        notice=notice,
                        notified_at_ms=now,
                    )
                )
                k = r.round + 1
                nxt = add_months(c.concluded_at_ms, follow.interval_months * k)
                while nxt <= now:  # rounds missed while the node was down are not made up one by one
                    k += 1
                    nxt = add_months(c.concluded_at_ms, follow.interval_months * k)
                ended = nxt > c.followup_until_ms
                conn.execute(
                    update(case_conclusions)
                    .where(case_conclusions.c.case_number == r.case_number)
                    .values(
                        rounds=r.round,
                        round_started_at_ms=None,
                        next_inquiry_at_ms=nxt,
                        state=ENDED if ended and c.state == FOLLOWING else c.state,
                        updated_at_ms=now,
                    )
                )
                detail: dict[str, Any] = {
                    "case_number": r.case_number,
                    "round": r.round,
                    "result": result,
                    "inquiries": total,
                    "answered": answered,
                    "new_assets": len(new),
                    "next_inquiry": None if ended else iso(nxt),
                }
                tx.audit.append("followup_round_done", now, origin=me, detail=detail)
                tx.events.append(("case.followup_done", detail))
                if new:
                    task_id = uuid.uuid4().hex
                    conn.execute(
                        insert(resume_tasks).values(
                            task_id=task_id,
                            case_number=r.case_number,
                            court=me,
                            round=r.round,
                            raised_at_ms=now,
                            assets=json.dumps(new, ensure_ascii=False),
                            state="open",
                        )
                    )
                    task = {"task_id": task_id, "case_number": r.case_number, "case_type": CaseType.RESUMED.value}
                    tx.audit.append("resume_task_raised", now, origin=me, detail={**task, "assets": len(new)})
                    tx.events.append(("case.resume_task", {**task, "assets": new}))
                    detail["resume_task"] = task_id
                if applicant:
                    notices.append(
                        Notification(
                            notification_id=f"zb-{r.id}-{now}",
                            recipients=(Recipient(str(applicant["name"]), str(applicant["phone"]), "party"),),
                            text=notice,
                            case_number=r.case_number,
                            created_at_ms=now,
                        )
                    )
                out.append(detail)
            return out

        done = await transact(self.node, fn)
        for n in notices:
            log.info("12368 notice to %s: %s", n.recipients[0].name, n.text)
            self._spawn(self._notify(n))
        return done

    async def _notify(self, notification: Notification) -> None:
        for outcome in await self.node.agency.host.notify(notification):
            if not outcome.ok:
                log.warning("notice %s not sent by %s: %s", notification.notification_id, outcome.plugin, outcome)

    # -- 恢复执行 --------------------------------------------------------------------------------
    async def resume(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``conclude.resume``: the 执恢 case is filed for an open task; the follow-up ends.
        With ``file``, the hub files it (same respondent): 立案即查 and case-node deadlines start."""
        task_id = str(args.get("task_id", ""))
        resume_number = CaseNumber.parse(str(args.get("resume_number", "")).strip())
        if resume_number.type is not CaseType.RESUMED:
            raise InvalidInput(f"{resume_number} is not a 恢复执行 case number (type 执恢)")
        if resume_number.court != self.node.me:
            raise InvalidInput(f"{resume_number} belongs to {resume_number.court}, not {self.node.me}")
        me = str(self.node.me)

        def fn(tx: Tx) -> dict[str, Any]:
            task = tx.conn.execute(select(resume_tasks).where(resume_tasks.c.task_id == task_id)).first()
            if task is None:
                raise NotFound(f"no 恢复执行 task {task_id!r} at {me}")
            if task.state != "open":
                raise InvalidInput(f"task {task_id} is {task.state}", reason="wrong_state")
            tx.conn.execute(
                update(resume_tasks)
                .where(resume_tasks.c.task_id == task_id)
                .values(state="filed", resume_case_number=str(resume_number), done_at_ms=tx.now_ms)
            )
            tx.conn.execute(
                update(case_conclusions)
                .where(case_conclusions.c.case_number == task.case_number)
                .values(state=RESUMED, resume_case_number=str(resume_number), updated_at_ms=tx.now_ms)
            )
            detail = {"case_number": task.case_number, "resume_case_number": str(resume_number), "task_id": task_id}
            tx.audit.append("enforcement_resumed", tx.now_ms, origin=me, detail=detail)
            tx.events.append(("case.resumed", detail))
            case = tx.conn.execute(select(cases).where(cases.c.case_number == task.case_number)).one()
            return {**detail, "party": case.party_name, "id_number": case.id_no, "id_type": case.id_type}

        result = await transact(self.node, fn)
        if args.get("file"):
            filed = await self.node.agency.file_case(
                {
                    "number": str(resume_number),
                    "party": result["party"],
                    "id_number": result["id_number"],
                    "id_type": result["id_type"],
                    "amount_fen": args.get("amount_fen"),
                }
            )
            result["filed"] = filed.get("case", {}).get("case_number")
        return result

    async def dismiss(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``conclude.dismiss``: the new assets cannot be disposed of; the follow-up goes on."""
        task_id = str(args.get("task_id", ""))
        reason = str(args.get("reason", "")).strip()
        if not reason:
            raise InvalidInput("a reason is required to dismiss a 恢复执行 task")

        def fn(tx: Tx) -> dict[str, Any]:
            changed = tx.conn.execute(
                update(resume_tasks)
                .where(resume_tasks.c.task_id == task_id, resume_tasks.c.state == "open")
                .values(state="dismissed", done_at_ms=tx.now_ms, note=reason[:2000])
            ).rowcount
            if not changed:
                raise NotFound(f"no open 恢复执行 task {task_id!r} at {self.node.me}")
            tx.audit.append("resume_task_dismissed", tx.now_ms, origin=str(self.node.me), detail={"task_id": task_id})
            return {"task_id": task_id, "state": "dismissed"}

        return await transact(self.node, fn)

    async def supervise(self, args: dict[str, Any]) -> dict[str, Any]:
        """Admin ``conclude.supervise``: an upper court supervises a 终本 case (or its 恢复执行) of a
        court below it — a 督办 item with a reply deadline."""
        number = case_number(args.get("number"))
        court = CaseNumber.parse(number).court
        if not below(court, self.node.me):
            raise AuthorityError(
                f"{self.node.me} may supervise only courts below it; {court} is not", reason="wrong_direction"
            )
        text = str(args.get("text") or f"请报告{number}终本案件后续查询及恢复执行情况。")
        data: dict[str, Any] = {"text": text}
        if args.get("reply_days"):
            data["reply_days"] = int(args["reply_days"])
        item = await self.node.workflows.create(
            "supervision", [court], f"终本案件督办：{number}", data, case_number=number
        )
        return {"item_id": item, "court": str(court), "case_number": number}

    # -- reading -----------------------------------------------------------------------------------
    def followup_rows(self, conn: Connection, limit: int) -> tuple[list[dict[str, Any]], int]:
        where = case_conclusions.c.state == FOLLOWING
        total = conn.execute(select(func.count()).select_from(case_conclusions).where(where)).scalar_one()
        rows = conn.execute(
            select(case_conclusions).order_by(case_conclusions.c.next_inquiry_at_ms).where(where).limit(limit)
        ).all()
        open_tasks = dict(
            conn.execute(
                select(resume_tasks.c.case_number, func.min(resume_tasks.c.raised_at_ms))
                .where(resume_tasks.c.state == "open")
                .group_by(resume_tasks.c.case_number)
            ).all()
        )
        out = [
            {
                "court": c.court,
                "case_number": c.case_number,
                "concluded_at": iso(c.concluded_at_ms),
                "rounds": c.rounds,
                "next_inquiry_at_ms": c.next_inquiry_at_ms,
                "next_inquiry": iso(c.next_inquiry_at_ms),
                "until": iso(c.followup_until_ms),
                "resume_task_open_since": iso(open_tasks[c.case_number]) if c.case_number in open_tasks else None,
            }
            for c in rows
        ]
        return out, int(total)

    async def list_all(self, args: dict[str, Any]) -> dict[str, Any]:
        def read(conn: Connection) -> dict[str, Any]:
            rows = conn.execute(
                select(case_conclusions).order_by(case_conclusions.c.concluded_at_ms.desc()).limit(500)
            ).all()
            tasks = conn.execute(select(resume_tasks).where(resume_tasks.c.state == "open")).all()
            return {
                "concluded": [
                    {
                        "court": c.court,
                        "case_number": c.case_number,
                        "state": c.state,
                        "concluded_at": iso(c.concluded_at_ms),
                        "rounds": c.rounds,
                        "next_inquiry": iso(c.next_inquiry_at_ms) if c.state == FOLLOWING else None,
                        "resume_case_number": c.resume_case_number,
                    }
                    for c in rows
                ],
                "resume_tasks": [_task(t) for t in tasks],
            }

        out: dict[str, Any] = {"court": str(self.node.me), **await self.node.store.read(read)}
        if args.get("subtree"):
            from hub.workflows import stats

            reported = await stats.of(self.node).child_lists("followups")
            out["subtree_followups"] = reported["items"]
            out["subtree_total"] = reported["total"]
            out["reported"] = reported["courts"]
        return out

    async def show(self, args: dict[str, Any]) -> dict[str, Any]:
        number = case_number(args.get("number"))

        def read(conn: Connection) -> dict[str, Any]:
            c = conn.execute(select(case_conclusions).where(case_conclusions.c.case_number == number)).first()
            if c is None:
                raise NotFound(f"case {number} is not concluded for now (终本) at {self.node.me}")
            rounds = conn.execute(
                select(followup_rounds).where(followup_rounds.c.case_number == number).order_by(followup_rounds.c.id)
            ).all()
            tasks = conn.execute(select(resume_tasks).where(resume_tasks.c.case_number == number)).all()
            return {
                "case_number": number,
                "court": c.court,
                "state": c.state,
                "concluded_at": iso(c.concluded_at_ms),
                "checklist": json.loads(c.checklist),
                "applicant": json.loads(c.applicant),
                "baseline_assets": json.loads(c.baseline_assets),
                "rounds_done": c.rounds,
                "next_inquiry": iso(c.next_inquiry_at_ms) if c.state == FOLLOWING else None,
                "until": iso(c.followup_until_ms),
                "resume_case_number": c.resume_case_number,
                "rounds": [
                    {
                        "round": r.round,
                        "due": iso(r.due_at_ms),
                        "started_at": iso(r.started_at_ms),
                        "completed_at": iso(r.completed_at_ms) if r.completed_at_ms else None,
                        "inquiries": r.inquiries,
                        "answered": r.answered,
                        "assets_found": r.assets_found,
                        "new_assets": json.loads(r.new_assets) if r.new_assets else [],
                        "result": r.result,
                        "notice": r.notice,
                    }
                    for r in rounds
                ],
                "resume_tasks": [_task(t) for t in tasks],
            }

        return await self.node.store.read(read)


def _task(t: Any) -> dict[str, Any]:
    return {
        "task_id": t.task_id,
        "case_number": t.case_number,
        "case_type": CaseType.RESUMED.value,
        "court": t.court,
        "round": t.round,
        "raised_at": iso(t.raised_at_ms),
        "assets": json.loads(t.assets),
        "state": t.state,
        "resume_case_number": t.resume_case_number,
        "note": t.note,
    }


def _notice(
    court_name: str,
    applicant: Mapping[str, Any],
    number: str,
    debtor: str,
    round_no: int,
    now: int,
    total: int,
    new: list[dict[str, Any]],
) -> str:
    head = f"【{court_name}】{applicant.get('name', '申请执行人')}：您申请执行的{number}案件已终结本次执行程序。"
    when = f"本院于{day_text(now)}对被执行人{debtor}的财产进行了第{round_no}次网络查询"
    if total == 0:
        return f"{head}{when}，但暂无可查询的协助执行单位，本院将按期再行查询。"
    if not new:
        return f"{head}{when}（{total}家单位），未发现新的可供执行财产，本院将每六个月查询一次。"
    listed = "、".join(
        f"{a.get('institution') or a['agency']}{a.get('kind', '')}{a.get('asset_id', '')}" for a in new[:5]
    )
    more = f"等{len(new)}项" if len(new) > 5 else ""
    return f"{head}{when}（{total}家单位），发现新财产：{listed}{more}。本院将依法审查恢复执行。"


def _answers(args: Mapping[str, Any]) -> dict[str, Any]:
    value = args.get("checklist") or {}
    if not isinstance(value, Mapping):
        raise InvalidInput("checklist must be an object of item → answer")
    unknown = sorted(set(value) - set(ITEMS) - {"assets_note"})
    if unknown:
        raise InvalidInput(f"unknown checklist items {unknown}; items: {', '.join(ITEMS)}")
    return dict(value)


def _applicant(args: Mapping[str, Any]) -> dict[str, Any] | None:
    value = args.get("applicant")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput("applicant must be an object {name, phone}")
    return {"name": str(value.get("name", "")), "phone": str(value.get("phone", ""))}


def setup(node: Node) -> None:
    svc = Conclusions(node)
    _NODES[node] = svc
    deadlines.state(node).services["conclude"] = svc
    for name, op in {
        "conclude.check": svc.check,
        "conclude.submit": svc.submit,
        "conclude.list": svc.list_all,
        "conclude.show": svc.show,
        "conclude.resume": svc.resume,
        "conclude.dismiss": svc.dismiss,
        "conclude.supervise": svc.supervise,
        "conclude.tick": lambda args: svc.tick(),
    }.items():
        node.admin.register(name, op)
    spawn_loop(node, "zhongben-followup", svc.tick, lambda: svc.settings.check_interval_s, svc.wake)
