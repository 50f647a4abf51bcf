"""Sealed approvals (远程电子签章审批): requests that need an upper court's decision.

Some actions may only be taken with an upper court's sealed approval (seed 000: 不动产续封、边控等
申请和审批): border exit control (边控), telecom location (定位), designated renewals (续封/续冻
that the province reserves to an upper court), and the return of an entrusted matter (委托执行规定
第十一条: 受托法院退回委托的，应当层报所在辖区高级人民法院审批). Each action has a level that decides it
(:data:`DEFAULT_LEVELS`, overridable per node in ``<home>/approvals.toml``)::

    [levels]
    border_control = "high"          # 边控: the high court of the province
    location = "intermediate"        # 定位: the intermediate (city) court

A request travels up as an ``approval`` workflow item from the requesting court to the court at
the configured level above it (or to a court named explicitly); the decision comes back as the
item's ``approve`` or ``deny`` step, carrying a **decision token**: a compact JWS (EdDSA, PyJWT)
signed with the deciding court's own key, with the claims the agencies' verifier
(:mod:`plugins.agency.approval`) checks — ``iss`` (deciding court), ``sub`` (case number), ``act``,
``subject_id``, ``exp``, ``jti`` (= the decision id) — plus ``req`` (requesting court), ``lvl``
(the decider's level), ``item`` (the request) and ``decision``. A denial carries ``denied_act``
instead of ``act``, so no agency can ever take it for an approval.

Who may decide is checked three times: by the deciding court before it seals (a court below the
level refuses with a clear error and an audit entry), by both ends when the step is applied
(:func:`verify_decision` against the tree's certificates: the approver's chain, its level, that it
sits above the requester), and by the executing agency with its own trusted keys.
"""

from __future__ import annotations

import json
import tomllib
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from sqlalchemy import Connection, select, update

from hub.clock import Clock
from hub.codes import CaseNumber, CourtCode, CourtLevel
from hub.errors import AuthorityError, ConfigError, CourtHubError, InvalidCode, InvalidInput, NotFound, TrustError
from hub.trust import TrustStore, below
from hub.workflows.engine import Data, Relation, Step, WorkflowSpec, WorkflowTx, clear
from hub.workflows.schema import workflow_items
from plugins.agency.approval import ApprovalClaims, ApprovalError

if TYPE_CHECKING:
    from hub.node import Node

DAY_S = 86_400
TOKEN_TYPE = "court-approval+jwt"  # noqa: S105 - not a secret: the header type plugins.agency.approval.make_approval uses

#: Which level decides each action unless ``<home>/approvals.toml`` says otherwise.
DEFAULT_LEVELS: dict[str, CourtLevel] = {
    "border_control": CourtLevel.HIGH,  # 边控: 高级人民法院
    "location": CourtLevel.INTERMEDIATE,  # 定位: 中级人民法院
    "renewal": CourtLevel.INTERMEDIATE,  # 指定续封/续冻: 中级人民法院
    "entrust_return": CourtLevel.HIGH,  # 退回委托: 受托法院所在辖区高级人民法院 (委托执行规定第十一条)
}
ACTION_NAMES = {
    "border_control": "边控",
    "location": "定位",
    "renewal": "续封续冻",
    "entrust_return": "退回委托",
}
LEVEL_NAMES = {
    CourtLevel.NATIONAL: "最高人民法院",
    CourtLevel.HIGH: "高级人民法院",
    CourtLevel.INTERMEDIATE: "中级人民法院",
    CourtLevel.BASIC: "基层人民法院",
}
MAX_TTL_DAYS = 365
MIN_PREFIX = 6


# -- levels ----------------------------------------------------------------------------------------


