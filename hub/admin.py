"""Local administration of a running node: the AdminService on a Unix socket in the node's home.

The socket file is created 0600, so only the node's owner can use it; it never listens on the
network. The CLI is its client (``hub.cli.client``). ``Call`` dispatches named operations with JSON
arguments so workflows can add commands without a new RPC each; the typed RPCs cover the core.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from hub.clock import OffsetClock
from hub.codes import CourtCode
from hub.errors import InvalidInput, NotFound
from hub.federation.interceptors import ErrorInterceptor
from hub.proto.courthub.v1 import admin_pb2 as apb
from hub.proto.courthub.v1 import admin_pb2_grpc as agrpc
from hub.workflows.directives import list_directives
from hub.workflows.engine import make_attachment

if TYPE_CHECKING:
    from hub.node import Node

Operation = Callable[[dict[str, Any]], Awaitable[Any]]


class AdminService(agrpc.AdminServiceServicer):
    def __init__(self, node: Node) -> None:
        self.node = node
        self.operations: dict[str, Operation] = {
            "directive.list": self._directive_list,
            "revoke": self._revoke,
            "chain_head.send": self._chain_head,
            "bench.emit": node.bench.emit,
            "bench.stats": node.bench.stats,
            "workflow.create": self._wf_create,
            "workflow.act": self._wf_act,
            "workflow.list": self._wf_list,
            "workflow.show": self._wf_show,
            "workflow.tick": self._wf_tick,
        }
        if isinstance(node.clock, OffsetClock):
            self.operations["clock.advance"] = self._clock_advance

    def register(self, name: str, operation: Operation) -> None:
        self.operations[name] = operation

    async def Status(self, request: apb.StatusRequest, context: Any) -> apb.StatusResponse:
        return apb.StatusResponse(json=json.dumps(await self.node.status(), ensure_ascii=False))

    async def Ping(self, request: apb.PingRequest, context: Any) -> apb.PingResponse:
        court = CourtCode.parse(request.court)
        count = request.count or 1
        if not 1 <= count <= 1000:
            raise InvalidInput("ping count must be 1–1000")
        results = await self.node.pinger.ping(court, count, (request.timeout_ms or 5000) / 1000)
        return apb.PingResponse(
            results=[
                apb.PingResult(
                    envelope_id=r["envelope_id"],
                    ok=r["ok"],
                    round_trip_ms=r.get("round_trip_ms", 0.0),
                    route=r["route"],
                    error=r.get("error", ""),
                )
                for r in results
            ]
        )

    async def SendDirective(self, request: apb.SendDirectiveRequest, context: Any) -> apb.SendDirectiveResponse:
        eid, recipients = await self.node.directives.send(
            CourtCode.parse(request.to),
            request.subtree,
            request.title,
            request.body,
            request.level or "routine",
            request.feedback_due_ms,
        )
        return apb.SendDirectiveResponse(envelope_id=eid, recipients=recipients)

    async def Call(self, request: apb.CallRequest, context: Any) -> apb.CallResponse:
        operation = self.operations.get(request.method)
        if operation is None:
            raise NotFound(f"no admin operation {request.method!r}; known: {', '.join(sorted(self.operations))}")
        try:
            args = json.loads(request.args_json or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"arguments of {request.method} are not JSON: {exc}") from None
        if not isinstance(args, dict):
            raise InvalidInput(f"arguments of {request.method} must be a JSON object")
        result = await operation(args)
        return apb.CallResponse(result_json=json.dumps(result, ensure_ascii=False))

    async def _wf_create(self, args: dict[str, Any]) -> Any:
        parties = [CourtCode.parse(str(p)) for p in _list(args, "parties")]
        files = [
            make_attachment(str(f["name"]), base64.b64decode(str(f["content_b64"]))) for f in args.get("files", [])
        ]
        item_id = await self.node.workflows.create(
            str(args.get("workflow", "")),
            parties,
            str(args.get("title", "")),
            _dict(args, "data"),
            case_number=str(args.get("case_number", "")),
            files=files,
        )
        return {"item_id": item_id, "parties": [str(p) for p in parties]}

    async def _wf_act(self, args: dict[str, Any]) -> Any:
        files = [
            make_attachment(str(f["name"]), base64.b64decode(str(f["content_b64"]))) for f in args.get("files", [])
        ]
        return await self.node.workflows.act(
            str(args.get("item_id", "")),
            CourtCode.parse(str(args.get("party", ""))),
            str(args.get("action", "")),
            _dict(args, "data"),
            files=files,
        )

    async def _wf_list(self, args: dict[str, Any]) -> Any:
        return await self.node.workflows.items(args.get("workflow") or None, overdue_only=bool(args.get("overdue")))

    async def _wf_show(self, args: dict[str, Any]) -> Any:
        return await self.node.workflows.history(str(args.get("item_id", "")))

    async def _wf_tick(self, args: dict[str, Any]) -> Any:
        return await self.node.workflows.tick()

    async def _clock_advance(self, args: dict[str, Any]) -> Any:
        clock = self.node.clock
        assert isinstance(clock, OffsetClock)
        clock.advance(int(float(args.get("days", 0)) * 86_400_000) + int(args.get("ms", 0)))
        return {"now_ms": clock.now_ms(), "offset_ms": clock.offset_ms}

    async def _directive_list(self, args: dict[str, Any]) -> Any:
        return await self.node.store.read(list_directives)

    async def _revoke(self, args: dict[str, Any]) -> Any:
        court = CourtCode.parse(str(args.get("court", "")))
        return {"court": str(court), "serial": await self.node.revoke(court)}

    async def _chain_head(self, args: dict[str, Any]) -> Any:
        from hub.maintenance import send_chain_head

        return {"envelope_id": await send_chain_head(self.node)}


def _list(args: dict[str, Any], key: str) -> list[Any]:
    value = args.get(key, [])
    if not isinstance(value, list):
        raise InvalidInput(f"{key} must be a list")
    return value


def _dict(args: dict[str, Any], key: str) -> dict[str, Any]:
    value = args.get(key) or {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{key} must be an object")
    return value


async def start_admin_server(node: Node) -> grpc.aio.Server:
    path = node.home.admin_socket
    if path.exists():
        path.unlink()
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    service = AdminService(node)
    node.admin = service
    agrpc.add_AdminServiceServicer_to_server(service, server)
    old = os.umask(0o077)  # the socket is born 0600
    try:
        server.add_insecure_port(f"unix://{path}")
        await server.start()
    finally:
        os.umask(old)
    return server
