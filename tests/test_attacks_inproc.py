"""Attacks that need time under the test's control: in-process trees (tests/inproc.py) of real
nodes — TLS gRPC on loopback, SQLite — whose domain clock is a ``FixedClock``.

* a replayed envelope after the dedupe retention pruned its id: refused as ``stale_envelope``,
  its effect not repeated (over the real link, and straight into the exchange);
* slow-loris link streams that never finish the handshake: refused at the handshake timeout,
  audited, while the honest child keeps being served;
* a peer that goes silent after the handshake: closed by the heartbeat rule, the others not.

Timeouts are module constants of the link code; the tests shorten them (monkeypatch) instead of
waiting the production values.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from inproc import InProcTree, inproc_tree
from rogue import Identity, RogueLink, connected, header_of
from sqlalchemy import Connection, func, select, text

from hub import provision
from hub.codes import CourtCode
from hub.federation import link as link_module
from hub.federation import server as server_module
from hub.federation.envelope import Target, build
from hub.localtree import NodeSpec
from hub.maintenance import prune
from hub.netutil import free_port
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.proto.courthub.v1 import payloads_pb2 as ppb
from hub.store.schema import directives, outbox

TREE = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),
]


async def _rogue(tree: InProcTree, base: Path) -> Identity:
    """豫1402, legitimately enrolled under 豫14, with no node of its own: the attacker."""
    home = base / f"rogue-{time.monotonic_ns()}"
    provision.init_node(home, "豫1402", "商丘市梁园区人民法院", f"127.0.0.1:{free_port()}")
    token = await asyncio.to_thread(provision.issue_token, tree["豫14"].home.path, "豫1402", 60)
    await provision.join(home, token.token)
    return await asyncio.to_thread(Identity.from_home, home)


async def _audit(tree: InProcTree, court: str, action: str) -> list[dict[str, Any]]:
    def read(conn: Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            text("SELECT envelope_id, peer, detail FROM audit WHERE action = :a ORDER BY seq"), {"a": action}
        ).all()
        return [{"envelope_id": e, "peer": p, **json.loads(d or "{}")} for e, p, d in rows]

    return await tree[court].store.read(read)


async def _count(tree: InProcTree, court: str, query: Any) -> int:
    return int(await tree[court].store.read(lambda c: c.execute(query).scalar_one()))


async def _serves(tree: InProcTree) -> None:
    """The honest child 豫1403 and 豫14 still exchange sealed pings both ways."""
    for a, b in (("豫1403", "豫14"), ("豫14", "豫1403"), ("豫1403", "豫")):
        (result,) = await tree[a].pinger.ping(CourtCode.parse(b), 1, 10)
        assert result["ok"], result


def _ping(me: Identity, now_ms: int) -> epb.Envelope:
    """A ping from the rogue, sealed at the tree's (test-controlled) time."""
    return build(me.key, me.court, "ping", Target.to_court(CourtCode.parse("豫14")), ppb.PingPayload(), now_ms=now_ms)


# --------------------------------------------------------------------------- replay after retention


async def test_replay_after_the_dedupe_retention_is_refused_not_re_executed(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, TREE) as tree:
        mid = tree["豫14"]
        me = await _rogue(tree, tmp_path)
        pongs = select(func.count()).select_from(outbox).where(outbox.c.kind == "pong", outbox.c.next_hop == "豫1402")

        # 1. Over the real link: a ping (its effect: one pong queued back) captured, then replayed.
        captured = _ping(me, tree.clock.now_ms())
        async with connected(me) as link:
            ack = await link.send_batch([captured])
            assert not ack.ack.rejections
            again = await link.send_batch([captured], seq=2)  # within the retention: a duplicate
            assert not again.ack.rejections
        assert await _count(tree, "豫14", pongs) == 1

        # 2. A directive 豫 → 豫14, taken from 豫14's audit as an eavesdropper on a backup would.
        eid, _ = await tree["豫"].directives.send(CourtCode.parse("豫14"), False, "原始指令", "只执行一次")
        rows = select(func.count()).select_from(directives).where(directives.c.envelope_id == eid)
        await tree.settle(lambda: _count(tree, "豫14", rows))
        raw = await mid.store.read(
            lambda c: c.execute(
                text("SELECT raw FROM audit WHERE envelope_id = :e AND action = 'received'"), {"e": eid}
            ).scalar_one()
        )
        stolen = epb.Envelope.FromString(raw)

        # Time passes beyond the retention; maintenance forgets the ids.
        retention = mid.config.federation.dedupe_retention_days
        tree.clock.advance(days=retention + 2)
        dropped = await prune(mid)
        assert dropped["inbox"] >= 2
        rejected_before = len(await _audit(tree, "豫14", "rejected"))

        # The replays: the ping over a fresh link, the directive straight into the exchange as if
        # 豫's link delivered it again.
        async with connected(me) as link:
            late = await link.send_batch([captured])
        assert {r.envelope_id: r.reason for r in late.ack.rejections} == {header_of(captured).id: "stale_envelope"}
        checked = mid.exchange.check([stolen], CourtCode.parse("豫"), False)
        result = await mid.store.write(mid.exchange.accept(checked, CourtCode.parse("豫")))
        mid.exchange.accepted(result)
        assert [(e, r) for e, r, _m in result.rejections] == [(eid, "stale_envelope")]

        # Refused, audited, and the effects did not happen twice.
        refused = (await _audit(tree, "豫14", "rejected"))[rejected_before:]
        assert {e["envelope_id"]: e["reason"] for e in refused} == {
            header_of(captured).id: "stale_envelope",
            eid: "stale_envelope",
        }
        assert all(e["message"] for e in refused)
        assert await _count(tree, "豫14", pongs) == 1
        assert await _count(tree, "豫14", rows) == 1
        await _serves(tree)