def load_levels(path: Any) -> dict[str, CourtLevel]:
    """The defaults, overridden by ``[levels]`` of a TOML file when it exists."""
    levels = dict(DEFAULT_LEVELS)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return levels
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML: {exc}") from None
    section = doc.get("levels", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [levels] must be a table of action = level")
    for action, value in section.items():
        if not isinstance(action, str) or not action.replace("_", "").isalnum() or len(action) > 32:
            raise ConfigError(f"{path}: [levels] action name {action!r} is not allowed")
        try:
            levels[action] = CourtLevel(str(value))
        except ValueError:
            raise ConfigError(
                f"{path}: [levels] {action} = {value!r}: expected one of {', '.join(v.value for v in CourtLevel)}"
            ) from None
    return levels


def required_level(action: str, levels: Mapping[str, CourtLevel] | None = None) -> CourtLevel:
    table = levels if levels is not None else DEFAULT_LEVELS
    level = table.get(action)
    if level is None:
        raise InvalidInput(f"no approval action {action!r}; known: {', '.join(sorted(table))}", reason="unknown_action")
    return level


def may_decide(court: CourtCode, level: CourtLevel) -> bool:
    """A court decides an action reserved to ``level`` when it sits at that level or above."""
    return court.level.depth <= level.depth


def approver_for(requester: CourtCode, action: str, levels: Mapping[str, CourtLevel] | None = None) -> CourtCode:
    """The court a request goes to: the requester's ancestor at the configured level, or — when the
    requester already sits at or above that level — its parent (nobody approves its own request)."""
    level = required_level(action, levels)
    for court in requester.ancestors():
        if court.level == level:
            return court
    parent = requester.parent
    if parent is None:
        raise AuthorityError(f"{requester} has no upper court to approve {action}", reason="no_approver")
    return parent


def _level_text(level: CourtLevel) -> str:
    return f"{LEVEL_NAMES[level]} ({level.value})"


# -- decision tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """A verified decision token."""

    token: str
    decision: str  # approved | denied
    approver: CourtCode
    requester: CourtCode
    action: str
    case_number: str
    subject_id: str
    decision_id: str
    item_id: str
    issued_at_s: int
    expires_at_s: int
    reason: str

    @property
    def approved(self) -> bool:
        return self.decision == "approved"

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "approver": str(self.approver),
            "requester": str(self.requester),
            "action": self.action,
            "case_number": self.case_number,
            "subject_id": self.subject_id,
            "decision_id": self.decision_id,
            "item_id": self.item_id,
            "issued_at_s": self.issued_at_s,
            "expires_at_s": self.expires_at_s,
            "reason": self.reason,
        }


def seal_decision(
    node: Node,
    *,
    approved: bool,
    requester: CourtCode,
    action: str,
    case_number: str,
    subject_id: str,
    item_id: str,
    ttl_days: int,
    reason: str = "",
    now_ms: int,
) -> str:
    """Seal a decision with this court's key (the token format of :mod:`plugins.agency.approval`)."""
    now_s = now_ms // 1000
    claims: dict[str, Any] = {
        "iss": str(node.me),
        "sub": case_number,
        "subject_id": subject_id,
        "iat": now_s,
        "exp": now_s + ttl_days * DAY_S,
        "jti": uuid.uuid4().hex,
        "req": str(requester),
        "lvl": node.me.level.value,
        "item": item_id,
        "decision": "approved" if approved else "denied",
    }
    claims["act" if approved else "denied_act"] = action
    if reason:
        claims["reason"] = reason[:2000]
    return jwt.encode(claims, node.key.private, algorithm="EdDSA", headers={"typ": TOKEN_TYPE, "kid": str(node.me)})


def _text_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise TrustError(f"decision token: claim {name!r} missing or not text", reason="bad_decision")
    return value


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TrustError(f"decision token: claim {name!r} missing or not a number", reason="bad_decision")
    return value


