"""Typed requests and results exchanged between the hub and agency plugins.

Every model is a frozen dataclass with ``to_dict()`` (plain JSON types, for the work queue and the
store) and ``from_dict()`` (validating: wrong or missing fields raise :class:`InvalidModel`, which
names the field by its dotted path, e.g. ``InquiryResult.assets[2].amount_fen``). Constructing a
model directly runs the same cross-field checks in ``__post_init__``.

The host never trusts what a plugin returns: :func:`coerce` turns a plugin's answer (a model
instance or a plain dict) into a validated model, or raises :class:`InvalidModel`. Garbage from a
plugin therefore becomes a typed failure of that plugin's job, never a crash of the host.

Conventions (shared with the agency simulators under ``plugins/agency``): amounts are integers in
fen (分, 1/100 yuan); instants are epoch milliseconds (UTC); terms are whole days; identifiers that
travel to agencies match ``[A-Za-z0-9._:-]{1,64}``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from hub.codes import CaseNumber, CourtCode
from hub.errors import ConfigError, CourtHubError, InvalidCode, InvalidInput
from hub.text import control_character

__all__ = [
    "AgencyKind",
    "AgencyRejected",
    "AgencyUnavailable",
    "Asset",
    "CaseFiled",
    "ControlAction",
    "ControlRequest",
    "ControlResult",
    "ControlStatus",
    "CourtInfo",
    "HealthResult",
    "HealthStatus",
    "IdType",
    "InquiryRequest",
    "InquiryResult",
    "InquiryStatus",
    "InvalidModel",
    "MeasureExpiring",
    "Notification",
    "PluginConfigError",
    "PluginError",
    "PluginInfo",
    "Recipient",
    "Subject",
    "coerce",
]

JSON = Any  # a value json.dumps accepts: None, bool, int, float, str, list, dict[str, JSON]

ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
PLUGIN_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_\-]{0,63}")
CAPABILITY_PATTERN = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
API_VERSION_PATTERN = re.compile(r"(0|[1-9]\d{0,3})\.(0|[1-9]\d{0,3})")
PHONE_PATTERN = re.compile(r"[0-9+\- ]{6,20}")
NATIONAL_SCOPE = "national"  # 总对总: the plugin serves the whole country (SPC-level link)

MAX_AMOUNT_FEN = 10**15  # ten trillion yuan: anything larger is garbage
MAX_TERM_DAYS = 3 * 366  # the longest legal term (real estate, 3 years; 民诉法解释 art. 485)
MAX_ATTRIBUTES_BYTES = 64 * 1024
MAX_ITEMS = 10_000

T = TypeVar("T")


# -- errors ----------------------------------------------------------------------------------


class InvalidModel(InvalidInput):
    """A request or result does not match its model. ``field`` is the dotted path of the culprit."""

    reason = "invalid_plugin_data"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class PluginError(CourtHubError):
    """Base for errors a plugin raises on purpose. ``retryable`` tells the queue whether to retry.

    Any other exception a plugin raises is treated as retryable too (a bug or an outage may pass);
    raise a non-retryable subclass when retrying cannot help.
    """

    reason = "plugin_error"
    retryable: bool = True


class AgencyUnavailable(PluginError):
    """The agency could not be reached or answered 5xx / timed out. Retrying may help."""

    reason = "agency_unavailable"
    retryable = True


class AgencyRejected(PluginError):
    """The agency refused the request for a reason that retrying will not change (bad credentials,
    an unsupported request). Business refusals of a control measure are a
    :class:`ControlResult` with status ``rejected`` instead, so they are recorded as answers."""

    reason = "agency_rejected"
    retryable = False


class PluginConfigError(ConfigError):
    """``courthub_configure`` was given settings it cannot use; the message names the key."""

    reason = "invalid_plugin_config"


# -- enumerations ----------------------------------------------------------------------------


class AgencyKind(StrEnum):
    BANK = "bank"  # 银行
    LAND = "land"  # 不动产登记
    PUBLIC_SECURITY = "public_security"  # 公安 (户籍, 车辆, 旅馆, 出入境)
    TELECOM = "telecom"  # 电信运营商
    OTHER = "other"


class IdType(StrEnum):
    RESIDENT_ID = "resident_id"  # 居民身份证
    USCC = "uscc"  # 统一社会信用代码 (legal persons)
    PASSPORT = "passport"  # 护照


class ControlAction(StrEnum):
    """Control measures (财产控制措施). ``bank_code`` is the control code of bank practice."""

    FREEZE = "freeze"  # 01 冻结
    RENEW = "renew"  # 02 续冻 / 续封
    WAITING = "waiting"  # 03 轮候冻结 / 轮候查封
    RELEASE = "release"  # 04 解冻 / 解封
    RELEASE_WAITING = "release_waiting"  # 05 解除轮候
    DEDUCT = "deduct"  # 06 扣划
    FREEZE_AND_DEDUCT = "freeze_and_deduct"  # 08 冻结并扣划
    SEAL = "seal"  # 查封 (real estate, vehicles)
    BORDER_CONTROL = "border_control"  # 边控 (exit control; needs a sealed approval)
    LOCATION = "location"  # 定位 (telecom; needs a sealed approval)

    @property
    def bank_code(self) -> str | None:
        """The two-digit control code (控制类型代码), None for non-bank actions."""
        return _BANK_CODES.get(self)

    @classmethod
    def from_bank_code(cls, code: str) -> ControlAction:
        for action, value in _BANK_CODES.items():
            if value == code:
                return action
        raise InvalidInput(f"unknown control code {code!r} (known: {', '.join(_BANK_CODES.values())})")

    @property
    def needs_approval(self) -> bool:
        """True for actions that always need a sealed approval (电子签章审批) from an upper court."""
        return self in (ControlAction.BORDER_CONTROL, ControlAction.LOCATION)


_BANK_CODES: dict[ControlAction, str] = {
    ControlAction.FREEZE: "01",
    ControlAction.RENEW: "02",
    ControlAction.WAITING: "03",
    ControlAction.RELEASE: "04",
    ControlAction.RELEASE_WAITING: "05",
    ControlAction.DEDUCT: "06",
    ControlAction.FREEZE_AND_DEDUCT: "08",
}


class InquiryStatus(StrEnum):
    ANSWERED = "answered"  # the agency answered; ``assets`` may be empty (nothing held)
    NOT_FOUND = "not_found"  # the agency does not know the subject at all (查无此人)
    REJECTED = "rejected"  # the agency refused to answer (``message`` says why)


class ControlStatus(StrEnum):
    DONE = "done"  # executed in full (controlled, renewed, released, transferred, located …)
    PARTIAL = "partial"  # less than requested was controlled / transferred; ``reason`` says why
    QUEUED = "queued"  # recorded as a waiting (轮候) measure; takes effect when earlier ones end
    NOT_CONTROLLED = "not_controlled"  # accepted but nothing could be controlled (zero balance …)
    REJECTED = "rejected"  # the agency refused (term too long, approval missing, lapsed measure …)


class HealthStatus(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


# -- field readers ---------------------------------------------------------------------------


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


class _Reader:
    """Typed, path-aware access to one JSON object; every failure names the field."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise InvalidModel(path, f"expected an object, got {_type_name(data)}")
        self.data: Mapping[str, Any] = data
        self.path = path

    def at(self, name: str) -> str:
        return f"{self.path}.{name}"

    def _get(self, name: str, required: bool) -> Any:
        value = self.data.get(name)
        if value is None and required:
            raise InvalidModel(self.at(name), "is required")
        return value

    def text(
        self,
        name: str,
        *,
        required: bool = True,
        max_len: int = 200,
        pattern: re.Pattern[str] | None = None,
        choices: type[StrEnum] | None = None,
    ) -> Any:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidModel(self.at(name), f"expected a string, got {_type_name(value)}")
        return _check_text(self.at(name), value, max_len=max_len, pattern=pattern, choices=choices)

    def integer(self, name: str, *, required: bool = True, min: int = 0, max: int = 2**62) -> Any:
        value = self._get(name, required)
        if value is None:
            return None
        return _check_int(self.at(name), value, min=min, max=max)

    def flag(self, name: str, default: bool) -> bool:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidModel(self.at(name), f"expected true or false, got {_type_name(value)}")
        return value

    def texts(self, name: str, *, max_len: int = 200, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
        items = self.array(name)
        out = []
        for i, item in enumerate(items):
            where = f"{self.at(name)}[{i}]"
            if not isinstance(item, str):
                raise InvalidModel(where, f"expected a string, got {_type_name(item)}")
            out.append(_check_text(where, item, max_len=max_len, pattern=pattern))
        return tuple(out)

    def array(self, name: str) -> list[Any] | tuple[Any, ...]:
        value = self.data.get(name)
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise InvalidModel(self.at(name), f"expected an array, got {_type_name(value)}")
        if len(value) > MAX_ITEMS:
            raise InvalidModel(self.at(name), f"has more than {MAX_ITEMS} items")
        return value

    def objs(self, name: str, parse: Callable[[Any, str], T]) -> tuple[T, ...]:
        return tuple(parse(item, f"{self.at(name)}[{i}]") for i, item in enumerate(self.array(name)))

    def obj(self, name: str, parse: Callable[[Any, str], T]) -> T:
        return parse(self._get(name, True), self.at(name))

    def mapping(self, name: str) -> dict[str, JSON]:
        value = self.data.get(name)
        if value is None:
            return {}
        return _check_json_object(self.at(name), value)


def _check_text(
    where: str,
    value: object,
    *,
    max_len: int = 200,
    pattern: re.Pattern[str] | None = None,
    choices: type[StrEnum] | None = None,
    multiline: bool = False,
) -> str:
    if not isinstance(value, str):
        raise InvalidModel(where, f"expected a string, got {_type_name(value)}")
    if bad := control_character(value, multiline=multiline):
        raise InvalidModel(where, f"contains a control character ({bad})")
    if not value.strip():
        raise InvalidModel(where, "must not be empty")
    if len(value) > max_len:
        raise InvalidModel(where, f"is longer than {max_len} characters")
    if choices is not None:
        allowed = [c.value for c in choices]
        if value not in allowed:
            raise InvalidModel(where, f"must be one of {', '.join(allowed)}; got {value!r}")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidModel(where, f"has an invalid format: {value!r} (expected {pattern.pattern})")
    return value


def _check_int(where: str, value: object, *, min: int = 0, max: int = 2**62) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidModel(where, f"expected an integer, got {_type_name(value)}")
    if value < min:
        raise InvalidModel(where, f"must be at least {min}; got {value}")
    if value > max:
        raise InvalidModel(where, f"must be at most {max}; got {value}")
    return value


def _check_opt_int(where: str, value: object, *, min: int = 0, max: int = 2**62) -> int | None:
    return None if value is None else _check_int(where, value, min=min, max=max)


def _check_opt_text(where: str, value: object, **kw: Any) -> str | None:
    return None if value is None else _check_text(where, value, **kw)


def _check_json_object(where: str, value: object) -> dict[str, JSON]:
    if not isinstance(value, Mapping):
        raise InvalidModel(where, f"expected an object, got {_type_name(value)}")
    _check_json(where, value, depth=0)
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:  # pragma: no cover - _check_json catches these first
        raise InvalidModel(where, f"is not JSON-serialisable: {exc}") from None
    if size > MAX_ATTRIBUTES_BYTES:
        raise InvalidModel(where, f"is larger than {MAX_ATTRIBUTES_BYTES} bytes as JSON")
    return dict(value)


def _check_json(where: str, value: object, depth: int) -> None:
    if depth > 16:
        raise InvalidModel(where, "is nested more than 16 levels deep")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidModel(where, f"must be a finite number, got {value}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(f"{where}[{i}]", item, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidModel(where, f"has a non-string key {key!r}")
            _check_json(f"{where}.{key}", item, depth + 1)
        return
    raise InvalidModel(where, f"is not a JSON value ({type(value).__name__})")


def _check_court_code(where: str, value: object) -> str:
    text = _check_text(where, value, max_len=16)
    try:
        return str(CourtCode.parse(text))
    except InvalidCode as exc:
        raise InvalidModel(where, str(exc)) from None


def _check_case_number(where: str, value: object) -> str:
    text = _check_text(where, value, max_len=40)
    try:
        return str(CaseNumber.parse(text))
    except InvalidCode as exc:
        raise InvalidModel(where, str(exc)) from None


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# -- shared parts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """The person or organisation asked about or acted against (被执行人)."""

    name: str
    id_no: str
    id_type: IdType = IdType.RESIDENT_ID

    def __post_init__(self) -> None:
        _check_text("Subject.name", self.name, max_len=100)
        _check_text("Subject.id_no", self.id_no, max_len=40)
        _check_text("Subject.id_type", str(self.id_type), choices=IdType)
        object.__setattr__(self, "id_type", IdType(self.id_type))

    @classmethod
    def parse(cls, data: object, path: str = "Subject") -> Subject:
        r = _Reader(data, path)
        try:
            return cls(
                name=r.text("name", max_len=100),
                id_no=r.text("id_no", max_len=40),
                id_type=IdType(r.text("id_type", required=False, choices=IdType) or IdType.RESIDENT_ID),
            )
        except InvalidModel as exc:
            raise _reroot(exc, "Subject", path) from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "id_type": self.id_type.value, "id_no": self.id_no}


@dataclass(frozen=True)
class CourtInfo:
    """The requesting court and the officers acting (协助执行请求要素)."""

    court_code: str  # 法院代字, e.g. 豫1402
    court_name: str  # e.g. 商丘市梁园区人民法院
    judge_name: str  # 承办法官
    judge_phone: str | None = None
    officer_ids: tuple[str, ...] = ()  # 执行公务证号 (agencies usually want two)
    document_name: str | None = None  # e.g. 协助冻结存款通知书
    document_no: str | None = None  # e.g. （2025）豫1402执123号之一

    def __post_init__(self) -> None:
        object.__setattr__(self, "court_code", _check_court_code("CourtInfo.court_code", self.court_code))
        _check_text("CourtInfo.court_name", self.court_name, max_len=100)
        _check_text("CourtInfo.judge_name", self.judge_name, max_len=50)
        _check_opt_text("CourtInfo.judge_phone", self.judge_phone, pattern=PHONE_PATTERN)
        if len(self.officer_ids) > 8:
            raise InvalidModel("CourtInfo.officer_ids", "has more than 8 items")
        for i, officer in enumerate(self.officer_ids):
            _check_text(f"CourtInfo.officer_ids[{i}]", officer, max_len=40)
        _check_opt_text("CourtInfo.document_name", self.document_name, max_len=100)
        _check_opt_text("CourtInfo.document_no", self.document_no, max_len=100)

    @classmethod
    def parse(cls, data: object, path: str = "CourtInfo") -> CourtInfo:
        r = _Reader(data, path)
        try:
            return cls(
                court_code=r.text("court_code", max_len=16),
                court_name=r.text("court_name", max_len=100),
                judge_name=r.text("judge_name", max_len=50),
                judge_phone=r.text("judge_phone", required=False, pattern=PHONE_PATTERN),
                officer_ids=r.texts("officer_ids", max_len=40),
                document_name=r.text("document_name", required=False, max_len=100),
                document_no=r.text("document_no", required=False, max_len=100),
            )
        except InvalidModel as exc:
            raise _reroot(exc, "CourtInfo", path) from None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "court_code": self.court_code,
                "court_name": self.court_name,
                "judge_name": self.judge_name,
                "judge_phone": self.judge_phone,
                "officer_ids": list(self.officer_ids),
                "document_name": self.document_name,
                "document_no": self.document_no,
            }
        )