# --------------------------------------------------------------------------- slow-loris and silence


async def test_slow_loris_streams_are_refused_at_the_handshake_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "HANDSHAKE_TIMEOUT_S", 2.0)
    async with inproc_tree(tmp_path, TREE) as tree:
        me = await _rogue(tree, tmp_path)
        address = tree["豫14"].config.node.listen
        pem = tree["豫14"].home.tls_cert.read_bytes()
        before = len(await _audit(tree, "豫14", "link_refused"))
        mute = [RogueLink(address, pem) for _ in range(5)]  # open the stream, say nothing
        halfway = [RogueLink(me.address, me.parent_pem) for _ in range(5)]  # hello, then never auth
        for link in (*mute, *halfway):
            await link.__aenter__()
            await link._call.wait_for_connection()
        try:
            for link in halfway:
                await link.send(
                    lpb.Frame(
                        hello=lpb.Hello(
                            court="豫1402",
                            protocol_version=link_module.PROTOCOL_VERSION,
                            min_protocol_version=link_module.MIN_PROTOCOL_VERSION,
                            certificate=me.certificate,
                        )
                    )
                )
            await _serves(tree)  # served while ten streams hang in their handshakes
            answers = [await link.until("welcome", wait_s=15) for link in halfway]
            assert {a.error.reason for a in answers} == {"handshake_timeout"}
            answers = [await link.until("challenge", wait_s=15) for link in mute]
            assert {a.error.reason for a in answers} == {"handshake_timeout"}
        finally:
            for link in (*mute, *halfway):
                await link.__aexit__(None, None, None)

        async def ten_audited() -> bool:
            refused = (await _audit(tree, "豫14", "link_refused"))[before:]
            return [e["reason"] for e in refused].count("handshake_timeout") >= 10

        await tree.settle(ten_audited)
        await _serves(tree)


async def test_peer_silent_after_the_handshake_is_closed_others_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "HEARTBEAT_S", 0.5)
    monkeypatch.setattr(link_module, "SILENCE_S", 4.0)
    async with inproc_tree(tmp_path, TREE) as tree:
        me = await _rogue(tree, tmp_path)
        rogue = CourtCode.parse("豫1402")
        async with connected(me) as link:
            assert rogue in tree["豫14"].sessions
            # Say nothing more (no heartbeats, no acks); the parent's heartbeat rule closes it.
            # Real time passes here, and the node clock with it: the tree's FixedClock is moved
            # along in small steps, as a wall clock would.
            closed = await _closed_by_silence(tree, link)
        assert closed.error.reason == "link_closed" and "silent" in closed.error.message
        entries = await _audit(tree, "豫14", "link_closed")
        assert any(e["peer"] == "豫1402" and "silent" in e["message"] for e in entries)
        assert rogue not in tree["豫14"].sessions
        assert CourtCode.parse("豫1403") in tree["豫14"].sessions  # the honest child kept its link
        await _serves(tree)


async def _closed_by_silence(tree: InProcTree, link: RogueLink) -> lpb.Frame:
    reading = asyncio.create_task(link.until("never", wait_s=30))
    while not reading.done():
        tree.clock.advance(ms=250)
        await asyncio.sleep(0.25)
    return reading.result()