def verify_decision(
    token: str,
    trust: TrustStore,
    *,
    levels: Mapping[str, CourtLevel] | None = None,
    now_ms: int | None = None,
    action: str | None = None,
    subject_id: str | None = None,
    case_number: str | None = None,
    requester: CourtCode | None = None,
    approver: CourtCode | None = None,
) -> Decision:
    """Verify a decision token against the tree's certificates.

    Checks the seal with the approver's key from ``trust`` (its certificate chain to the root,
    validity and revocation), that the approver sits at the level the action needs and above the
    requesting court, and — when given — that action, subject, case, requester and approver match
    and that an approval has not expired at ``now_ms``. Raises TrustError (bad or unverifiable
    token, reason ``bad_decision``/``approval_expired``/the trust reason) or AuthorityError
    (``wrong_level``, ``not_above_requester``, ``wrong_approver``).
    """
    if not token:
        raise TrustError("no decision token", reason="bad_decision")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TrustError(f"decision token is not a JWS: {exc}", reason="bad_decision") from None
    if header.get("typ") != TOKEN_TYPE or header.get("alg") != "EdDSA":
        raise TrustError(f"decision token must be an EdDSA {TOKEN_TYPE}", reason="bad_decision")
    try:
        issuer = CourtCode.parse(_text_claim(unverified, "iss"))
    except InvalidCode as exc:
        raise TrustError(f"decision token: {exc}", reason="bad_decision") from None
    if header.get("kid") not in (None, str(issuer)):
        raise TrustError("decision token: kid and iss name different courts", reason="bad_decision")
    key = trust.public_key(issuer)  # the approver's chain: unknown, revoked, expired → TrustError
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
        )
    except jwt.InvalidSignatureError:
        raise TrustError(f"decision token: the seal of {issuer} does not verify", reason="bad_seal") from None
    except jwt.PyJWTError as exc:
        raise TrustError(f"decision token: {exc}", reason="bad_decision") from None
    decision = _text_claim(claims, "decision")
    if decision not in ("approved", "denied"):
        raise TrustError(f"decision token: decision {decision!r} is not approved/denied", reason="bad_decision")
    act = _text_claim(claims, "act" if decision == "approved" else "denied_act")
    if decision == "denied" and "act" in claims:
        raise TrustError("decision token: a denial must not carry 'act'", reason="bad_decision")
    try:
        req = CourtCode.parse(_text_claim(claims, "req"))
    except InvalidCode as exc:
        raise TrustError(f"decision token: {exc}", reason="bad_decision") from None
    level = required_level(act, levels)
    if not may_decide(issuer, level):
        raise AuthorityError(
            f"{ACTION_NAMES.get(act, act)} ({act}) is decided by a {_level_text(level)} or above; "
            f"{issuer} is a {_level_text(issuer.level)}",
            reason="wrong_level",
        )
    if not below(req, issuer):
        raise AuthorityError(f"{issuer} is not above the requesting court {req}", reason="not_above_requester")
    out = Decision(
        token=token,
        decision=decision,
        approver=issuer,
        requester=req,
        action=act,
        case_number=_text_claim(claims, "sub"),
        subject_id=_text_claim(claims, "subject_id"),
        decision_id=_text_claim(claims, "jti"),
        item_id=str(claims.get("item") or ""),
        issued_at_s=_int_claim(claims, "iat"),
        expires_at_s=_int_claim(claims, "exp"),
        reason=str(claims.get("reason") or ""),
    )
    expected = {
        "action": (action, out.action),
        "subject_id": (subject_id, out.subject_id),
        "case_number": (case_number, out.case_number),
        "requester": (str(requester) if requester else None, str(out.requester)),
    }
    for what, (want, got) in expected.items():
        if want is not None and want != got:
            raise TrustError(f"decision token is for {what} {got!r}, not {want!r}", reason="decision_mismatch")
    if approver is not None and approver != out.approver:
        raise AuthorityError(f"decision sealed by {out.approver}, expected {approver}", reason="wrong_approver")
    if now_ms is not None and out.approved and now_ms >= out.expires_at_s * 1000:
        raise TrustError(f"approval {out.decision_id} has expired", reason="approval_expired")
    return out


class TreeApprovalVerifier:
    """The agencies' :class:`~plugins.agency.approval.ApprovalVerifier`, backed by the federation:
    a gated action's approval must be a decision token of a court whose certificate chains to the
    tree's root and that sits at the configured level — instead of a fixed list of trusted keys.
    A connector given this verifier checks approvals before a request leaves the hub."""

    def __init__(self, trust: TrustStore, clock: Clock, levels: Mapping[str, CourtLevel] | None = None) -> None:
        self.trust = trust
        self.clock = clock
        self.levels = levels

    def verify_approval(self, token: str, action: str, subject_id: str) -> ApprovalClaims:
        if not token:
            raise ApprovalError("approval_required", "缺少审批签章：该措施须经上级法院电子签章审批")
        try:
            decision = verify_decision(token, self.trust, levels=self.levels, now_ms=self.clock.now_ms())
        except CourtHubError as exc:
            reason = "approval_expired" if exc.reason == "approval_expired" else f"approval_{exc.reason}"
            raise ApprovalError(reason, f"审批签章无效：{exc.message}") from None
        if not decision.approved:
            raise ApprovalError("approval_denied", f"{decision.approver}未批准该事项（决定编号{decision.decision_id}）")
        if decision.action != action:
            raise ApprovalError("approval_wrong_action", f"审批事项为{decision.action}，与请求的{action}不符")
        if decision.subject_id != subject_id:
            raise ApprovalError("approval_wrong_subject", "审批所涉人员证件号码与请求不符")
        return ApprovalClaims(
            iss=str(decision.approver),
            sub=decision.case_number,
            act=decision.action,
            subject_id=decision.subject_id,
            exp=decision.expires_at_s,
            jti=decision.decision_id,
            iat=decision.issued_at_s,
        )


