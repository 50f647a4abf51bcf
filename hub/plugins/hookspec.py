"""The agency plugin hook specifications (pluggy project ``courthub``).

This module is the contract between the hub and agency plugins (banks, land registries, public
security, telecom operators, notification gateways). Every hook is declared here, named
``courthub_*``, typed, and documented: when the host calls it, what each argument means, what the
return value does. ``docs/plugins.md`` has one section per hook with a minimal example, and
``tests/test_hookspec.py`` fails when a hook lacks either.

**Versioning.** :data:`PLUGIN_API_VERSION` is ``MAJOR.MINOR`` and independent of the hub's own
version. MINOR grows when hooks or optional fields are added (old plugins keep working); MAJOR
grows when a hook's meaning or signature changes. A plugin declares the version it was written
against in :class:`~hub.plugins.models.PluginInfo`; the host refuses a plugin whose MAJOR differs.

**One plugin at a time.** pluggy would normally call every implementation of a hook. The host
instead calls the request/answer hooks (``plugin_info``, ``configure``, ``inquire``, ``control``,
``health``) on *one* plugin, chosen by the job, through a per-plugin subset caller
(``PluginManager.subset_hook_caller``), and it calls the event hooks (``case_filed``,
``measure_expiring``, ``notify``) on each plugin separately too, so that one plugin's exception or
delay never reaches another. The request/answer hooks are therefore marked ``firstresult``: a
targeted call yields that plugin's single answer. See :mod:`hub.plugins.host`.

**Async.** ``courthub_inquire``, ``courthub_control`` and ``courthub_health`` must be ``async def``
(the host refuses to register a plugin whose implementation is not a coroutine function): the
host enforces its timeout by cancelling the coroutine, which it cannot do to a blocking call. Wrap
blocking client libraries with ``asyncio.to_thread``. The event hooks may be plain or ``async``.

**Isolation.** Plugins receive only the models of :mod:`hub.plugins.models` and their own
configuration section: never keys, federation objects, the store or another plugin's data.

Usage in a plugin::

    from hub.plugins import hookimpl, PluginInfo

    class MyBank:
        @hookimpl
        def courthub_plugin_info(self) -> PluginInfo: ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy

from hub.plugins.models import (
    CaseFiled,
    ControlRequest,
    ControlResult,
    HealthResult,
    InquiryRequest,
    InquiryResult,
    MeasureExpiring,
    Notification,
    PluginInfo,
)

PROJECT_NAME = "courthub"
ENTRY_POINT_GROUP = "courthub.plugins"

#: The hook API version, ``MAJOR.MINOR``. Separate from the hub's version (see module docstring).
PLUGIN_API_VERSION = "1.0"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- identity and configuration --------------------------------------------------------------


@hookspec(firstresult=True)
def courthub_plugin_info() -> PluginInfo:
    """Describe the plugin: who it is, which agency it speaks to and what it offers.

    Called once when the host registers the plugin (before ``courthub_configure``) and again by
    ``court-hub status``; must be cheap and must not touch the network.

    :return: a :class:`~hub.plugins.models.PluginInfo` (or a dict of its fields):

        - ``name`` — unique on the node, ``[a-z][a-z0-9_-]{0,63}``; the key of the plugin's
          configuration section, of its work queue and of ``block`` lists;
        - ``version`` — the plugin package's version;
        - ``api_version`` — the :data:`PLUGIN_API_VERSION` the plugin was written against; a
          different MAJOR makes the host refuse the plugin;
        - ``agency_kind`` — ``bank``, ``land``, ``public_security``, ``telecom`` or ``other``;
        - ``capabilities`` — ``"<domain>.<operation>"`` strings, e.g. ``"bank.inquiry"``,
          ``"bank.control"``. ``*.inquiry`` capabilities are served by ``courthub_inquire``,
          ``*.control`` by ``courthub_control``, ``*.notify`` by ``courthub_notify``; the node
          announces them to the federation for capability routing;
        - ``scope`` — ``"national"`` for a 总对总 link (the whole country) or the court code the
          link serves (点对点), e.g. ``"豫14"``.

    The answer of one plugin is used (``firstresult``). A plugin without this hook, or with an
    invalid answer, is refused at registration with an error naming the field.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def courthub_configure(config: Mapping[str, Any]) -> None:
    """Receive the plugin's configuration section from the node's configuration.

    Called once after registration and before any other call except ``courthub_plugin_info``,
    and again whenever the node reloads its configuration.

    :param config: the plugin's own section of the node configuration (``[plugins.<name>]`` in the
        TOML file) without the host's ``enabled`` key: e.g. ``{"base_url": "https://…",
        "timeout_s": 10}``. Plain JSON/TOML values; the plugin never sees other sections.
    :return: nothing. Raise :class:`~hub.plugins.models.PluginConfigError` naming the key when a
        setting is missing or invalid: the host then marks the plugin as not configured and sends
        it no work, and ``court-hub status`` shows the message. Do not connect to the agency here
        (``courthub_health`` is for that); validate and store the settings.
    """


