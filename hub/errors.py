"""Domain errors.

One base type, :class:`CourtHubError`, carries a machine-readable ``reason`` (stable, snake_case,
used in rejections, receipts, audit entries and gRPC error details) and a human message that names
what was wrong and where. Subclasses exist only where callers need to tell errors apart. The gRPC
status each reason maps to lives here too, so interceptors and the CLI agree.
"""

from __future__ import annotations

import grpc


class CourtHubError(Exception):
    """Base for every error the hub reports to a user, a peer or a plugin author."""

    reason: str = "error"
    status: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason

    def __str__(self) -> str:
        return self.message


class InvalidInput(CourtHubError):
    """Input (CLI argument, config value, parsed text, frame field) is malformed."""

    reason = "invalid_input"
    status = grpc.StatusCode.INVALID_ARGUMENT


class InvalidCode(InvalidInput):
    """A court code or case number (案号) does not parse. The message names the offending part."""

    reason = "invalid_code"


class ConfigError(InvalidInput):
    """A configuration file or environment override is wrong; the message names the key and file."""

    reason = "invalid_config"


class NotFound(CourtHubError):
    reason = "not_found"
    status = grpc.StatusCode.NOT_FOUND


class TrustError(CourtHubError):
    """A seal, certificate, token or signature failed verification."""

    reason = "untrusted"
    status = grpc.StatusCode.UNAUTHENTICATED


class AuthorityError(CourtHubError):
    """The actor is who it says, but may not do this (wrong direction, level or party)."""

    reason = "not_authorized"
    status = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(CourtHubError):
    """A peer, the node or a service is not reachable right now; retrying may help."""

    reason = "unavailable"
    status = grpc.StatusCode.UNAVAILABLE


class StoreError(CourtHubError):
    """The store refused a write (disk full, schema mismatch); nothing was half-written."""

    reason = "store_error"
    status = grpc.StatusCode.INTERNAL