# -- the workflow ----------------------------------------------------------------------------------


def merge_data(wtx: WorkflowTx, extra: Mapping[str, Any]) -> None:
    """From an effect: add facts to the item's data, in the step's transaction (both ends run the
    same effect, so both rows get the same facts)."""
    row = wtx.row
    merged = {**row["data"], **extra}
    wtx.tx.conn.execute(
        update(workflow_items)
        .where(workflow_items.c.item_id == row["item_id"], workflow_items.c.party == row["party"])
        .values(data=json.dumps(merged, ensure_ascii=False))
    )
    row["data"] = merged


def _create(data: Data) -> Data:
    action = data.get("action")
    if not isinstance(action, str) or not action:
        raise InvalidInput("approval: action is required (border_control, location, renewal, entrust_return …)")
    subject = str(data.get("subject_id", "")).strip()
    if not 1 <= len(subject) <= 64:
        raise InvalidInput("approval: subject_id (the person's ID number, or the matter's id) is required")
    reason = str(data.get("reason", "")).strip()
    if not reason or len(reason) > 4000:
        raise InvalidInput("approval: reason is required (at most 4,000 characters)")
    ttl = data.get("ttl_days", 7)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_DAYS:
        raise InvalidInput(f"approval: ttl_days must be a whole number 1–{MAX_TTL_DAYS}")
    out: Data = {"action": action, "subject_id": subject, "reason": reason, "ttl_days": ttl}
    for key in ("subject_name", "required_level", "entrust_item"):
        if data.get(key):
            out[key] = str(data[key])[:200]
    term = data.get("term_days")
    if term is not None:
        if isinstance(term, bool) or not isinstance(term, int) or not 1 <= term <= 3 * 365:
            raise InvalidInput("approval: term_days must be a whole number 1–1095")
        out["term_days"] = term
    return out


def _decided(data: Data) -> Data:
    token = data.get("token")
    if not isinstance(token, str) or not token or len(token) > 8000:
        raise InvalidInput("approval decision: a sealed decision token is required")
    out: Data = {"token": token}
    if data.get("reason"):
        out["decision_reason"] = str(data["reason"])[:2000]
    return out


def _withdraw(data: Data) -> Data:
    return {"withdraw_reason": str(data.get("reason", ""))[:2000]}


def _check_decision(wtx: WorkflowTx) -> None:
    """Both ends: the token must be this item's decision, sealed by the item's approver, who must
    sit at the configured level (the requester's levels when it receives the step)."""
    row = wtx.row
    node = wtx.engine.node
    decision = verify_decision(
        str(row["data"].get("token", "")),
        node.trust,
        levels=levels_of(node),
        action=str(row["data"]["action"]),
        subject_id=str(row["data"]["subject_id"]),
        case_number=str(row["case_number"] or ""),
        requester=CourtCode.parse(row["issuer"]),
        approver=CourtCode.parse(row["party"]),
    )
    if decision.item_id != row["item_id"]:
        raise TrustError("decision token is for another request", reason="decision_mismatch")
    if decision.approved != (row["state"] == "approved"):
        raise TrustError(
            f"decision token says {decision.decision}, the step says {row['state']}", reason="decision_mismatch"
        )
    merge_data(wtx, {"decision_id": decision.decision_id, "expires_at_s": decision.expires_at_s})


SPEC = WorkflowSpec(
    name="approval",
    label="电子签章审批",
    relation=Relation.UPWARD,
    initial="requested",
    create_check=_create,
    steps=(
        Step("approve", frozenset({"requested"}), "approved", "party", clear(), _decided, "批准"),
        Step("deny", frozenset({"requested"}), "denied", "party", clear(), _decided, "不予批准"),
        Step("withdraw", frozenset({"requested"}), "withdrawn", "issuer", clear(), _withdraw, "撤回"),
    ),
    effects={"approve": _check_decision, "deny": _check_decision},
)


# -- node side -------------------------------------------------------------------------------------

_LEVELS: weakref.WeakKeyDictionary[Node, dict[str, CourtLevel]] = weakref.WeakKeyDictionary()