def _reroot(exc: InvalidModel, model: str, path: str) -> InvalidModel:
    """Errors raised in ``__post_init__`` name ``Model.field``; re-anchor them under ``path``."""
    if path == model or not exc.field.startswith(model + "."):
        return exc
    return InvalidModel(path + exc.field[len(model) :], exc.problem)


# -- plugin info -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginInfo:
    """What ``courthub_plugin_info`` returns: who the plugin is and what it offers."""

    name: str  # unique per node, lower-case: [a-z][a-z0-9_-]{0,63}, e.g. "bank-icbc"
    version: str  # the plugin package's own version
    api_version: str  # the hook API it was written against, "MAJOR.MINOR" (PLUGIN_API_VERSION)
    agency_kind: AgencyKind
    capabilities: tuple[str, ...]  # "<domain>.<operation>", e.g. ("bank.inquiry", "bank.control")
    scope: str = NATIONAL_SCOPE  # "national" (总对总) or the court code it serves (点对点), e.g. 豫14
    description: str = ""

    def __post_init__(self) -> None:
        _check_text("PluginInfo.name", self.name, max_len=64, pattern=PLUGIN_NAME_PATTERN)
        _check_text("PluginInfo.version", self.version, max_len=64)
        _check_text("PluginInfo.api_version", self.api_version, max_len=16, pattern=API_VERSION_PATTERN)
        _check_text("PluginInfo.agency_kind", str(self.agency_kind), choices=AgencyKind)
        object.__setattr__(self, "agency_kind", AgencyKind(self.agency_kind))
        if not isinstance(self.capabilities, tuple):
            object.__setattr__(self, "capabilities", tuple(self.capabilities))
        if not self.capabilities:
            raise InvalidModel("PluginInfo.capabilities", "must name at least one capability")
        seen: set[str] = set()
        for i, cap in enumerate(self.capabilities):
            _check_text(f"PluginInfo.capabilities[{i}]", cap, max_len=64, pattern=CAPABILITY_PATTERN)
            if cap in seen:
                raise InvalidModel(f"PluginInfo.capabilities[{i}]", f"duplicate capability {cap!r}")
            seen.add(cap)
        if self.scope != NATIONAL_SCOPE:
            object.__setattr__(self, "scope", _check_court_code("PluginInfo.scope", self.scope))
        if not isinstance(self.description, str) or len(self.description) > 500:
            raise InvalidModel("PluginInfo.description", "expected a string of at most 500 characters")

    @property
    def api_major(self) -> int:
        return int(self.api_version.split(".")[0])

    @classmethod
    def from_dict(cls, data: object) -> PluginInfo:
        r = _Reader(data, "PluginInfo")
        return cls(
            name=r.text("name", max_len=64, pattern=PLUGIN_NAME_PATTERN),
            version=r.text("version", max_len=64),
            api_version=r.text("api_version", max_len=16, pattern=API_VERSION_PATTERN),
            agency_kind=AgencyKind(r.text("agency_kind", choices=AgencyKind)),
            capabilities=r.texts("capabilities", max_len=64, pattern=CAPABILITY_PATTERN),
            scope=r.text("scope", required=False, max_len=16) or NATIONAL_SCOPE,
            description=r.data.get("description") or "",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "api_version": self.api_version,
            "agency_kind": self.agency_kind.value,
            "capabilities": list(self.capabilities),
            "scope": self.scope,
            "description": self.description,
        }


