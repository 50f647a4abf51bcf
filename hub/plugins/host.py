"""The plugin host: loads agency plugins, configures them and calls them one at a time.

Loading. Plugins come from the ``courthub.plugins`` entry-point group (one entry point per plugin,
pointing at a module or an object with ``@hookimpl`` methods) and from objects registered
explicitly (tests, embedded plugins). For each candidate the host, in order:

1. skips it when its name is blocked (:meth:`PluginHost.block`, or ``enabled = false`` in its
   configuration section) — checked against the entry-point name before importing, and against
   the declared name after;
2. reads ``courthub_plugin_info`` directly from the object and validates it
   (:class:`~hub.plugins.models.PluginInfo`); refuses a plugin whose API major version differs
   from :data:`~hub.plugins.hookspec.PLUGIN_API_VERSION`, one whose name is taken, one that
   declares ``*.inquiry``/``*.control`` without implementing the hook, and one whose
   ``inquire``/``control``/``health`` is not ``async def``;
3. registers it with pluggy under its declared name (pluggy checks hook signatures) and refuses
   implementations of unknown ``courthub_*`` hooks (usually a typo);
4. calls ``courthub_configure`` with the plugin's own section of the node configuration (without
   the host's keys ``enabled`` and ``call_timeout_s``). A :class:`PluginConfigError` (or any
   exception) leaves the plugin loaded but *unconfigured*: it gets no work.

A plugin that fails to import or is refused is listed with the reason; it never stops the node.

Calling one plugin. pluggy calls every implementation of a hook, but a job is for one agency. The
host therefore calls hooks through ``PluginManager.subset_hook_caller(name, remove_plugins=<all
others>)`` — the public pluggy API pytest uses to scope conftest hooks — cached per (plugin, hook)
and rebuilt whenever a plugin is registered or removed. This keeps pluggy's argument checking and
the plugin's own hook wrappers, while other plugins (including their wrappers) never see the call.
Event hooks are called the same way, plugin by plugin, so one plugin's failure stays its own.

Isolation. Every call has a timeout (the call's, else the plugin's ``call_timeout_s``, else the
host default). Exceptions, timeouts and invalid answers come back as a :class:`PluginFailure`
inside a :class:`CallOutcome` — never raised into the caller — with timings, and are counted in
the plugin's :class:`PluginStats`. A timed-out coroutine is cancelled and abandoned (the host does
not wait for a plugin that ignores cancellation). Synchronous event hooks run in a thread so that
a blocking plugin cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, Literal, TypeVar

import pluggy

from hub.clock import Clock, SystemClock
from hub.errors import ConfigError, CourtHubError
from hub.plugins.hookspec import (
    ASYNC_HOOKS,
    ENTRY_POINT_GROUP,
    PLUGIN_API_VERSION,
    PROJECT_NAME,
    hook_for_capability,
)
from hub.plugins.models import (
    CaseFiled,
    ControlRequest,
    ControlResult,
    HealthResult,
    HealthStatus,
    InquiryRequest,
    InquiryResult,
    InvalidModel,
    MeasureExpiring,
    Notification,
    PluginError,
    PluginInfo,
    coerce,
)

__all__ = [
    "HOST_CONFIG_KEYS",
    "CallOutcome",
    "FailureKind",
    "PluginFailure",
    "PluginHost",
    "PluginRefused",
    "PluginStats",
    "PluginStatus",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
FailureKind = Literal["raised", "timeout", "invalid", "unavailable"]
PluginState = Literal["active", "unconfigured", "disabled", "blocked", "refused"]

#: Keys of a plugin's configuration section that belong to the host, not the plugin.
HOST_CONFIG_KEYS = ("enabled", "call_timeout_s")
DEFAULT_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 5.0
EVENT_TIMEOUT_S = 10.0


class PluginRefused(CourtHubError):
    """A plugin cannot be loaded (API version, invalid info, duplicate name, bad hooks)."""

    reason = "plugin_refused"


class PluginFailure(CourtHubError):
    """How one call to a plugin failed.

    ``kind``: ``raised`` (the plugin raised), ``timeout`` (no answer within the timeout),
    ``invalid`` (the answer did not validate; ``message`` names the field) or ``unavailable``
    (no such plugin on this host, or it is disabled / unconfigured). ``retryable`` tells the work
    queue whether another attempt may help.
    """

    reason = "plugin_failure"

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        plugin: str,
        hook: str,
        retryable: bool = True,
        error_type: str | None = None,
        elapsed_ms: int = 0,
    ) -> None:
        super().__init__(f"{plugin}.{hook}: {kind}: {message}", reason=f"plugin_{kind}")
        self.kind: FailureKind = kind
        self.detail = message
        self.plugin = plugin
        self.hook = hook
        self.retryable = retryable
        self.error_type = error_type
        self.elapsed_ms = elapsed_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.detail,
            "plugin": self.plugin,
            "hook": self.hook,
            "retryable": self.retryable,
            "error_type": self.error_type,
            "elapsed_ms": self.elapsed_ms,
        }


@dataclass(frozen=True)
class CallOutcome(Generic[T]):
    """The result of one host call: either ``value`` or ``failure``, with timings."""

    plugin: str
    hook: str
    started_at_ms: int
    elapsed_ms: int
    value: T | None = None
    failure: PluginFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def unwrap(self) -> T:
        """The value, or raise the :class:`PluginFailure`."""
        if self.failure is not None:
            raise self.failure
        assert self.value is not None
        return self.value


@dataclass
class PluginStats:
    """Per-plugin call counters (for ``status`` and Prometheus)."""

    calls: int = 0
    ok: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # by kind
    total_ms: int = 0
    max_ms: int = 0
    last_failure: dict[str, Any] | None = None

    def record(self, outcome: CallOutcome[Any], at_ms: int) -> None:
        self.calls += 1
        self.total_ms += outcome.elapsed_ms
        self.max_ms = max(self.max_ms, outcome.elapsed_ms)
        if outcome.failure is None:
            self.ok += 1
        else:
            kind = outcome.failure.kind
            self.failures[kind] = self.failures.get(kind, 0) + 1
            self.last_failure = {**outcome.failure.to_dict(), "at_ms": at_ms}

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "ok": self.ok,
            "failures": dict(self.failures),
            "avg_ms": round(self.total_ms / self.calls, 1) if self.calls else None,
            "max_ms": self.max_ms,
            "last_failure": self.last_failure,
        }


@dataclass
class PluginStatus:
    """One line of :meth:`PluginHost.list`."""

    name: str
    state: PluginState
    source: str  # "entry point <name> (<dist> <version>)" or "registered"
    message: str = ""  # why refused / unconfigured / disabled
    info: PluginInfo | None = None
    health: HealthResult | None = None
    stats: PluginStats = field(default_factory=PluginStats)

    def to_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "name": self.name,
            "state": self.state,
            "source": self.source,
            "message": self.message,
            "version": info.version if info else None,
            "api_version": info.api_version if info else None,
            "agency_kind": info.agency_kind.value if info else None,
            "capabilities": list(info.capabilities) if info else [],
            "scope": info.scope if info else None,
            "health": self.health.to_dict() if self.health else None,
            "stats": self.stats.to_dict(),
        }


@dataclass
class _Loaded:
    obj: object
    status: PluginStatus
    timeout_s: float | None
    callers: dict[str, pluggy.HookCaller] = field(default_factory=dict)


def _api_major(version: str) -> int:
    return int(version.split(".", 1)[0])


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 1000 else text[:1000] + "…"


class PluginHost:
    """Loads agency plugins and calls them one at a time, with timeouts and typed failures.

    :param config: the node's plugin configuration, ``{plugin_name: {"enabled": bool,
        "call_timeout_s": float, ...plugin settings}}``. A plugin without a section is enabled
        with empty settings.
    :param block: plugin names never to load (like ``pytest -p no:NAME``).
    :param default_timeout_s: the call timeout when neither the call nor the plugin's section
        gives one.
    """

    def __init__(
        self,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        block: Iterable[str] = (),
        default_timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Clock | None = None,
    ) -> None:
        self._config: dict[str, dict[str, Any]] = {}
        for name, section in (config or {}).items():
            if not isinstance(section, Mapping):
                raise ConfigError(f"plugins.{name}: expected a table of settings, got {type(section).__name__}")
            self._config[name] = dict(section)
        self._blocked: set[str] = set(block)
        self.default_timeout_s = default_timeout_s
        self.clock: Clock = clock or SystemClock()
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(importlib.import_module("hub.plugins.hookspec"))
        self._plugins: dict[str, _Loaded] = {}
        self._others: dict[str, PluginStatus] = {}  # refused / disabled / blocked, by name
        self._tasks: set[asyncio.Future[Any]] = set()  # abandoned (timed-out) calls

    # -- loading -----------------------------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> builtins.list[str]:
        """Load every plugin of the entry-point group; returns the names now active.

        Failures are recorded (see :meth:`list`) and never raised.
        """
        loaded: builtins.list[str] = []
        for ep in entry_points(group=group):
            source = self._ep_source(ep)
            if self._skip_reason(ep.name) is not None:
                self._note_skipped(ep.name, source)
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                log.warning("plugin entry point %s failed to import: %s", ep.name, exc)
                self._others[ep.name] = PluginStatus(
                    ep.name, "refused", source, f"import failed: {type(exc).__name__}: {_describe(exc)}"
                )
                continue
            try:
                name = self.register(obj, source=source)
            except PluginRefused as exc:
                log.warning("plugin %s refused: %s", ep.name, exc)
                self._others.setdefault(ep.name, PluginStatus(ep.name, "refused", source, str(exc)))
                continue
            if name is not None and self._status(name).state == "active":
                loaded.append(name)
        return loaded

    @staticmethod
    def _ep_source(ep: EntryPoint) -> str:
        dist = getattr(ep, "dist", None)
        if dist is not None:
            return f"entry point {ep.name} ({dist.name} {dist.version})"
        return f"entry point {ep.name}"

    def _skip_reason(self, name: str) -> PluginState | None:
        if name in self._blocked:
            return "blocked"
        section = self._config.get(name, {})
        if section.get("enabled", True) is False:
            return "disabled"
        return None

    def _note_skipped(self, name: str, source: str, info: PluginInfo | None = None) -> None:
        state = self._skip_reason(name)
        assert state is not None
        message = "blocked by name" if state == "blocked" else "disabled in configuration (enabled = false)"
        self._others[name] = PluginStatus(name, state, source, message, info=info)

    def register(self, plugin: object, *, source: str = "registered") -> str | None:
        """Register one plugin object: a module, an instance, or a class (instantiated without
        arguments, so an entry point may name the class).

        Returns its name, or None when it is blocked or disabled by configuration. Raises
        :class:`PluginRefused` naming the plugin and the problem; the refusal is also listed.
        """
        label = getattr(plugin, "__name__", None) or type(plugin).__name__
        if inspect.isclass(plugin):
            try:
                plugin = plugin()
            except Exception as exc:
                problem = f"plugin {label!r}: instantiating {label}() failed: {type(exc).__name__}: {_describe(exc)}"
                self._others[label] = PluginStatus(label, "refused", source, problem)
                raise PluginRefused(problem) from None
        try:
            info = self._read_info(plugin, label)
        except PluginRefused as exc:
            self._others[label] = PluginStatus(label, "refused", source, str(exc))
            raise
        name = info.name
        if self._skip_reason(name) is not None:
            self._note_skipped(name, source, info)
            return None
        try:
            self._check_plugin(plugin, info)
            if name in self._plugins:
                raise PluginRefused(f"plugin {name!r}: a plugin of that name is already registered")
            try:
                self.pm.register(plugin, name=name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                raise PluginRefused(f"plugin {name!r} {info.version}: {exc}") from None
            unknown = [
                hook.name
                for hook in (self.pm.get_hookcallers(plugin) or [])
                if hook.name.startswith("courthub_") and not hook.has_spec()
            ]
            if unknown:
                self.pm.unregister(plugin)
                raise PluginRefused(
                    f"plugin {name!r} {info.version}: implements unknown hook(s) {', '.join(sorted(unknown))} "
                    f"(plugin API {PLUGIN_API_VERSION}; see hub/plugins/hookspec.py)"
                )
        except PluginRefused as exc:
            self._others[name] = PluginStatus(name, "refused", source, str(exc), info=info)
            raise
        section = self._config.get(name, {})
        timeout = section.get("call_timeout_s")
        if timeout is not None and (not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0):
            self.pm.unregister(plugin)
            problem = f"plugins.{name}.call_timeout_s: expected a positive number of seconds, got {timeout!r}"
            self._others[name] = PluginStatus(name, "refused", source, problem, info=info)
            raise PluginRefused(problem)
        self._others.pop(name, None)
        self._plugins[name] = _Loaded(plugin, PluginStatus(name, "active", source, info=info), timeout)
        self._invalidate()
        self._configure(name)
        log.info("plugin %s %s loaded (%s)", name, info.version, ", ".join(info.capabilities))
        return name

    def _read_info(self, plugin: object, label: str) -> PluginInfo:
        fn = getattr(plugin, "courthub_plugin_info", None)
        if fn is None or self.pm.parse_hookimpl_opts(plugin, "courthub_plugin_info") is None:
            raise PluginRefused(f"plugin {label!r}: has no @hookimpl courthub_plugin_info")
        try:
            raw = fn()
        except Exception as exc:
            raise PluginRefused(
                f"plugin {label!r}: courthub_plugin_info raised {type(exc).__name__}: {_describe(exc)}"
            ) from None
        try:
            info = coerce(raw, PluginInfo)
        except InvalidModel as exc:
            raise PluginRefused(f"plugin {label!r}: invalid plugin info: {exc}") from None
        if info.api_major != _api_major(PLUGIN_API_VERSION):
            raise PluginRefused(
                f"plugin {info.name!r} {info.version} was written for plugin API {info.api_version}, "
                f"but this hub speaks plugin API {PLUGIN_API_VERSION}: major versions must match"
            )
        return info

    def _check_plugin(self, plugin: object, info: PluginInfo) -> None:
        for hook in ASYNC_HOOKS:
            fn = getattr(plugin, hook, None)
            implemented = fn is not None and self.pm.parse_hookimpl_opts(plugin, hook) is not None
            if implemented and not inspect.iscoroutinefunction(fn):
                raise PluginRefused(
                    f"plugin {info.name!r} {info.version}: {hook} must be 'async def' "
                    "(wrap blocking code with asyncio.to_thread)"
                )
        for cap in info.capabilities:
            served_by = hook_for_capability(cap)
            if served_by is None:
                continue
            if getattr(plugin, served_by, None) is None or self.pm.parse_hookimpl_opts(plugin, served_by) is None:
                raise PluginRefused(
                    f"plugin {info.name!r} {info.version}: declares {cap!r} but does not implement {served_by}"
                )

    def _configure(self, name: str) -> None:
        loaded = self._plugins[name]
        settings = {k: v for k, v in self._config.get(name, {}).items() if k not in HOST_CONFIG_KEYS}
        caller = self._caller(name, "courthub_configure")
        if not caller.get_hookimpls():
            loaded.status.state, loaded.status.message = "active", ""
            return
        try:
            caller(config=settings)
        except Exception as exc:
            loaded.status.state = "unconfigured"
            loaded.status.message = f"configure failed: {type(exc).__name__}: {_describe(exc)}"
            log.warning("plugin %s not configured: %s", name, loaded.status.message)
            return
        loaded.status.state, loaded.status.message = "active", ""

    def configure(self, config: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the configuration and re-run ``courthub_configure`` on every loaded plugin.

        Plugins now disabled are unregistered; (re-)enabling a plugin needs a new
        :meth:`register` / :meth:`load_entry_points`.
        """
        self._config = {name: dict(section) for name, section in config.items()}
        for name in list(self._plugins):
            if self._skip_reason(name) is not None:
                loaded = self._plugins[name]
                self.unregister(name)
                self._note_skipped(name, loaded.status.source, loaded.status.info)
            else:
                self._configure(name)

    def unregister(self, name: str) -> None:
        loaded = self._plugins.pop(name, None)
        if loaded is not None:
            self.pm.unregister(loaded.obj)
            self._invalidate()

    def block(self, name: str) -> None:
        """Block a plugin by name: unregister it now and refuse it from now on."""
        self._blocked.add(name)
        loaded = self._plugins.get(name)
        self.unregister(name)
        self._note_skipped(name, loaded.status.source if loaded else "blocked", loaded.status.info if loaded else None)

    def _invalidate(self) -> None:
        for loaded in self._plugins.values():
            loaded.callers.clear()

    def hook(self, plugin: str, hook: str) -> pluggy.HookCaller:
        """The hook caller of ``hook`` restricted to ``plugin`` (no timeout, no validation: for the
        conformance kit and diagnostics; the node uses the ``call_*`` methods)."""
        if plugin not in self._plugins:
            raise PluginFailure("unavailable", "no such plugin on this host", plugin=plugin, hook=hook)
        return self._caller(plugin, hook)

    def plugin(self, name: str) -> object:
        """The registered plugin object (for the conformance kit and tests)."""
        if name not in self._plugins:
            raise PluginFailure("unavailable", "no such plugin on this host", plugin=name, hook="plugin")
        return self._plugins[name].obj

    def _caller(self, name: str, hook: str) -> pluggy.HookCaller:
        loaded = self._plugins[name]
        caller = loaded.callers.get(hook)
        if caller is None:
            others = [p.obj for n, p in self._plugins.items() if n != name]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            loaded.callers[hook] = caller
        return caller

    # -- inspection --------------------------------------------------------------------------

    def names(self) -> builtins.list[str]:
        """Active (loaded and configured) plugins."""
        return [n for n, p in self._plugins.items() if p.status.state == "active"]

    def info(self, name: str) -> PluginInfo:
        loaded = self._plugins.get(name)
        if loaded is None or loaded.status.info is None:
            raise PluginFailure("unavailable", "no such plugin on this host", plugin=name, hook="info")
        return loaded.status.info

    def list(self) -> builtins.list[PluginStatus]:
        """Every plugin the host knows of, loaded or not, with its state, info, last health, stats."""
        out = [p.status for p in self._plugins.values()]
        out += [s for n, s in self._others.items() if n not in self._plugins]
        return sorted(out, key=lambda s: s.name)

    def capabilities(self) -> dict[str, builtins.list[str]]:
        """Capability → active plugins offering it (for local routing and announcements)."""
        caps: dict[str, builtins.list[str]] = {}
        for name in self.names():
            for cap in self.info(name).capabilities:
                caps.setdefault(cap, []).append(name)
        return dict(sorted(caps.items()))

    def plugins_for(self, capability: str) -> builtins.list[str]:
        return self.capabilities().get(capability, [])

    def stats(self, name: str) -> PluginStats:
        return self._status(name).stats

    def _status(self, name: str) -> PluginStatus:
        if name in self._plugins:
            return self._plugins[name].status
        status = self._others.get(name)
        if status is None:
            raise PluginFailure("unavailable", "no such plugin on this host", plugin=name, hook="status")
        return status

    # -- calls -------------------------------------------------------------------------------

    async def call_inquire(
        self, plugin: str, request: InquiryRequest, timeout_s: float | None = None
    ) -> CallOutcome[InquiryResult]:
        """Call ``courthub_inquire`` on ``plugin`` only. Never raises for the plugin's faults."""

        def check(result: InquiryResult) -> None:
            if result.request_id != request.request_id:
                raise InvalidModel(
                    "InquiryResult.request_id",
                    f"{result.request_id!r} is not the request's {request.request_id!r}",
                )

        return await self._call_answer(
            plugin, "courthub_inquire", {"request": request}, InquiryResult, timeout_s, request.capability, check
        )

    async def call_control(
        self, plugin: str, request: ControlRequest, timeout_s: float | None = None
    ) -> CallOutcome[ControlResult]:
        """Call ``courthub_control`` on ``plugin`` only. Never raises for the plugin's faults."""

        def check(result: ControlResult) -> None:
            if result.request_id != request.request_id:
                raise InvalidModel(
                    "ControlResult.request_id",
                    f"{result.request_id!r} is not the request's {request.request_id!r}",
                )
            if result.action is not request.action:
                raise InvalidModel(
                    "ControlResult.action",
                    f"{result.action.value!r} is not the request's {request.action.value!r}",
                )

        return await self._call_answer(
            plugin, "courthub_control", {"request": request}, ControlResult, timeout_s, request.capability, check
        )

    async def call_health(self, plugin: str, timeout_s: float | None = None) -> CallOutcome[HealthResult]:
        """Call ``courthub_health`` on ``plugin``; the last answer is kept for :meth:`list`."""
        outcome = await self._call_answer(
            plugin, "courthub_health", {}, HealthResult, timeout_s or HEALTH_TIMEOUT_S, None, None, need_active=False
        )
        if plugin in self._plugins:
            status = self._plugins[plugin].status
            if outcome.value is not None:
                status.health = outcome.value
            elif outcome.failure is not None and outcome.failure.kind != "unavailable":
                status.health = HealthResult(
                    HealthStatus.DOWN,
                    f"health check {outcome.failure.kind}: {outcome.failure.detail}"[:2000],
                    checked_at_ms=outcome.started_at_ms,
                )
        return outcome

    async def check_health(self, timeout_s: float | None = None) -> dict[str, CallOutcome[HealthResult]]:
        """Health of every loaded plugin, concurrently."""
        names = list(self._plugins)
        outcomes = await asyncio.gather(*(self.call_health(n, timeout_s) for n in names))
        return dict(zip(names, outcomes, strict=True))

    async def _call_answer(
        self,
        plugin: str,
        hook: str,
        kwargs: dict[str, Any],
        model: Any,
        timeout_s: float | None,
        capability: str | None,
        check: Callable[[Any], None] | None,
        *,
        need_active: bool = True,
    ) -> CallOutcome[Any]:
        started = self.clock.now_ms()
        t0 = time.perf_counter()

        def done(value: Any = None, failure: PluginFailure | None = None) -> CallOutcome[Any]:
            elapsed = int((time.perf_counter() - t0) * 1000)
            if failure is not None:
                failure.elapsed_ms = elapsed
            outcome: CallOutcome[Any] = CallOutcome(plugin, hook, started, elapsed, value, failure)
            if plugin in self._plugins:
                self._plugins[plugin].status.stats.record(outcome, started)
            if failure is not None:
                log.info("plugin call failed: %s", failure)
            return outcome

        unavailable = self._unavailable(plugin, hook, capability, need_active)
        if unavailable is not None:
            return done(failure=unavailable)
        caller = self._caller(plugin, hook)
        budget = self._timeout(plugin, timeout_s)
        try:
            coro = caller(**kwargs)
            if not inspect.isawaitable(coro):
                raise TypeError(f"{hook} returned {type(coro).__name__}, not an awaitable (is it 'async def'?)")
        except Exception as exc:
            return done(failure=self._raised(plugin, hook, exc))
        raw, failure = await self._await(plugin, hook, coro, budget)
        if failure is not None:
            return done(failure=failure)
        try:
            value = coerce(raw, model)
            if check is not None:
                check(value)
        except InvalidModel as exc:
            return done(failure=PluginFailure("invalid", str(exc), plugin=plugin, hook=hook, error_type="InvalidModel"))
        return done(value=value)

    def _unavailable(self, plugin: str, hook: str, capability: str | None, need_active: bool) -> PluginFailure | None:
        loaded = self._plugins.get(plugin)
        if loaded is None:
            other = self._others.get(plugin)
            why = f"{other.state}: {other.message}" if other else "no such plugin on this host"
            return PluginFailure("unavailable", why, plugin=plugin, hook=hook)
        if need_active and loaded.status.state != "active":
            return PluginFailure(
                "unavailable", f"{loaded.status.state}: {loaded.status.message}", plugin=plugin, hook=hook
            )
        info = loaded.status.info
        if capability is not None and info is not None and capability not in info.capabilities:
            return PluginFailure(
                "unavailable",
                f"does not offer {capability!r} (offers {', '.join(info.capabilities)})",
                plugin=plugin,
                hook=hook,
                retryable=False,
            )
        if not self._caller(plugin, hook).get_hookimpls():
            return PluginFailure("unavailable", f"does not implement {hook}", plugin=plugin, hook=hook, retryable=False)
        return None

    def _timeout(self, plugin: str, timeout_s: float | None) -> float:
        if timeout_s is not None:
            return timeout_s
        loaded = self._plugins.get(plugin)
        if loaded is not None and loaded.timeout_s is not None:
            return loaded.timeout_s
        return self.default_timeout_s

    @staticmethod
    def _raised(plugin: str, hook: str, exc: BaseException) -> PluginFailure:
        retryable = exc.retryable if isinstance(exc, PluginError) else True
        # A plugin that found its agency's reply malformed reports the same failure as a plugin
        # whose own result the host found malformed: the answer was invalid.
        return PluginFailure(
            "invalid" if isinstance(exc, InvalidModel) else "raised",
            f"{type(exc).__name__}: {_describe(exc)}",
            plugin=plugin,
            hook=hook,
            retryable=retryable,
            error_type=type(exc).__name__,
        )

    async def _await(
        self, plugin: str, hook: str, aw: Awaitable[Any], budget: float
    ) -> tuple[Any, PluginFailure | None]:
        """Await a plugin's coroutine within ``budget`` seconds, in a task of its own."""
        task: asyncio.Future[Any] = asyncio.ensure_future(aw)
        try:
            finished, _ = await asyncio.wait({task}, timeout=budget)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not finished:
            task.cancel()
            # Do not wait for a plugin that ignores cancellation; keep a reference until it ends.
            self._tasks.add(task)
            task.add_done_callback(self._forget)
            return None, PluginFailure(
                "timeout", f"no answer within {budget:g} s", plugin=plugin, hook=hook, error_type="TimeoutError"
            )
        exc = task.exception()
        if exc is not None:
            return None, self._raised(plugin, hook, exc)
        return task.result(), None

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieve, so asyncio does not log "exception never retrieved"

    # -- events ------------------------------------------------------------------------------

    async def case_filed(self, case: CaseFiled, timeout_s: float | None = None) -> builtins.list[CallOutcome[None]]:
        """``courthub_case_filed`` on every active plugin that implements it, each on its own."""
        return await self._broadcast("courthub_case_filed", {"case": case}, self.names(), timeout_s)

    async def measure_expiring(self, measure: MeasureExpiring, timeout_s: float | None = None) -> CallOutcome[None]:
        """``courthub_measure_expiring`` on the plugin that placed the measure only."""
        outcomes = await self._broadcast("courthub_measure_expiring", {"measure": measure}, [measure.plugin], timeout_s)
        if outcomes:
            return outcomes[0]
        failure = self._unavailable(measure.plugin, "courthub_measure_expiring", None, True)
        failure = failure or PluginFailure(
            "unavailable",
            "does not implement courthub_measure_expiring",
            plugin=measure.plugin,
            hook="courthub_measure_expiring",
            retryable=False,
        )
        return CallOutcome(measure.plugin, "courthub_measure_expiring", self.clock.now_ms(), 0, None, failure)

    async def notify(
        self, notification: Notification, timeout_s: float | None = None
    ) -> builtins.list[CallOutcome[None]]:
        """``courthub_notify`` on every active plugin declaring a ``*.notify`` capability."""
        names = [
            n
            for n in self.names()
            if any(hook_for_capability(c) == "courthub_notify" for c in self.info(n).capabilities)
        ]
        return await self._broadcast("courthub_notify", {"notification": notification}, names, timeout_s)

    async def _broadcast(
        self, hook: str, kwargs: dict[str, Any], names: Iterable[str], timeout_s: float | None
    ) -> builtins.list[CallOutcome[None]]:
        targets = [n for n in names if n in self._plugins and self._plugins[n].status.state == "active"]
        targets = [n for n in targets if self._caller(n, hook).get_hookimpls()]
        return list(await asyncio.gather(*(self._call_event(n, hook, kwargs, timeout_s) for n in targets)))

    async def _call_event(
        self, plugin: str, hook: str, kwargs: dict[str, Any], timeout_s: float | None
    ) -> CallOutcome[None]:
        started = self.clock.now_ms()
        t0 = time.perf_counter()
        caller = self._caller(plugin, hook)
        impl = caller.get_hookimpls()[0].function
        budget = timeout_s if timeout_s is not None else EVENT_TIMEOUT_S
        failure: PluginFailure | None = None
        if inspect.iscoroutinefunction(impl):
            try:
                # Not firstresult: pluggy returns a list with this plugin's (one) coroutine.
                results = caller(**kwargs)
                aw: Awaitable[Any] = asyncio.gather(*(r for r in results if inspect.isawaitable(r)))
            except Exception as exc:
                failure = self._raised(plugin, hook, exc)
            else:
                _, failure = await self._await(plugin, hook, aw, budget)
        else:
            _, failure = await self._await(plugin, hook, asyncio.to_thread(caller, **kwargs), budget)
        elapsed = int((time.perf_counter() - t0) * 1000)
        if failure is not None:
            failure.elapsed_ms = elapsed
            log.warning("plugin event failed: %s", failure)
        outcome: CallOutcome[None] = CallOutcome(plugin, hook, started, elapsed, None, failure)
        self._plugins[plugin].status.stats.record(outcome, started)
        return outcome