def levels_of(node: Node) -> dict[str, CourtLevel]:
    levels = _LEVELS.get(node)
    if levels is None:
        levels = _LEVELS[node] = load_levels(node.home.path / "approvals.toml")
    return levels


async def _audited(node: Node, what: str, coro: Any) -> Any:
    """Run an operation; a refusal becomes an audit entry at this court before it is raised."""
    try:
        return await coro
    except (AuthorityError, TrustError) as exc:
        await node.audit_event("refused", str(node.me), exc.reason, f"{what}: {exc.message}")
        raise


async def request(node: Node, args: Mapping[str, Any]) -> dict[str, Any]:
    """Admin ``approval.request``: open a request to the court at the configured level."""
    action = str(args.get("action", "")).strip()
    levels = levels_of(node)
    level = required_level(action, levels)
    case = str(args.get("case_number", "")).strip()
    if not case:
        raise InvalidInput("approval request: the case number (案号) is required")
    case = str(CaseNumber.parse(case))
    to = CourtCode.parse(str(args["to"])) if args.get("to") else approver_for(node.me, action, levels)
    warning = ""
    if not may_decide(to, level):
        warning = (
            f"{to} is a {_level_text(to.level)}: {ACTION_NAMES.get(action, action)} is decided by a "
            f"{_level_text(level)}; {to} cannot approve it"
        )
    data: Data = {
        "action": action,
        "subject_id": str(args.get("subject_id", "")),
        "reason": str(args.get("reason", "")),
        "ttl_days": int(args.get("ttl_days") or 7),
        "required_level": level.value,
    }
    for key in ("subject_name", "entrust_item", "term_days"):
        if args.get(key) is not None:
            data[key] = args[key]
    title = str(args.get("title") or f"{ACTION_NAMES.get(action, action)}审批：{case}")
    item_id = await node.workflows.create("approval", [to], title, data, case_number=case)
    out: dict[str, Any] = {"item_id": item_id, "to": str(to), "action": action, "required_level": level.value}
    if warning:
        out["warning"] = warning
    return out


async def resolve(node: Node, workflow: str, text: str) -> str:
    """An item id as typed by a person: the whole id, or a unique prefix of at least 6 characters."""
    text = text.strip().lower()
    if not text or not all(c in "0123456789abcdef" for c in text):
        raise NotFound(f"{text!r} is not a {workflow} item id")

    def read(conn: Connection) -> list[str]:
        ids = workflow_items.c.item_id
        where = ids == text if len(text) < MIN_PREFIX else ids.like(f"{text}%")
        q = select(ids).where(workflow_items.c.workflow == workflow, where).distinct().limit(10)
        return sorted(str(i) for i in conn.execute(q).scalars())

    found = await node.store.read(read)
    if text in found:
        return text
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise InvalidInput(f"{text!r} names {len(found)} {workflow} items here: give more of the id")
    raise NotFound(f"no {workflow} item {text!r} at {node.me}")


async def _row(node: Node, item_id: str) -> dict[str, Any]:
    item_id = await resolve(node, "approval", item_id)
    history = await node.workflows.history(item_id)
    rows = [r for r in history["items"] if r["workflow"] == "approval"]
    if not rows:
        raise NotFound(f"no approval request {item_id} here")
    return dict(rows[0])