# -- inquiry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InquiryRequest:
    """One inquiry (财产查询) sent to one plugin: "what does the agency hold for this subject?"."""

    request_id: str  # unique; the idempotency key the agency sees (reused on every retry)
    capability: str  # which declared capability is asked, e.g. "bank.inquiry"
    case_number: str  # 案号, canonical full-width form
    court: CourtInfo
    subject: Subject
    params: Mapping[str, JSON] = field(default_factory=dict)  # capability-specific (date range …)
    created_at_ms: int = 0

    def __post_init__(self) -> None:
        _check_text("InquiryRequest.request_id", self.request_id, max_len=64, pattern=ID_PATTERN)
        _check_text("InquiryRequest.capability", self.capability, max_len=64, pattern=CAPABILITY_PATTERN)
        object.__setattr__(self, "case_number", _check_case_number("InquiryRequest.case_number", self.case_number))
        if not isinstance(self.court, CourtInfo):
            raise InvalidModel("InquiryRequest.court", f"expected CourtInfo, got {_type_name(self.court)}")
        if not isinstance(self.subject, Subject):
            raise InvalidModel("InquiryRequest.subject", f"expected Subject, got {_type_name(self.subject)}")
        object.__setattr__(self, "params", _check_json_object("InquiryRequest.params", self.params))
        _check_int("InquiryRequest.created_at_ms", self.created_at_ms)

    @classmethod
    def from_dict(cls, data: object) -> InquiryRequest:
        r = _Reader(data, "InquiryRequest")
        return cls(
            request_id=r.text("request_id", max_len=64, pattern=ID_PATTERN),
            capability=r.text("capability", max_len=64, pattern=CAPABILITY_PATTERN),
            case_number=r.text("case_number", max_len=40),
            court=r.obj("court", CourtInfo.parse),
            subject=r.obj("subject", Subject.parse),
            params=r.mapping("params"),
            created_at_ms=r.integer("created_at_ms", required=False) or 0,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "capability": self.capability,
            "case_number": self.case_number,
            "court": self.court.to_dict(),
            "subject": self.subject.to_dict(),
            "params": dict(self.params),
            "created_at_ms": self.created_at_ms,
        }


