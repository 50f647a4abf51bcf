"""gRPC server interceptors: domain errors → status codes, in one place.

Handlers raise :class:`hub.errors.CourtHubError`; the interceptor turns it into the error's gRPC
status with its message as details and its machine-readable reason in the ``courthub-reason``
trailing metadata. Anything else becomes INTERNAL with a generic message (the traceback goes to
the log, never to the peer), so no handler formats errors itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from hub.errors import CourtHubError

log = logging.getLogger(__name__)
REASON_KEY = "courthub-reason"


def reason_of(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == REASON_KEY:
            return str(value)
    return ""


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except CourtHubError as exc:
                await context.abort(exc.status, exc.message, trailing_metadata=((REASON_KEY, exc.reason),))
            except Exception:
                log.exception("unhandled error in %s", method)
                await context.abort(
                    grpc.StatusCode.INTERNAL, "internal error", trailing_metadata=((REASON_KEY, "internal"),)
                )

        return grpc.unary_unary_rpc_method_handler(
            guarded, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
