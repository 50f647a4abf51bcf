"""Errors of the agency simulators and the agency client.

Server side, a handler raises :class:`Refused` (a business refusal: term too long, measure lapsed,
approval missing …) or lets a :class:`~plugins.agency.fields.FieldError` escape (malformed request);
the scaffolding renders either as a JSON error body::

    {"error": {"reason": "term_exceeds_limit", "message": "...", "field": "term_days"}}

Client side, every failure is a :class:`~hub.errors.CourtHubError` subclass so the hub can report
it like any other domain error:

* :class:`AgencyRefused` — the agency answered with a 4xx error body (``status``, ``reason``,
  ``field``, ``message`` from it);
* :class:`AgencyReplyInvalid` — the agency answered something that is not a valid reply (the
  message names the endpoint and the offending field);
* :class:`AgencyUnavailable` — connection refused, timeout, 5xx: retrying may help.
"""

from __future__ import annotations

from hub.errors import CourtHubError, InvalidInput, Unavailable


class Refused(Exception):
    """Raised by a simulator handler to refuse a request with a clear, machine-readable reason."""

    def __init__(self, reason: str, message: str, *, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.field = field

    def body(self) -> dict[str, object]:
        err: dict[str, object] = {"reason": self.reason, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return {"error": err}


class AgencyRefused(CourtHubError):
    """The agency refused the request (HTTP 4xx with an error body)."""

    reason = "agency_refused"

    def __init__(self, message: str, *, status: int, reason: str, field: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.http_status = status
        self.field = field

    @property
    def conflict(self) -> bool:
        return self.http_status == 409


class AgencyReplyInvalid(InvalidInput):
    """The agency's reply is malformed; the message names the endpoint and the field."""

    reason = "agency_reply_invalid"

    def __init__(self, message: str, *, endpoint: str, field: str | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.field = field


class AgencyUnavailable(Unavailable):
    """The agency did not answer usefully (connection error, timeout, 5xx). Retrying may help."""

    reason = "agency_unavailable"

    def __init__(self, message: str, *, endpoint: str, timeout: bool = False) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.timeout = timeout