@dataclass(frozen=True)
class Asset:
    """One thing the agency holds for the subject: an account, a property, a vehicle, a number …"""

    kind: str  # deposit, wealth_product, real_estate, vehicle, phone_number, household, hotel_stay …
    asset_id: str  # account no., 不动产权证号, 号牌号码, phone number … (what a control names)
    institution: str = ""  # branch, registry office, operator
    holder_name: str = ""
    amount_fen: int | None = None  # balance / available amount, when the asset has one
    currency: str = "CNY"
    attributes: Mapping[str, JSON] = field(default_factory=dict)  # agency-specific details

    def __post_init__(self) -> None:
        _check_text("Asset.kind", self.kind, max_len=40, pattern=re.compile(r"[a-z][a-z0-9_]*"))
        _check_text("Asset.asset_id", self.asset_id, max_len=100)
        for where, value, limit in (
            ("Asset.institution", self.institution, 200),
            ("Asset.holder_name", self.holder_name, 100),
        ):
            if not isinstance(value, str) or len(value) > limit:
                raise InvalidModel(where, f"expected a string of at most {limit} characters")
            if bad := control_character(value):
                raise InvalidModel(where, f"contains a control character ({bad})")
        _check_opt_int("Asset.amount_fen", self.amount_fen, max=MAX_AMOUNT_FEN)
        _check_text("Asset.currency", self.currency, max_len=3, pattern=re.compile(r"[A-Z]{3}"))
        object.__setattr__(self, "attributes", _check_json_object("Asset.attributes", self.attributes))

    @classmethod
    def parse(cls, data: object, path: str = "Asset") -> Asset:
        r = _Reader(data, path)
        try:
            return cls(
                kind=r.text("kind", max_len=40),
                asset_id=r.text("asset_id", max_len=100),
                institution=r.data.get("institution") or "",
                holder_name=r.data.get("holder_name") or "",
                amount_fen=r.integer("amount_fen", required=False, max=MAX_AMOUNT_FEN),
                currency=r.text("currency", required=False, max_len=3) or "CNY",
                attributes=r.mapping("attributes"),
            )
        except InvalidModel as exc:
            raise _reroot(exc, "Asset", path) from None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "kind": self.kind,
                "asset_id": self.asset_id,
                "institution": self.institution,
                "holder_name": self.holder_name,
                "amount_fen": self.amount_fen,
                "currency": self.currency,
                "attributes": dict(self.attributes),
            }
        )


