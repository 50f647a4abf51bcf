"""A node's home directory and its configuration file.

One TOML file per node (``HOME/config.toml``), validated on load: a wrong key or value is a
:class:`ConfigError` naming the file and the key. Any value can be overridden by an environment
variable ``COURTHUB_<SECTION>__<KEY>`` (e.g. ``COURTHUB_STORE__URL``), which is how containers and
scale-out workers point a node at PostgreSQL or a NATS cluster without editing the file.

Secrets never live here: keys are separate 0600 files under ``HOME/keys``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.codes import CourtCode
from hub.errors import ConfigError, InvalidCode
from hub.text import control_character

ENV_PREFIX = "COURTHUB_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _court(value: str) -> str:
    try:
        return str(CourtCode.parse(value))
    except InvalidCode as exc:
        raise ValueError(str(exc)) from None


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address {value!r} must be HOST:PORT")
    return value


class NodeSection(_Section):
    court: str
    name: str = Field(min_length=1, max_length=100)
    listen: str
    # The address children dial (defaults to `listen`); differs behind NAT or a proxy.
    advertise: str = ""
    root: bool = False

    _court = field_validator("court")(_court)
    _listen = field_validator("listen")(_address)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if bad := control_character(value):
            raise ValueError(f"court name contains a control character ({bad})")
        return value

    @field_validator("advertise")
    @classmethod
    def _advertise(cls, value: str) -> str:
        return _address(value) if value else value


class ParentSection(_Section):
    court: str
    address: str
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")

    _court = field_validator("court")(_court)
    _address = field_validator("address")(_address)


class TrustSection(_Section):
    root: str = ""
    certificate_days: int = Field(default=365, ge=1, le=3650)


class StoreSection(_Section):
    # SQLAlchemy URL; empty = SQLite file HOME/store.db.
    url: str = ""


class BusSection(_Section):
    # NATS URL of an external cluster; empty = start the embedded nats-server.
    nats_url: str = ""


class FederationSection(_Section):
    # How long inbox ids are kept for dedupe: longer than the longest outage to survive.
    dedupe_retention_days: int = Field(default=30, ge=1, le=3650)
    delivered_retention_days: int = Field(default=7, ge=0, le=3650)
    chain_head_interval_s: float = Field(default=60.0, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)
    # Envelopes per second one child's link may deliver, and the burst it may save up (a token
    # bucket; hub.federation.ratelimit). Beyond it the parent pauses reading that link — flow
    # control pushes back on the child, nothing is dropped — so one flooding child cannot starve
    # the others. 0 = unlimited. The default is above what one link carries on modest hardware.
    child_rate_per_s: float = Field(default=10_000.0, ge=0)
    child_burst: int = Field(default=20_000, ge=1, le=10_000_000)


class AdminSection(_Section):
    # Prometheus metrics and health over HTTP; empty = off.
    metrics_listen: str = ""


class AgencySection(_Section):
    # Renewal reminders (续冻提醒): first this many days before a measure expires, then again at
    # `reminder_final_days`.
    reminder_lead_days: int = Field(default=30, ge=1, le=365)
    reminder_final_days: int = Field(default=7, ge=0, le=365)
    # A court gives up on an agency's answer after this long (per-agency status "timed_out").
    inquiry_timeout_s: float = Field(default=3600.0, gt=0)
    control_timeout_s: float = Field(default=3600.0, gt=0)
    # Reminders, recovery and time-outs are checked this often.
    check_interval_s: float = Field(default=30.0, gt=0)
    # Plugin calls in flight per plugin in the node's own worker; `node_worker = false` leaves the
    # queue to `court-hub worker` processes (scale-out).
    worker_concurrency: int = Field(default=16, ge=1, le=1000)
    node_worker: bool = True
    # How long the queue waits for a worker's ack before giving its job to another worker (a
    # killed worker's jobs wait this long). The node and every `court-hub worker` must agree:
    # they all read it from this file.
    ack_wait_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    # An agency call that fails (unreachable, timed out, refused as busy) is tried this many times
    # in all, waiting retry_backoff_s[i] before attempt i + 2 (the last delay repeats).
    max_attempts: int = Field(default=5, ge=1, le=100)
    retry_backoff_s: list[float] = Field(default_factory=lambda: [2.0, 10.0, 60.0, 300.0], min_length=1, max_length=20)

    @field_validator("retry_backoff_s")
    @classmethod
    def _backoff(cls, value: list[float]) -> list[float]:
        if any(not 0 <= d <= 86_400 for d in value):
            raise ValueError("every delay must be between 0 and 86400 seconds")
        return value

    # Who acts for the court in requests to agencies, unless a request names someone.
    judge_name: str = Field(default="执行指挥中心", min_length=1, max_length=50)
    judge_phone: str = ""
    officer_ids: list[str] = Field(default_factory=list)
    # The court's enforcement account (执行款专户) for 扣划, unless a request names one.
    payee_account: str = ""


class Config(_Section):
    node: NodeSection
    parent: ParentSection | None = None
    trust: TrustSection = TrustSection()
    store: StoreSection = StoreSection()
    bus: BusSection = BusSection()
    federation: FederationSection = FederationSection()
    admin: AdminSection = AdminSection()
    agency: AgencySection = AgencySection()
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)
    case_mgmt: dict[str, Any] = Field(default_factory=dict)  # validated by hub.workflows.deadlines

    @property
    def court(self) -> CourtCode:
        return CourtCode.parse(self.node.court)


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if section == "home":
            continue
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise ConfigError(f"environment {name}: section [{section}] is not a table")
        data[section][key] = value
    return data


def _explain(exc: ValidationError, source: str) -> ConfigError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return ConfigError(f"{source}: {where}: {first['msg']}")


class Home:
    """Paths inside a node's home directory."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().resolve()

    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    @property
    def court_key(self) -> Path:
        return self.path / "keys" / "court.key"

    @property
    def tls_key(self) -> Path:
        return self.path / "keys" / "tls.key"

    @property
    def tls_cert(self) -> Path:
        return self.path / "tls.crt"

    @property
    def parent_cert(self) -> Path:
        return self.path / "parent.crt"

    @property
    def database(self) -> Path:
        return self.path / "store.db"

    @property
    def nats_dir(self) -> Path:
        return self.path / "nats"

    @property
    def admin_socket(self) -> Path:
        return self.path / "admin.sock"

    @property
    def pid_file(self) -> Path:
        return self.path / "node.pid"

    def exists(self) -> bool:
        return self.config_file.exists()

    def load(self, environ: dict[str, str] | None = None) -> Config:
        if not self.config_file.exists():
            raise ConfigError(f"{self.path} is not a node home (no config.toml); run `court-hub init` first")
        try:
            data = tomllib.loads(self.config_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.config_file}: not valid TOML: {exc}") from None
        data = _apply_env(data, dict(os.environ) if environ is None else environ)
        try:
            return Config.model_validate(data)
        except ValidationError as exc:
            raise _explain(exc, str(self.config_file)) from None

    def save(self, config: Config) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        data = config.model_dump(exclude_none=True)
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
        os.replace(tmp, self.config_file)

    def store_url(self, config: Config) -> str:
        return config.store.url or f"sqlite:///{self.database}"
