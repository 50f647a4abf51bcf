"""Protocol evolution (DESIGN.md §2): a node and a newer or older peer.

* The link hello negotiates the version: the lower of both maxima; a peer below this node's
  minimum (or demanding more than its maximum) is refused with ``version_unsupported``.
* Envelope kinds and fields only a newer peer knows are tolerated: checked (seal, link authority),
  relayed byte for byte, kept and reported at the destination — never refused, never interpreted.

The newer peer is ``tests/rogue.py`` speaking as 豫1402, a court enrolled under 豫14 with no node
process of its own; 豫 and 豫14 are real ``court-hub run`` processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator

import pytest
from rogue import Identity, RogueLink

from hub import provision
from hub.config import Home
from hub.federation.envelope import new_id
from hub.federation.link import MIN_PROTOCOL_VERSION, PROTOCOL_VERSION
from hub.federation.server import auth_content
from hub.keys import CourtKey
from hub.localtree import LocalTree, NodeSpec
from hub.netutil import free_port
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.proto.courthub.v1 import payloads_pb2 as ppb
from hub.seal import seal

pytestmark = pytest.mark.slow

TREE = [NodeSpec("豫", "河南省高级人民法院"), NodeSpec("豫14", "商丘市中级人民法院", "豫")]
# A field number no version of EnvelopeHeader/PingPayload uses: what a newer schema might add.
FUTURE_FIELD = b"\xd0\x0f\x2a"  # field 250, varint 42


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalTree, Identity]]:
    base = tmp_path_factory.mktemp("evolution")
    with LocalTree(base / "tree", TREE) as tree:
        tree.start_all()
        home = base / "newer-1402"
        provision.init_node(home, "豫1402", "商丘市梁园区人民法院", f"127.0.0.1:{free_port()}")
        token = provision.issue_token(tree.homes["豫14"], "豫1402", 60)
        asyncio.run(provision.join(home, token.token))
        yield tree, Identity.from_home(home)


def _newer_envelope(key: CourtKey, origin: str, kind: str, to: str, payload: bytes) -> epb.Envelope:
    """Sealed like a newer node would: a header (and payload) carrying a field this version lacks."""
    header = (
        epb.EnvelopeHeader(
            id=new_id(),
            kind=kind,
            origin=origin,
            destination=epb.Destination(court=to),
            created_at_ms=int(time.time() * 1000),
            payload_sha256=hashlib.sha256(payload).digest(),
            schema_version=7,
        ).SerializeToString()
        + FUTURE_FIELD
    )
    return epb.Envelope(header=header, payload=payload, seal=seal(key, origin, header))


async def _hello(link: RogueLink, me: Identity, version: int, minimum: int) -> lpb.Frame:
    hello = lpb.Hello(
        court=str(me.court), protocol_version=version, min_protocol_version=minimum, certificate=me.certificate
    )
    await link.send(lpb.Frame(hello=hello))
    return await link.until("challenge")


async def _newer_peer_session(
    tree: LocalTree, me: Identity, envelopes: list[epb.Envelope]
) -> tuple[int, int, lpb.Frame]:
    """Handshake claiming version 9 (accepting 1..9), announce itself like any node does on a new
    link (so the root learns its route and certificate), then send ``envelopes`` in one batch."""
    async with RogueLink(me.address, me.parent_pem) as link:
        challenge = await _hello(link, me, 9, 1)
        assert challenge.WhichOneof("body") == "challenge", challenge
        content = auth_content(challenge.challenge.nonce, me.parent, me.court)
        await link.send(lpb.Frame(auth=lpb.Auth(signature=seal(me.key, str(me.court), content))))
        welcome = await link.until("welcome")
        assert welcome.WhichOneof("body") == "welcome", welcome
        route = lpb.Route(court=str(me.court), distance=0)
        await link.send(lpb.Frame(announce=lpb.Announce(routes=[route], certificates=[me.certificate])))
        for _ in range(300):
            if str(me.court) in await asyncio.to_thread(lambda: tree.status("豫")["routes"]):
                break
            await asyncio.sleep(0.1)
        ack = await link.send_batch(envelopes)
        return challenge.challenge.protocol_version, welcome.welcome.protocol_version, ack


def _audit(tree: LocalTree, court: str, action: str, eid: str) -> list[tuple[str, bytes]]:
    """(detail, raw envelope) of the audit entries ``action`` for ``eid`` at ``court``."""
    db = Home(tree.homes[court]).database
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT detail, raw FROM audit WHERE action=? AND envelope_id=?", (action, eid))
        return [(str(d), bytes(r or b"")) for d, r in rows]


def test_newer_peer_negotiates_down_and_its_unknown_kinds_and_fields_are_kept(
    world: tuple[LocalTree, Identity],
) -> None:
    tree, me = world
    future_kind = _newer_envelope(me.key, "豫1402", "case.transfer_v2", "豫", b"\x0a\x03abc" + FUTURE_FIELD)
    ping = ppb.PingPayload(sent_at_ms=int(time.time() * 1000)).SerializeToString() + FUTURE_FIELD
    newer_ping = _newer_envelope(me.key, "豫1402", "ping", "豫14", ping)
    offered, chosen, ack = asyncio.run(_newer_peer_session(tree, me, [future_kind, newer_ping]))

    assert offered == chosen == PROTOCOL_VERSION  # the lower of 9 and ours
    assert ack.WhichOneof("body") == "ack" and list(ack.ack.rejections) == []
    # The unknown kind was relayed by 豫14 and kept at 豫, byte for byte (its seal still verifies there).
    kind_id = epb.EnvelopeHeader.FromString(future_kind.header).id
    ping_id = epb.EnvelopeHeader.FromString(newer_ping.header).id
    tree.wait_until(lambda: tree.status("豫")["unknown_kinds"] == {"case.transfer_v2": 1}, 30, "reported at 豫")
    assert tree.status("豫14")["unknown_kinds"] == {"case.transfer_v2": 1}  # relayed, reported too
    kept = _audit(tree, "豫", "received_unknown_kind", kind_id)
    assert len(kept) == 1 and json.loads(kept[0][0])["schema_version"] == 7
    assert kept[0][1] == future_kind.SerializeToString()
    # A known kind with fields from a newer schema is delivered normally (unknown fields ignored).
    assert len(_audit(tree, "豫14", "received", ping_id)) == 1
    assert _audit(tree, "豫14", "rejected", ping_id) == []


def test_bad_kind_names_are_still_refused(world: tuple[LocalTree, Identity]) -> None:
    tree, me = world
    assert tree.status("豫14")["court"] == "豫14"
    bad = _newer_envelope(me.key, "豫1402", "DROP TABLE", "豫", b"")
    _, _, ack = asyncio.run(_newer_peer_session(tree, me, [bad]))
    assert [r.reason for r in ack.ack.rejections] == ["bad_kind"]


@pytest.mark.parametrize(
    ("version", "minimum"),
    [(0, 0), (MIN_PROTOCOL_VERSION - 1, 0), (PROTOCOL_VERSION + 5, PROTOCOL_VERSION + 1)],
    ids=["version-0", "below-minimum", "demands-newer"],
)
def test_peer_outside_the_supported_versions_is_refused(
    world: tuple[LocalTree, Identity], version: int, minimum: int
) -> None:
    tree, me = world

    async def attempt() -> lpb.Frame:
        async with RogueLink(me.address, me.parent_pem) as link:
            return await _hello(link, me, version, minimum)

    answer = asyncio.run(attempt())
    assert answer.WhichOneof("body") == "error"
    assert answer.error.reason == "version_unsupported"
    assert f"{MIN_PROTOCOL_VERSION}..{PROTOCOL_VERSION}" in answer.error.message
    assert tree.status("豫14")["court"] == "豫14"  # still serving


def test_version_1_peer_is_still_served(world: tuple[LocalTree, Identity]) -> None:
    _tree, me = world

    async def attempt() -> tuple[int, int]:
        async with RogueLink(me.address, me.parent_pem) as link:
            challenge = await _hello(link, me, 1, 1)
            content = auth_content(challenge.challenge.nonce, me.parent, me.court)
            await link.send(lpb.Frame(auth=lpb.Auth(signature=seal(me.key, str(me.court), content))))
            welcome = await link.until("welcome")
            return challenge.challenge.protocol_version, welcome.welcome.protocol_version

    assert asyncio.run(attempt()) == (1, 1)