@dataclass(frozen=True)
class InquiryResult:
    """The agency's answer to an :class:`InquiryRequest` (查询反馈)."""

    request_id: str  # must equal the request's
    status: InquiryStatus
    assets: tuple[Asset, ...] = ()
    answered_at_ms: int = 0
    agency_ref: str | None = None  # the agency's own reference for the answer
    message: str | None = None  # why rejected / remarks

    def __post_init__(self) -> None:
        _check_text("InquiryResult.request_id", self.request_id, max_len=64, pattern=ID_PATTERN)
        _check_text("InquiryResult.status", str(self.status), choices=InquiryStatus)
        object.__setattr__(self, "status", InquiryStatus(self.status))
        if not isinstance(self.assets, tuple):
            object.__setattr__(self, "assets", tuple(self.assets))
        for i, asset in enumerate(self.assets):
            if not isinstance(asset, Asset):
                raise InvalidModel(f"InquiryResult.assets[{i}]", f"expected Asset, got {_type_name(asset)}")
        if self.status is not InquiryStatus.ANSWERED and self.assets:
            raise InvalidModel("InquiryResult.assets", f"must be empty when status is {self.status.value}")
        if self.status is InquiryStatus.REJECTED and not self.message:
            raise InvalidModel("InquiryResult.message", "is required when status is rejected")
        _check_int("InquiryResult.answered_at_ms", self.answered_at_ms)
        _check_opt_text("InquiryResult.agency_ref", self.agency_ref, max_len=100)
        _check_opt_text("InquiryResult.message", self.message, max_len=2000, multiline=True)

    @classmethod
    def from_dict(cls, data: object) -> InquiryResult:
        r = _Reader(data, "InquiryResult")
        return cls(
            request_id=r.text("request_id", max_len=64, pattern=ID_PATTERN),
            status=InquiryStatus(r.text("status", choices=InquiryStatus)),
            assets=r.objs("assets", Asset.parse),
            answered_at_ms=r.integer("answered_at_ms", required=False) or 0,
            agency_ref=r.text("agency_ref", required=False, max_len=100),
            message=r.text("message", required=False, max_len=2000),
        )

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "request_id": self.request_id,
                "status": self.status.value,
                "assets": [a.to_dict() for a in self.assets],
                "answered_at_ms": self.answered_at_ms,
                "agency_ref": self.agency_ref,
                "message": self.message,
            }
        )


# -- control ---------------------------------------------------------------------------------

# Which optional fields each action needs (the agency may ask for more).
_NEEDS: dict[ControlAction, tuple[str, ...]] = {
    ControlAction.FREEZE: ("asset_id", "term_days"),
    ControlAction.SEAL: ("asset_id", "term_days"),
    ControlAction.WAITING: ("asset_id", "term_days"),
    ControlAction.RENEW: ("measure_id", "term_days"),
    ControlAction.RELEASE: ("measure_id",),
    ControlAction.RELEASE_WAITING: ("measure_id",),
    ControlAction.DEDUCT: ("amount_fen", "payee_account"),
    ControlAction.FREEZE_AND_DEDUCT: ("asset_id", "amount_fen", "payee_account"),
    ControlAction.BORDER_CONTROL: ("approval", "term_days"),
    ControlAction.LOCATION: ("approval",),
}