async def decide(node: Node, args: Mapping[str, Any]) -> dict[str, Any]:
    """Admin ``approval.decide``: the approver seals its decision and sends it back."""
    item_id = str(args.get("item_id", ""))

    async def run() -> dict[str, Any]:
        try:
            row = await _row(node, item_id)
        except NotFound:
            raise AuthorityError(
                f"{node.me} holds no approval request {item_id}: only the court it was sent to decides it",
                reason="not_a_party",
            ) from None
        if row["role"] != "party":
            raise AuthorityError(
                f"{node.me} asked for approval {item_id}; only {row['party']} decides it", reason="not_authorized"
            )
        item = str(row["item_id"])
        action = str(row["data"]["action"])
        level = required_level(action, levels_of(node))
        if not may_decide(node.me, level):
            raise AuthorityError(
                f"{ACTION_NAMES.get(action, action)} ({action}) is decided by a {_level_text(level)} or above; "
                f"{node.me} is a {_level_text(node.me.level)} and may not decide request {item_id} — "
                f"the requesting court {row['issuer']} should withdraw it and ask "
                f"{approver_for(CourtCode.parse(row['issuer']), action, levels_of(node))}",
                reason="wrong_level",
            )
        approved = bool(args.get("approve"))
        reason = str(args.get("reason", ""))
        if not approved and not reason.strip():
            raise InvalidInput("a denial needs a reason (--reason)")
        ttl = args.get("ttl_days") or row["data"].get("ttl_days", 7)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_DAYS:
            raise InvalidInput(f"ttl_days must be a whole number 1–{MAX_TTL_DAYS}")
        token = seal_decision(
            node,
            approved=approved,
            requester=CourtCode.parse(row["issuer"]),
            action=action,
            case_number=str(row["case_number"] or ""),
            subject_id=str(row["data"]["subject_id"]),
            item_id=item,
            ttl_days=ttl,
            reason=reason,
            now_ms=node.clock.now_ms(),
        )
        result = await node.workflows.act(
            item, node.me, "approve" if approved else "deny", {"token": token, "reason": reason}
        )
        return {"item_id": item, "state": result["state"], "token": token, **_public(result["data"])}

    result: dict[str, Any] = await _audited(node, f"approval.decide {item_id}", run())
    return result


def _public(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "token"}


async def withdraw(node: Node, args: Mapping[str, Any]) -> dict[str, Any]:
    item_id = str(args.get("item_id", ""))

    async def run() -> dict[str, Any]:
        row = await _row(node, item_id)
        result = await node.workflows.act(
            row["item_id"], CourtCode.parse(row["party"]), "withdraw", {"reason": args.get("reason", "")}
        )
        return {"item_id": row["item_id"], "state": result["state"]}

    result: dict[str, Any] = await _audited(node, f"approval.withdraw {item_id}", run())
    return result


async def list_items(node: Node, args: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = await node.workflows.items("approval")
    state = args.get("state")
    out = []
    for r in rows:
        if state and r["state"] != state:
            continue
        out.append(
            {
                "item_id": r["item_id"],
                "role": "requester" if r["role"] == "issuer" else "approver",
                "requester": r["issuer"],
                "approver": r["party"],
                "action": r["data"].get("action"),
                "case_number": r["case_number"],
                "subject_id": r["data"].get("subject_id"),
                "state": r["state"],
                "decision_id": r["data"].get("decision_id"),
                "title": r["title"],
                "created_at_ms": r["created_at_ms"],
            }
        )
    return out


async def show(node: Node, args: Mapping[str, Any]) -> dict[str, Any]:
    row = await _row(node, str(args.get("item_id", "")))
    history = await node.workflows.history(row["item_id"])
    out: dict[str, Any] = {"item": row, "events": history["events"]}
    token = row["data"].get("token")
    if token:
        out["token"] = token
        try:
            out["verified"] = verify_decision(str(token), node.trust, levels=levels_of(node)).to_dict()
        except CourtHubError as exc:
            out["verified"] = {"error": exc.message, "reason": exc.reason}
    return out


async def token_for(node: Node, item_id: str) -> str:
    """The sealed token of an approved request held here (for the executing side)."""
    row = await _row(node, item_id)
    if row["state"] != "approved":
        raise InvalidInput(f"approval {item_id} is {row['state']}, not approved", reason="not_approved")
    return str(row["data"]["token"])


async def _verify(node: Node, args: Mapping[str, Any]) -> dict[str, Any]:
    decision = verify_decision(
        str(args.get("token", "")),
        node.trust,
        levels=levels_of(node),
        now_ms=node.clock.now_ms(),
        action=args.get("action") or None,
        subject_id=args.get("subject_id") or None,
        case_number=args.get("case_number") or None,
    )
    return decision.to_dict()


async def _levels(node: Node) -> dict[str, str]:
    return {action: level.value for action, level in sorted(levels_of(node).items())}


def setup(node: Node) -> None:
    _LEVELS.pop(node, None)
    levels_of(node)  # a bad approvals.toml stops the node at start, with the file named
    ops = {
        "approval.request": lambda args: request(node, args),
        "approval.decide": lambda args: decide(node, args),
        "approval.withdraw": lambda args: withdraw(node, args),
        "approval.list": lambda args: list_items(node, args),
        "approval.show": lambda args: show(node, args),
        "approval.verify": lambda args: _verify(node, args),
        "approval.levels": lambda args: _levels(node),
    }
    for name, op in ops.items():
        node.admin.register(name, op)
