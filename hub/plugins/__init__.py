"""Agency plugins: the hook API (:mod:`hub.plugins.hookspec`), its typed models
(:mod:`hub.plugins.models`), the host that loads and calls plugins (:mod:`hub.plugins.host`) and
the conformance kit for plugin authors (:mod:`hub.plugins.conformance`).

A plugin imports what it needs from here::

    from hub.plugins import hookimpl, PLUGIN_API_VERSION, PluginInfo, InquiryRequest, InquiryResult
"""

from hub.plugins.hookspec import ENTRY_POINT_GROUP, PLUGIN_API_VERSION, PROJECT_NAME, hookimpl, hookspec
from hub.plugins.models import (
    AgencyKind,
    AgencyRejected,
    AgencyUnavailable,
    Asset,
    CaseFiled,
    ControlAction,
    ControlRequest,
    ControlResult,
    ControlStatus,
    CourtInfo,
    HealthResult,
    HealthStatus,
    IdType,
    InquiryRequest,
    InquiryResult,
    InquiryStatus,
    InvalidModel,
    MeasureExpiring,
    Notification,
    PluginConfigError,
    PluginError,
    PluginInfo,
    Recipient,
    Subject,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGIN_API_VERSION",
    "PROJECT_NAME",
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
    "hookimpl",
    "hookspec",
]