@dataclass(frozen=True)
class ControlRequest:
    """One control measure (财产控制) sent to one plugin.

    ``request_id`` is the idempotency key: the hub reuses it on every retry and the plugin must
    pass it to the agency so that the same request id takes effect at most once.
    """

    request_id: str
    capability: str  # e.g. "bank.control", "land.control"
    action: ControlAction
    case_number: str
    court: CourtInfo
    subject: Subject
    asset_id: str | None = None  # account no. / 不动产权证号 / 号牌号码 / phone number
    measure_id: str | None = None  # the agency's id of an earlier measure (renew, release)
    amount_fen: int | None = None  # requested amount (freeze may omit it: the whole balance)
    term_days: int | None = None  # 冻结/查封期限; deposits ≤ 1 y, movables ≤ 2 y, real estate ≤ 3 y
    payee_account: str | None = None  # the court's account (执行款专户) for deduct / 08
    approval: str | None = None  # sealed approval (compact JWS) for gated actions (边控, 定位 …)
    created_at_ms: int = 0

    def __post_init__(self) -> None:
        _check_text("ControlRequest.request_id", self.request_id, max_len=64, pattern=ID_PATTERN)
        _check_text("ControlRequest.capability", self.capability, max_len=64, pattern=CAPABILITY_PATTERN)
        _check_text("ControlRequest.action", str(self.action), choices=ControlAction)
        object.__setattr__(self, "action", ControlAction(self.action))
        object.__setattr__(self, "case_number", _check_case_number("ControlRequest.case_number", self.case_number))
        if not isinstance(self.court, CourtInfo):
            raise InvalidModel("ControlRequest.court", f"expected CourtInfo, got {_type_name(self.court)}")
        if not isinstance(self.subject, Subject):
            raise InvalidModel("ControlRequest.subject", f"expected Subject, got {_type_name(self.subject)}")
        _check_opt_text("ControlRequest.asset_id", self.asset_id, max_len=100)
        _check_opt_text("ControlRequest.measure_id", self.measure_id, max_len=100)
        _check_opt_int("ControlRequest.amount_fen", self.amount_fen, min=1, max=MAX_AMOUNT_FEN)
        _check_opt_int("ControlRequest.term_days", self.term_days, min=1, max=MAX_TERM_DAYS)
        _check_opt_text("ControlRequest.payee_account", self.payee_account, max_len=100)
        _check_opt_text("ControlRequest.approval", self.approval, max_len=16_384)
        _check_int("ControlRequest.created_at_ms", self.created_at_ms)
        for name in _NEEDS[self.action]:
            if getattr(self, name) is None:
                raise InvalidModel(f"ControlRequest.{name}", f"is required for action {self.action.value}")
        if self.action is ControlAction.DEDUCT and self.asset_id is None and self.measure_id is None:
            raise InvalidModel("ControlRequest.asset_id", "deduct needs asset_id or measure_id")

    @classmethod
    def from_dict(cls, data: object) -> ControlRequest:
        r = _Reader(data, "ControlRequest")
        return cls(
            request_id=r.text("request_id", max_len=64, pattern=ID_PATTERN),
            capability=r.text("capability", max_len=64, pattern=CAPABILITY_PATTERN),
            action=ControlAction(r.text("action", choices=ControlAction)),
            case_number=r.text("case_number", max_len=40),
            court=r.obj("court", CourtInfo.parse),
            subject=r.obj("subject", Subject.parse),
            asset_id=r.text("asset_id", required=False, max_len=100),
            measure_id=r.text("measure_id", required=False, max_len=100),
            amount_fen=r.integer("amount_fen", required=False, min=1, max=MAX_AMOUNT_FEN),
            term_days=r.integer("term_days", required=False, min=1, max=MAX_TERM_DAYS),
            payee_account=r.text("payee_account", required=False, max_len=100),
            approval=r.text("approval", required=False, max_len=16_384),
            created_at_ms=r.integer("created_at_ms", required=False) or 0,
        )

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "request_id": self.request_id,
                "capability": self.capability,
                "action": self.action.value,
                "case_number": self.case_number,
                "court": self.court.to_dict(),
                "subject": self.subject.to_dict(),
                "asset_id": self.asset_id,
                "measure_id": self.measure_id,
                "amount_fen": self.amount_fen,
                "term_days": self.term_days,
                "payee_account": self.payee_account,
                "approval": self.approval,
                "created_at_ms": self.created_at_ms,
            }
        )


@dataclass(frozen=True)
class ControlResult:
    """The agency's answer to a :class:`ControlRequest` (协助执行回执)."""

    request_id: str  # must equal the request's
    action: ControlAction  # must equal the request's
    status: ControlStatus
    measure_id: str | None = None  # the agency's id of the measure (created, renewed or released)
    requested_amount_fen: int | None = None
    controlled_amount_fen: int | None = None  # frozen / transferred; ≤ requested
    effective_at_ms: int | None = None
    expires_at_ms: int | None = None  # when the measure lapses unless renewed
    queue_position: int | None = None  # 1-based rank of a waiting (轮候) measure
    reason: str | None = None  # why partial / not controlled / rejected (余额不足, 已被他案冻结 …)
    answered_at_ms: int = 0
    agency_ref: str | None = None
    attributes: Mapping[str, JSON] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_text("ControlResult.request_id", self.request_id, max_len=64, pattern=ID_PATTERN)
        _check_text("ControlResult.action", str(self.action), choices=ControlAction)
        object.__setattr__(self, "action", ControlAction(self.action))
        _check_text("ControlResult.status", str(self.status), choices=ControlStatus)
        object.__setattr__(self, "status", ControlStatus(self.status))
        _check_opt_text("ControlResult.measure_id", self.measure_id, max_len=100)
        _check_opt_int("ControlResult.requested_amount_fen", self.requested_amount_fen, max=MAX_AMOUNT_FEN)
        _check_opt_int("ControlResult.controlled_amount_fen", self.controlled_amount_fen, max=MAX_AMOUNT_FEN)
        _check_opt_int("ControlResult.effective_at_ms", self.effective_at_ms)
        _check_opt_int("ControlResult.expires_at_ms", self.expires_at_ms)
        _check_opt_int("ControlResult.queue_position", self.queue_position, min=1)
        _check_opt_text("ControlResult.reason", self.reason, max_len=2000, multiline=True)
        _check_int("ControlResult.answered_at_ms", self.answered_at_ms)
        _check_opt_text("ControlResult.agency_ref", self.agency_ref, max_len=100)
        object.__setattr__(self, "attributes", _check_json_object("ControlResult.attributes", self.attributes))
        if (
            self.requested_amount_fen is not None
            and self.controlled_amount_fen is not None
            and self.controlled_amount_fen > self.requested_amount_fen
        ):
            raise InvalidModel(
                "ControlResult.controlled_amount_fen",
                f"{self.controlled_amount_fen} exceeds the requested {self.requested_amount_fen}",
            )
        needs_reason = (ControlStatus.PARTIAL, ControlStatus.NOT_CONTROLLED, ControlStatus.REJECTED)
        if self.status in needs_reason and not self.reason:
            raise InvalidModel("ControlResult.reason", f"is required when status is {self.status.value}")
        if self.status is ControlStatus.QUEUED and self.queue_position is None:
            raise InvalidModel("ControlResult.queue_position", "is required when status is queued")
        if (
            self.effective_at_ms is not None
            and self.expires_at_ms is not None
            and self.expires_at_ms < self.effective_at_ms
        ):
            raise InvalidModel("ControlResult.expires_at_ms", "is before effective_at_ms")

    @property
    def complete(self) -> bool:
        """True when the agency did all that was asked (or queued it as asked)."""
        return self.status in (ControlStatus.DONE, ControlStatus.QUEUED)

    @classmethod
    def from_dict(cls, data: object) -> ControlResult:
        r = _Reader(data, "ControlResult")
        return cls(
            request_id=r.text("request_id", max_len=64, pattern=ID_PATTERN),
            action=ControlAction(r.text("action", choices=ControlAction)),
            status=ControlStatus(r.text("status", choices=ControlStatus)),
            measure_id=r.text("measure_id", required=False, max_len=100),
            requested_amount_fen=r.integer("requested_amount_fen", required=False, max=MAX_AMOUNT_FEN),
            controlled_amount_fen=r.integer("controlled_amount_fen", required=False, max=MAX_AMOUNT_FEN),
            effective_at_ms=r.integer("effective_at_ms", required=False),
            expires_at_ms=r.integer("expires_at_ms", required=False),
            queue_position=r.integer("queue_position", required=False, min=1),
            reason=r.text("reason", required=False, max_len=2000),
            answered_at_ms=r.integer("answered_at_ms", required=False) or 0,
            agency_ref=r.text("agency_ref", required=False, max_len=100),
            attributes=r.mapping("attributes"),
        )

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "request_id": self.request_id,
                "action": self.action.value,
                "status": self.status.value,
                "measure_id": self.measure_id,
                "requested_amount_fen": self.requested_amount_fen,
                "controlled_amount_fen": self.controlled_amount_fen,
                "effective_at_ms": self.effective_at_ms,
                "expires_at_ms": self.expires_at_ms,
                "queue_position": self.queue_position,
                "reason": self.reason,
                "answered_at_ms": self.answered_at_ms,
                "agency_ref": self.agency_ref,
                "attributes": dict(self.attributes),
            }
        )


