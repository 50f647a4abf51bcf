"""Node set-up and operation: init, token, join, run, status, ping, revoke."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from hub import provision
from hub.cli.client import call, with_admin
from hub.cli.output import console, emit_json, fail, table
from hub.codes import CourtCode
from hub.config import Home
from hub.proto.courthub.v1 import admin_pb2 as apb

HomeOpt = Annotated[
    Path,
    typer.Option("--home", envvar="COURTHUB_HOME", help="Node home directory (default: $COURTHUB_HOME)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
_TTL = re.compile(r"^(\d+)([smhd])$")


def parse_ttl(text: str) -> int:
    m = _TTL.match(text.strip())
    if not m or int(m.group(1)) == 0:
        fail(f"--ttl {text!r} must be a positive number with a unit s, m, h or d (e.g. 1h)")
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if seconds > 30 * 86400:
        fail("--ttl may be at most 30d: join tokens are meant to be used soon")
    return seconds


def init(
    home: HomeOpt,
    court: Annotated[str, typer.Option(help="Court code (法院代字), e.g. 豫1402.")],
    name: Annotated[str, typer.Option(help="Court name, e.g. 商丘市梁园区人民法院.")],
    listen: Annotated[str, typer.Option(help="HOST:PORT the link server listens on.")],
    root: Annotated[bool, typer.Option("--root", help="This node is the root of the tree (trust anchor).")] = False,
    advertise: Annotated[str, typer.Option(help="HOST:PORT children dial, if not --listen.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Create a node: keys (0600), TLS certificate, config and store."""
    config, fingerprint = provision.init_node(home, court, name, listen, root=root, advertise=advertise)
    h = Home(home)
    code = config.court
    result = {"court": str(code), "name": name, "home": str(h.path), "root": root, "tls_fingerprint": fingerprint}
    if json_out:
        emit_json(result)
        return
    console.print(f"[green]initialised[/] {name} ({code}) in {h.path}")
    console.print(f"TLS fingerprint: {fingerprint}")
    if not root:
        console.print("next: get a join token from the parent court (court-hub token) and run court-hub join")


def token(
    home: HomeOpt,
    child: Annotated[str, typer.Option(help="Court code of the child to enroll.")],
    ttl: Annotated[str, typer.Option(help="How long the token is valid (e.g. 30m, 1h, 2d).")] = "1h",
    json_out: JsonOpt = False,
) -> None:
    """Print a one-time join token for a child court."""
    seconds = parse_ttl(ttl)
    tok = provision.issue_token(home, child, seconds)
    if json_out:
        emit_json({"token": tok.token, "child": str(tok.child), "expires_in_s": seconds})
    else:
        print(tok.token)


def join(
    home: HomeOpt,
    token: Annotated[str, typer.Option("--token", help="Join token from the parent court.")],
    json_out: JsonOpt = False,
) -> None:
    """Enroll this node under its parent (the parent must be running)."""
    parent = asyncio.run(provision.join(home, token))
    config = Home(home).load()
    if json_out:
        emit_json({"court": str(config.court), "parent": parent.court, "address": parent.address})
    else:
        console.print(f"[green]enrolled[/] {config.court} under {parent.court} ({parent.address})")


def run(
    home: HomeOpt,
    nats_url: Annotated[str, typer.Option(help="External NATS URL (default: start the embedded nats-server).")] = "",
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run the node in the foreground until SIGTERM or Ctrl-C."""
    from hub.node import Node

    h = Home(home)
    config = h.load()
    if nats_url:
        config.bus.nats_url = nats_url
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> None:
        node = Node(h, config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await node.start()
            console.print(f"[green]serving[/] {config.node.name} ({config.court}) on {config.node.listen}")
            await stop.wait()
        finally:
            await node.stop()

    asyncio.run(main())


def status(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Court, parent link, children, backlog and oldest unacked age of a running node."""
    h = Home(home)
    reply = with_admin(h, lambda stub: stub.Status(apb.StatusRequest(), timeout=10))
    data: dict[str, Any] = json.loads(reply.json)
    if json_out:
        emit_json(data)
        return
    console.print(f"[bold]{data['name']}[/] ({data['court']}, {data['level']})  listen {data['listen']}")
    p = data["parent"]
    if p:
        console.print(f"上级法院 parent: {p['court']} {p['address']}  link [bold]{p['state']}[/] {p['last_error']}")
    table(
        "下级法院 children",
        ["court", "name", "link", "sent", "received", "backlog", "oldest unacked (s)"],
        [
            [
                c["court"],
                c["name"],
                c["state"],
                c["envelopes_sent"],
                c["envelopes_received"],
                c["backlog"]["pending"],
                c["backlog"]["oldest_age_s"],
            ]
            for c in data["children"]
        ],
    )
    b = data["backlog"]
    console.print(f"backlog 待发: {b['pending']} envelopes, oldest unacked {b['oldest_unacked_age_s']} s")
    console.print(f"audit chain: {data['audit']['entries']} entries, head {data['audit']['head'][:16]}…")
    duty = data.get("duty")
    if duty:
        state = "已签到" if duty.get("signed_in") else "未签到"
        console.print(f"值班 duty officer: {escape(duty['officer'])} {escape(duty.get('phone', ''))} ({state})")
    else:
        console.print("值班 duty officer: 未排班 (none rostered today)")


def ping(
    home: HomeOpt,
    court: Annotated[str, typer.Argument(help="Court code to ping.")],
    count: Annotated[int, typer.Option(min=1, max=1000)] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each pong.")] = 5.0,
    json_out: JsonOpt = False,
) -> None:
    """Sealed round trip to any court in the tree, with the route and times."""
    h = Home(home)
    code = CourtCode.parse(court)
    request = apb.PingRequest(court=str(code), count=count, timeout_ms=int(timeout * 1000))
    reply = with_admin(h, lambda stub: stub.Ping(request, timeout=count * timeout + 10))
    results = [
        {
            "envelope_id": r.envelope_id,
            "ok": r.ok,
            "round_trip_ms": r.round_trip_ms,
            "route": list(r.route),
            "error": r.error,
        }
        for r in reply.results
    ]
    if json_out:
        emit_json({"court": str(code), "results": results})
    else:
        for r in results:
            route = " → ".join(r["route"])
            if r["ok"]:
                console.print(f"pong from {code}: {r['round_trip_ms']:.1f} ms  via {route}")
            else:
                console.print(f"[red]no pong[/] from {code}: {r['error']}  via {route}")
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)


def revoke(
    home: HomeOpt,
    court: Annotated[str, typer.Option(help="Court below this one whose certificate to revoke.")],
    json_out: JsonOpt = False,
) -> None:
    """Revoke a descendant court's certificate; the revocation floods the tree."""
    result = call(Home(home), "revoke", {"court": court})
    if json_out:
        emit_json(result)
    else:
        console.print(f"revoked {result['court']} (certificate {result['serial']})")


__all__ = ["init", "join", "ping", "revoke", "run", "status", "token"]
