"""The CLI's client for a running node's admin socket."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from hub.config import Home
from hub.errors import CourtHubError, Unavailable
from hub.federation.interceptors import REASON_KEY
from hub.proto.courthub.v1 import admin_pb2 as apb
from hub.proto.courthub.v1 import admin_pb2_grpc as agrpc

T = TypeVar("T")


def _reason(exc: grpc.RpcError) -> str:
    for key, value in exc.trailing_metadata() or ():
        if key == REASON_KEY:
            return str(value)
    return "error"


def with_admin(home: Home, fn: Callable[[agrpc.AdminServiceStub], T], timeout: float = 60) -> T:
    """Call the running node at ``home``; a stopped node or a refused call is a CourtHubError."""
    sock: Path = home.admin_socket
    if not sock.exists():
        raise Unavailable(f"the node at {home.path} is not running (start it with: court-hub run --home {home.path})")
    with grpc.insecure_channel(f"unix://{sock}") as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=5)
        except grpc.FutureTimeoutError:
            raise Unavailable(f"the node at {home.path} does not answer on {sock}") from None
        try:
            return fn(agrpc.AdminServiceStub(channel))
        except grpc.RpcError as exc:
            raise CourtHubError(exc.details() or str(exc.code()), reason=_reason(exc)) from None


def call(home: Home, method: str, args: dict[str, Any] | None = None, timeout: float = 60) -> Any:
    request = apb.CallRequest(method=method, args_json=json.dumps(args or {}, ensure_ascii=False))
    reply = with_admin(home, lambda stub: stub.Call(request, timeout=timeout), timeout)
    return json.loads(reply.result_json)