# -- health ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthResult:
    """What ``courthub_health`` returns: can the plugin reach its agency right now?"""

    status: HealthStatus
    message: str = ""
    latency_ms: int | None = None  # round trip to the agency, when measured
    checked_at_ms: int = 0

    def __post_init__(self) -> None:
        _check_text("HealthResult.status", str(self.status), choices=HealthStatus)
        object.__setattr__(self, "status", HealthStatus(self.status))
        if not isinstance(self.message, str) or len(self.message) > 2000:
            raise InvalidModel("HealthResult.message", "expected a string of at most 2000 characters")
        _check_opt_int("HealthResult.latency_ms", self.latency_ms)
        _check_int("HealthResult.checked_at_ms", self.checked_at_ms)

    @property
    def ok(self) -> bool:
        return self.status is HealthStatus.UP

    @classmethod
    def from_dict(cls, data: object) -> HealthResult:
        r = _Reader(data, "HealthResult")
        return cls(
            status=HealthStatus(r.text("status", choices=HealthStatus)),
            message=r.data.get("message") or "",
            latency_ms=r.integer("latency_ms", required=False),
            checked_at_ms=r.integer("checked_at_ms", required=False) or 0,
        )

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "status": self.status.value,
                "message": self.message,
                "latency_ms": self.latency_ms,
                "checked_at_ms": self.checked_at_ms,
            }
        )


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseFiled:
    """Argument of ``courthub_case_filed``: an enforcement case was filed (立案) at this node."""

    case_number: str
    court_code: str
    filed_at_ms: int
    respondents: tuple[Subject, ...]  # 被执行人
    applicants: tuple[Subject, ...] = ()  # 申请执行人
    amount_fen: int | None = None  # 执行标的

    def __post_init__(self) -> None:
        object.__setattr__(self, "case_number", _check_case_number("CaseFiled.case_number", self.case_number))
        object.__setattr__(self, "court_code", _check_court_code("CaseFiled.court_code", self.court_code))
        _check_int("CaseFiled.filed_at_ms", self.filed_at_ms)
        object.__setattr__(self, "respondents", tuple(self.respondents))
        object.__setattr__(self, "applicants", tuple(self.applicants))
        if not self.respondents:
            raise InvalidModel("CaseFiled.respondents", "must name at least one respondent (被执行人)")
        _check_opt_int("CaseFiled.amount_fen", self.amount_fen, max=MAX_AMOUNT_FEN)

    @classmethod
    def from_dict(cls, data: object) -> CaseFiled:
        r = _Reader(data, "CaseFiled")
        return cls(
            case_number=r.text("case_number", max_len=40),
            court_code=r.text("court_code", max_len=16),
            filed_at_ms=r.integer("filed_at_ms"),
            respondents=r.objs("respondents", Subject.parse),
            applicants=r.objs("applicants", Subject.parse),
            amount_fen=r.integer("amount_fen", required=False, max=MAX_AMOUNT_FEN),
        )

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "case_number": self.case_number,
                "court_code": self.court_code,
                "filed_at_ms": self.filed_at_ms,
                "respondents": [s.to_dict() for s in self.respondents],
                "applicants": [s.to_dict() for s in self.applicants],
                "amount_fen": self.amount_fen,
            }
        )