# -- request / answer ------------------------------------------------------------------------


@hookspec(firstresult=True)
async def courthub_inquire(request: InquiryRequest) -> InquiryResult:
    """Ask the agency what it holds for a subject (财产查询, e.g. 立案即查 right after filing).

    Called by a queue worker for each inquiry job routed to this plugin, i.e. for a capability
    the plugin declared (``request.capability``). Must be ``async def``. The host wraps every call
    in a timeout and cancels the coroutine when it expires; the job is then retried with backoff.

    :param request: an :class:`~hub.plugins.models.InquiryRequest`: ``request_id`` (unique, reused
        on every retry of the same job — pass it to the agency as its request number),
        ``capability``, ``case_number`` (案号), ``court`` (requesting court, judge, officer
        credentials, document), ``subject`` (被执行人: name, ID type and number) and ``params``
        (capability-specific, e.g. ``{"from": "2024-01-01", "to": "2024-06-30"}`` for bank
        transaction detail).
    :return: an :class:`~hub.plugins.models.InquiryResult` (or a dict of its fields) with the same
        ``request_id``: ``status`` ``answered`` with the ``assets`` found (possibly none),
        ``not_found`` when the agency does not know the subject, or ``rejected`` with a
        ``message``. The host validates the answer; an invalid one fails the job as ``invalid``.

    Raise :class:`~hub.plugins.models.AgencyUnavailable` (or any exception) for a failure that a
    retry may cure, :class:`~hub.plugins.models.AgencyRejected` for one it will not.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
async def courthub_control(request: ControlRequest) -> ControlResult:
    """Execute a control measure at the agency (冻结, 续冻, 轮候, 解冻, 扣划, 查封, 边控, 定位).

    Called by a queue worker for each control job routed to this plugin. Must be ``async def``;
    timeouts, retries and dead-lettering work as for ``courthub_inquire``.

    **Idempotency.** A job may be delivered more than once (a worker crashed after the agency
    acted but before the hub recorded it). The plugin must pass ``request.request_id`` to the
    agency as the request number so that the same request id takes effect at most once, and must
    return the original outcome when the agency reports a duplicate. The conformance kit checks
    this by sending the same request twice and comparing the agency's state.

    :param request: a :class:`~hub.plugins.models.ControlRequest`: ``request_id``, ``capability``,
        ``action`` (:class:`~hub.plugins.models.ControlAction`; ``action.bank_code`` gives the
        bank control code 01/02/03/04/05/06/08), ``case_number``, ``court``, ``subject``, and as
        the action needs: ``asset_id`` (account, 不动产权证号, plate, phone number), ``measure_id``
        (the agency's id of the measure to renew or release), ``amount_fen``, ``term_days``
        (legal maximum: deposits 1 year, movables 2, real estate 3), ``payee_account`` (the
        court's account for 扣划) and ``approval`` (the sealed approval, a compact JWS, for
        gated actions such as 边控 and 定位 — verify it before acting).
    :return: a :class:`~hub.plugins.models.ControlResult` (or dict) with the same ``request_id``
        and ``action``: ``status`` ``done``, ``partial`` (with ``controlled_amount_fen`` and the
        ``reason``), ``queued`` (a waiting measure, with ``queue_position``), ``not_controlled``
        or ``rejected`` (with the ``reason``), the agency's ``measure_id`` and the measure's
        ``expires_at_ms`` so the hub can remind before it lapses.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
async def courthub_health() -> HealthResult:
    """Report whether the plugin can reach its agency now.

    Called periodically by the host (and by ``court-hub status``) with a short timeout. Must be
    ``async def`` and cheap: a ping or a status endpoint, not a real inquiry.

    :return: a :class:`~hub.plugins.models.HealthResult` (or dict): ``status`` ``up``,
        ``degraded`` or ``down``, a ``message`` for operators and the measured ``latency_ms``.
        A health call that raises or times out is shown as ``down`` with the failure.
    """
    raise NotImplementedError


# -- events ----------------------------------------------------------------------------------


@hookspec
def courthub_case_filed(case: CaseFiled) -> None:
    """An enforcement case was filed (立案) at this node.

    Called once per filed case, on every plugin that implements it, after the case is committed
    and after the node has queued its 立案即查 inquiry jobs (plugins do **not** start inquiries
    themselves: inquiries arrive through ``courthub_inquire``). Useful to pre-register a case
    with an agency that wants it, or to warm a cache. May be ``async``; the host applies a
    timeout, and a failure is logged for this plugin only.

    :param case: a :class:`~hub.plugins.models.CaseFiled`: ``case_number``, ``court_code``,
        ``filed_at_ms``, ``respondents`` (被执行人), ``applicants`` (申请执行人), ``amount_fen``.
    :return: ignored.
    """


@hookspec
def courthub_measure_expiring(measure: MeasureExpiring) -> None:
    """A control measure this plugin placed nears its expiry and has not been renewed (续冻提醒).

    Called on the plugin named by ``measure.plugin`` (only that one) when the node's reminder
    period starts (configurable, e.g. 30 days before expiry) and again as configured. The hub
    itself raises the reminder for the judges; the hook lets the plugin tell the agency or check
    the measure's state. May be ``async``.

    :param measure: a :class:`~hub.plugins.models.MeasureExpiring`: the agency's ``measure_id``,
        ``case_number``, ``court_code``, ``plugin``, the ``action`` that created it, ``asset_id``,
        ``expires_at_ms`` and ``days_left``.
    :return: ignored.
    """


@hookspec
def courthub_notify(notification: Notification) -> None:
    """Send a notification to parties or judges (12368-style SMS).

    Called on every plugin that declares a ``*.notify`` capability (e.g. ``sms.notify``) when a
    node event produces a notification (case filed, measure done, reminder, directive …). May be
    ``async``; the host applies a timeout. Use ``notification_id`` as the idempotency key with the
    gateway: the same notification may be offered again after a crash.

    :param notification: a :class:`~hub.plugins.models.Notification`: ``notification_id``,
        ``recipients`` (name, phone, role ``party``/``judge``/``other``), ``text``, optional
        ``case_number`` and ``channel`` (``sms``).
    :return: ignored; raise to report that the message was not sent.
    """


#: The hooks the host calls on one chosen plugin and whose single answer it uses.
REQUEST_HOOKS = (
    "courthub_plugin_info",
    "courthub_configure",
    "courthub_inquire",
    "courthub_control",
    "courthub_health",
)
#: The hooks the host must find as ``async def`` in a plugin that implements them.
ASYNC_HOOKS = ("courthub_inquire", "courthub_control", "courthub_health")
#: Event hooks: called on each implementing plugin separately.
EVENT_HOOKS = ("courthub_case_filed", "courthub_measure_expiring", "courthub_notify")
#: Which hook serves a capability's operation (``bank.inquiry`` → ``courthub_inquire``).
OPERATION_HOOKS = {"inquiry": "courthub_inquire", "control": "courthub_control", "notify": "courthub_notify"}


def hook_for_capability(capability: str) -> str | None:
    """The hook that serves ``capability`` (``"bank.control"`` → ``"courthub_control"``), if any."""
    _, _, operation = capability.partition(".")
    return OPERATION_HOOKS.get(operation)