@dataclass(frozen=True)
class MeasureExpiring:
    """Argument of ``courthub_measure_expiring``: a control measure nears its expiry (续冻提醒)."""

    measure_id: str  # the agency's id of the measure
    case_number: str
    court_code: str
    plugin: str  # the plugin that placed the measure
    action: ControlAction  # the action that created it (freeze, seal, waiting …)
    asset_id: str
    expires_at_ms: int
    days_left: int

    def __post_init__(self) -> None:
        _check_text("MeasureExpiring.measure_id", self.measure_id, max_len=100)
        object.__setattr__(self, "case_number", _check_case_number("MeasureExpiring.case_number", self.case_number))
        object.__setattr__(self, "court_code", _check_court_code("MeasureExpiring.court_code", self.court_code))
        _check_text("MeasureExpiring.plugin", self.plugin, max_len=64, pattern=PLUGIN_NAME_PATTERN)
        _check_text("MeasureExpiring.action", str(self.action), choices=ControlAction)
        object.__setattr__(self, "action", ControlAction(self.action))
        _check_text("MeasureExpiring.asset_id", self.asset_id, max_len=100)
        _check_int("MeasureExpiring.expires_at_ms", self.expires_at_ms)
        _check_int("MeasureExpiring.days_left", self.days_left, min=-36_500, max=36_500)

    @classmethod
    def from_dict(cls, data: object) -> MeasureExpiring:
        r = _Reader(data, "MeasureExpiring")
        return cls(
            measure_id=r.text("measure_id", max_len=100),
            case_number=r.text("case_number", max_len=40),
            court_code=r.text("court_code", max_len=16),
            plugin=r.text("plugin", max_len=64),
            action=ControlAction(r.text("action", choices=ControlAction)),
            asset_id=r.text("asset_id", max_len=100),
            expires_at_ms=r.integer("expires_at_ms"),
            days_left=r.integer("days_left", min=-36_500, max=36_500),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "measure_id": self.measure_id,
            "case_number": self.case_number,
            "court_code": self.court_code,
            "plugin": self.plugin,
            "action": self.action.value,
            "asset_id": self.asset_id,
            "expires_at_ms": self.expires_at_ms,
            "days_left": self.days_left,
        }


@dataclass(frozen=True)
class Recipient:
    name: str
    phone: str
    role: str = "party"  # party (当事人), judge (承办法官), other

    def __post_init__(self) -> None:
        _check_text("Recipient.name", self.name, max_len=100)
        _check_text("Recipient.phone", self.phone, pattern=PHONE_PATTERN)
        _check_text("Recipient.role", self.role, max_len=16, pattern=re.compile(r"party|judge|other"))

    @classmethod
    def parse(cls, data: object, path: str = "Recipient") -> Recipient:
        r = _Reader(data, path)
        try:
            return cls(
                name=r.text("name", max_len=100),
                phone=r.text("phone", pattern=PHONE_PATTERN),
                role=r.text("role", required=False, max_len=16) or "party",
            )
        except InvalidModel as exc:
            raise _reroot(exc, "Recipient", path) from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "phone": self.phone, "role": self.role}


@dataclass(frozen=True)
class Notification:
    """Argument of ``courthub_notify``: a message for parties or judges (12368-style SMS)."""

    notification_id: str  # unique; the idempotency key for the sender
    recipients: tuple[Recipient, ...]
    text: str
    case_number: str | None = None
    channel: str = "sms"
    created_at_ms: int = 0

    def __post_init__(self) -> None:
        _check_text("Notification.notification_id", self.notification_id, max_len=64, pattern=ID_PATTERN)
        object.__setattr__(self, "recipients", tuple(self.recipients))
        if not self.recipients:
            raise InvalidModel("Notification.recipients", "must name at least one recipient")
        _check_text("Notification.text", self.text, max_len=1000)
        if self.case_number is not None:
            object.__setattr__(self, "case_number", _check_case_number("Notification.case_number", self.case_number))
        _check_text("Notification.channel", self.channel, max_len=16, pattern=re.compile(r"[a-z][a-z0-9_]*"))
        _check_int("Notification.created_at_ms", self.created_at_ms)

    @classmethod
    def from_dict(cls, data: object) -> Notification:
        r = _Reader(data, "Notification")
        return cls(
            notification_id=r.text("notification_id", max_len=64, pattern=ID_PATTERN),
            recipients=r.objs("recipients", Recipient.parse),
            text=r.text("text", max_len=1000),
            case_number=r.text("case_number", required=False, max_len=40),
            channel=r.text("channel", required=False, max_len=16) or "sms",
            created_at_ms=r.integer("created_at_ms", required=False) or 0,
        )

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "notification_id": self.notification_id,
                "recipients": [x.to_dict() for x in self.recipients],
                "text": self.text,
                "case_number": self.case_number,
                "channel": self.channel,
                "created_at_ms": self.created_at_ms,
            }
        )


# -- validation of untrusted answers ---------------------------------------------------------


M = TypeVar("M", PluginInfo, InquiryResult, ControlResult, HealthResult)


def coerce(value: object, model: type[M]) -> M:
    """Validate an answer from a plugin: a ``model`` instance or a plain dict of its fields.

    Instances are round-tripped through ``to_dict``/``from_dict``, so a plugin that put garbage
    into a field after construction is caught too. Raises :class:`InvalidModel` naming the field.
    """
    name = model.__name__
    if isinstance(value, Mapping):
        data: object = value
    elif isinstance(value, model):
        try:
            data = value.to_dict()
        except Exception as exc:
            raise InvalidModel(name, f"cannot be serialised: {type(exc).__name__}: {exc}") from None
    else:
        raise InvalidModel(name, f"expected {name} or a dict, got {_type_name(value)}")
    try:
        return model.from_dict(data)
    except InvalidModel:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidModel(name, f"is malformed: {type(exc).__name__}: {exc}") from None
