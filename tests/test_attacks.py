"""Hostile peers against real nodes (DESIGN.md §2 "Trust", "Authority", "Evidence").

Each attack runs against real ``court-hub run`` processes on loopback and proves three things:

1. the hostile input is refused with a clear, specific reason (asserted by its reason string);
2. the refusing node keeps an audit entry for it (``rejected``, ``link_refused``, ``link_closed``
   or ``enroll_refused``, read from its store as an auditor would);
3. the node still serves afterwards (a sealed ping to a legitimate child comes back).

The attacker is ``tests/rogue.py``: a peer that speaks the real link protocol over the real
pinned-TLS channel, frame by frame. Its identities are legitimately enrolled courts with no node
process of their own (豫1402 under 豫14, 豫15 under 豫), so the tree's real links are never disturbed.
One tree serves the whole module, on SQLite and again on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import socket
import ssl
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from rogue import CONNECT, Identity, LinkEnded, RogueLink, connected, enroll_raw, envelope, header_of
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from hub import provision
from hub.codes import CourtCode
from hub.config import Home
from hub.errors import CourtHubError
from hub.federation.envelope import Target
from hub.federation.link import MAX_FRAME_BYTES
from hub.keys import CourtKey
from hub.localtree import LocalTree, NodeSpec
from hub.netutil import free_port
from hub.proto.courthub.v1 import envelope_pb2 as epb
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.proto.courthub.v1 import payloads_pb2 as ppb
from hub.seal import seal
from hub.trust import JoinToken, issue_certificate, make_proof

pytestmark = pytest.mark.slow

TREE = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),  # the legitimate child: proves the node still serves
    NodeSpec("豫1404", "商丘市宁陵县人民法院", "豫14"),  # the one that gets revoked
]


# --------------------------------------------------------------------------- fixtures and helpers


class World:
    """The running tree plus the rogue identities enrolled in it."""

    def __init__(self, tree: LocalTree, base: Path) -> None:
        self.tree = tree
        self.base = base
        self.rogue = self.enroll("豫1402", "商丘市梁园区人民法院", "豫14")  # a child of 豫14
        self.rogue_city = self.enroll("豫15", "周口市中级人民法院", "豫")  # a child of the root

    def enroll(self, court: str, name: str, parent: str) -> Identity:
        home = self.fresh_home(court, name)
        token = provision.issue_token(self.tree.homes[parent], court, 60)
        asyncio.run(provision.join(home, token.token))
        return Identity.from_home(home)

    def fresh_home(self, court: str, name: str = "伪造法院") -> Path:
        home = self.base / f"{court}-{time.monotonic_ns()}"
        provision.init_node(home, court, name, f"127.0.0.1:{free_port()}")
        return home

    def listen(self, court: str) -> str:
        return Home(self.tree.homes[court]).load().node.listen

    def tls_pem(self, court: str) -> bytes:
        return Home(self.tree.homes[court]).tls_cert.read_bytes()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[World]:
    """The tree 豫 → 豫14 → {豫1403, 豫1404} running, plus the rogue identities (about 6 s)."""
    base = tmp_path_factory.mktemp(f"attacks-{request.param}")
    store_urls: dict[str, str] = {}
    if request.param == "postgres":
        cluster = request.getfixturevalue("_postgres_cluster")
        for spec in TREE:
            name = f"a_{uuid.uuid4().hex[:12]}"
            cluster.create_database(name)
            store_urls[spec.court] = cluster.url(name)
    with LocalTree(base / "tree", TREE, store_urls=store_urls) as tree:
        tree.start_all()
        yield World(tree, base / "rogues")


def _query(tree: LocalTree, court: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Read a node's store directly (SQLite read-only, or PostgreSQL), as an auditor would."""
    home = Home(tree.homes[court])
    url = home.load().store.url or f"sqlite:///file:{home.database}?mode=ro&uri=true"
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def _audit_head(tree: LocalTree, court: str) -> int:
    return int(_query(tree, court, "SELECT COALESCE(MAX(seq), 0) FROM audit")[0][0])


def _audit(tree: LocalTree, court: str, since: int, action: str) -> list[dict[str, Any]]:
    """Audit entries of ``action`` after ``since``: envelope_id, peer and the decoded detail."""
    rows = _query(
        tree,
        court,
        "SELECT envelope_id, peer, detail FROM audit WHERE seq > :since AND action = :action ORDER BY seq",
        since=since,
        action=action,
    )
    return [{"envelope_id": e, "peer": p, **json.loads(d)} for e, p, d in rows]


def _link_refused(tree: LocalTree, court: str, since: int) -> list[str]:
    """Reasons of the links ``court`` refused since ``since`` (the revoked 豫1404 keeps redialling,
    so other refusals may interleave with a test's own)."""
    entries = _audit(tree, court, since, "link_refused")
    # Before the handshake the peer is unauthenticated: no court, its network address in the detail.
    assert all(e["peer"] is None and e["address"].startswith("ipv4:127.0.0.1:") and e["message"] for e in entries)
    return [str(e["reason"]) for e in entries]


def _assert_serves(tree: LocalTree, court: str) -> None:
    """The node still answers its admin socket and routes a sealed ping to a legitimate child."""
    assert tree.running(court)
    assert tree.status(court)["court"] == court
    results = tree.ping(court, "豫1403")
    assert results[0].ok, results[0].error


def _ping(key: CourtKey, origin: str, to: str) -> epb.Envelope:
    payload = ppb.PingPayload(sent_at_ms=int(time.time() * 1000))
    return envelope(key, origin, "ping", Target.to_court(CourtCode.parse(to)), payload)


def _directive(key: CourtKey, origin: str, target: Target) -> epb.Envelope:
    return envelope(key, origin, "directive", target, ppb.DirectivePayload(title="越级指令", body="", level="routine"))


def _rejections(frame: lpb.Frame) -> dict[str, str]:
    assert frame.WhichOneof("body") == "ack", f"expected an ack, got {frame}"
    return {r.envelope_id: r.reason for r in frame.ack.rejections}


def _id(env: epb.Envelope) -> str:
    return header_of(env).id


def _send_batch(me: Identity, envelopes: list[epb.Envelope]) -> lpb.Frame:
    async def run() -> lpb.Frame:
        async with connected(me) as link:
            return await link.send_batch(envelopes)

    return asyncio.run(run())


def _assert_rejected(world: World, court: str, since: int, expected: dict[str, str], peer: str) -> None:
    entries = {e["envelope_id"]: e for e in _audit(world.tree, court, since, "rejected")}
    for eid, reason in expected.items():
        assert eid in entries, f"no 'rejected' audit entry at {court} for {eid} ({reason})"
        assert entries[eid]["reason"] == reason
        assert entries[eid]["peer"] == peer
        assert entries[eid]["message"]


# --------------------------------------------------------------------------- sealed envelopes


def test_forged_seals_are_refused_one_by_one(world: World) -> None:
    """An enrolled child's link: envelopes whose seal does not hold are refused, the honest one passes."""
    tree, me = world.tree, world.rogue
    since = _audit_head(tree, "豫14")
    good = _ping(me.key, "豫1402", "豫14")
    wrong_key = _ping(CourtKey.generate(), "豫1402", "豫14")  # sealed by a key 豫1402 was never certified for
    altered = _ping(me.key, "豫1402", "豫14")
    altered.payload = ppb.PingPayload(sent_at_ms=1).SerializeToString()  # the seal is valid, the payload is not
    redigested = _ping(me.key, "豫1402", "豫14")
    redigested.payload = altered.payload  # ... and the header's digest fixed to match, after sealing
    header = header_of(redigested)
    header.payload_sha256 = hashlib.sha256(redigested.payload).digest()
    redigested.header = header.SerializeToString()
    retimed = _ping(me.key, "豫1402", "豫14")
    header = header_of(retimed)
    header.created_at_ms -= 86_400_000  # backdated after sealing
    retimed.header = header.SerializeToString()
    unsealed = _ping(me.key, "豫1402", "豫14")
    unsealed.seal = ""
    other_kid = _ping(me.key, "豫1402", "豫14")  # 豫1402's own key, but the seal names 豫1403
    other_kid.seal = seal(me.key, "豫1403", other_kid.header)
    ack = _send_batch(me, [good, wrong_key, altered, redigested, retimed, unsealed, other_kid])

    expected = {
        _id(wrong_key): "bad_seal",
        _id(altered): "bad_digest",
        _id(redigested): "bad_seal",
        _id(retimed): "bad_seal",
        _id(unsealed): "bad_seal",
        _id(other_kid): "bad_seal",
    }
    assert _rejections(ack) == expected
    # (2) audited one by one, with the raw envelope kept as evidence
    _assert_rejected(world, "豫14", since, expected, "豫1402")
    raws = _query(tree, "豫14", "SELECT raw FROM audit WHERE seq > :s AND action = 'rejected'", s=since)
    assert all(r[0] for r in raws)
    # The one honest envelope of the batch went through: per-envelope refusal, not per batch.
    assert _query(tree, "豫14", "SELECT origin FROM inbox WHERE envelope_id = :e", e=_id(good)) == [("豫1402",)]
    # (3)
    _assert_serves(tree, "豫14")


def test_child_cannot_speak_for_its_sibling_or_parent(world: World) -> None:
    tree, me = world.tree, world.rogue
    since = _audit_head(tree, "豫14")
    sibling_key = CourtKey.load(Home(tree.homes["豫1403"]).court_key)
    as_sibling = _ping(me.key, "豫1403", "豫14")  # 豫1402's key, 豫1403's name
    as_parent = _ping(me.key, "豫14", "豫")
    as_root = _ping(me.key, "豫", "豫14")
    # Even a genuine seal of the sibling does not let 豫1402's link carry it: the link decides first.
    replayed = _ping(sibling_key, "豫1403", "豫14")
    ack = _send_batch(me, [as_sibling, as_parent, as_root, replayed])

    expected = {_id(e): "origin_outside_subtree" for e in (as_sibling, as_parent, as_root, replayed)}
    assert _rejections(ack) == expected
    _assert_rejected(world, "豫14", since, expected, "豫1402")
    assert not _query(tree, "豫14", "SELECT 1 FROM inbox WHERE envelope_id = :e", e=_id(replayed))
    _assert_serves(tree, "豫14")


def test_directive_sent_upward_is_refused(world: World) -> None:
    tree, me = world.tree, world.rogue
    since = _audit_head(tree, "豫14")
    to_parent = _directive(me.key, "豫1402", Target.to_court(CourtCode.parse("豫14")))
    to_province = _directive(me.key, "豫1402", Target.to_subtree(CourtCode.parse("豫")))
    to_sibling = _directive(me.key, "豫1402", Target.to_court(CourtCode.parse("豫1403")))
    ack = _send_batch(me, [to_parent, to_province, to_sibling])

    expected = {_id(e): "wrong_direction" for e in (to_parent, to_province, to_sibling)}
    assert _rejections(ack) == expected
    _assert_rejected(world, "豫14", since, expected, "豫1402")
    # Nothing was delivered or relayed: no directive row at 豫14, none reached 豫1403.
    for court in ("豫14", "豫1403"):
        assert not _query(tree, court, "SELECT 1 FROM directives WHERE origin = '豫1402'")
    _assert_serves(tree, "豫14")


# --------------------------------------------------------------------------- enrollment


def _enroll_refused(world: World, court: str, since: int) -> list[dict[str, Any]]:
    return _audit(world.tree, court, since, "enroll_refused")


def test_expired_join_token_is_refused(world: World) -> None:
    tree = world.tree
    since = _audit_head(tree, "豫14")
    token = provision.issue_token(tree.homes["豫14"], "豫1405", 1)
    home = world.fresh_home("豫1405")
    time.sleep(1.5)
    with pytest.raises(CourtHubError) as refused:
        asyncio.run(provision.join(home, token.token))
    assert refused.value.reason == "token_expired"
    assert "expired" in refused.value.message
    entries = _enroll_refused(world, "豫14", since)
    assert [(e["peer"], e["reason"]) for e in entries] == [("豫1405", "token_expired")]
    assert Home(home).load().parent is None  # the child was not half-enrolled
    assert not _query(tree, "豫14", "SELECT 1 FROM children WHERE court = '豫1405'")
    _assert_serves(tree, "豫14")


def test_reused_join_token_is_refused(world: World) -> None:
    tree = world.tree
    token = provision.issue_token(tree.homes["豫14"], "豫1406", 60)
    first = world.fresh_home("豫1406")
    asyncio.run(provision.join(first, token.token))
    serial = _query(tree, "豫14", "SELECT serial FROM children WHERE court = '豫1406'")
    since = _audit_head(tree, "豫14")

    second = world.fresh_home("豫1406")  # another machine claiming the same court with the same token
    with pytest.raises(CourtHubError) as refused:
        asyncio.run(provision.join(second, token.token))
    assert refused.value.reason == "token_used"
    entries = _enroll_refused(world, "豫14", since)
    assert [(e["peer"], e["reason"]) for e in entries] == [("豫1406", "token_used")]
    # The first enrollment stands: same certificate serial, the second key was never certified.
    assert _query(tree, "豫14", "SELECT serial FROM children WHERE court = '豫1406'") == serial
    assert Home(second).load().parent is None
    _assert_serves(tree, "豫14")


def test_join_token_for_another_court_is_refused(world: World) -> None:
    tree = world.tree
    token = provision.issue_token(tree.homes["豫14"], "豫1402", 60)
    home = world.fresh_home("豫1403")  # tries to take over the running 豫1403 with 豫1402's token
    # The honest client refuses on its own ...
    with pytest.raises(CourtHubError) as refused:
        asyncio.run(provision.join(home, token.token))
    assert refused.value.reason == "wrong_court"
    # ... and the parent refuses a client that does not.
    since = _audit_head(tree, "豫14")
    key = CourtKey.load(Home(home).court_key)
    parsed = JoinToken.parse(token.token)
    request = lpb.EnrollRequest(
        token=token.token,
        court="豫1403",
        name="冒名的睢阳区人民法院",
        public_key=key.public_raw,
        proof=make_proof(key, CourtCode.parse("豫1403"), parsed.jti),
        listen="127.0.0.1:1",
    )
    reason, details = asyncio.run(enroll_raw(world.listen("豫14"), world.tls_pem("豫14"), request))
    assert reason == "wrong_court", details
    assert "豫1402" in details
    entries = _enroll_refused(world, "豫14", since)
    assert [(e["peer"], e["reason"]) for e in entries] == [("豫1403", "wrong_court")]
    # The token was not spent and the real 豫1403 keeps its certificate.
    assert _query(tree, "豫14", "SELECT used_at_ms FROM join_tokens WHERE jti = :j", j=parsed.jti) == [(None,)]
    real = Identity.from_home(tree.homes["豫1403"])
    assert _query(tree, "豫14", "SELECT token FROM certificates WHERE court = '豫1403'") == [(real.certificate,)]
    _assert_serves(tree, "豫14")


def test_garbage_enroll_request_is_refused_and_audited(world: World) -> None:
    """Enroll is open to anyone who can reach the port: its refusals must leave a trace too."""
    tree = world.tree
    since = _audit_head(tree, "豫14")

    reason, details = asyncio.run(enroll_raw(world.listen("豫14"), world.tls_pem("豫14"), b"\xff" * 16))
    assert reason == "malformed_frame", details
    assert "EnrollRequest" in details
    entries = _enroll_refused(world, "豫14", since)
    assert [e["reason"] for e in entries] == ["malformed_frame"], "garbage Enroll refused without an audit entry"
    _assert_serves(tree, "豫14")


# --------------------------------------------------------------------------- links


def test_impersonation_without_the_key_is_refused(world: World) -> None:
    """Certificates are public: 豫1403's certificate without 豫1403's key opens no link."""
    tree = world.tree
    since = _audit_head(tree, "豫14")
    real = Identity.from_home(tree.homes["豫1403"])

    async def run() -> lpb.Frame:
        async with RogueLink(real.address, real.parent_pem) as link:
            return await link.handshake(real, key=CourtKey.generate())

    answer = asyncio.run(run())
    assert answer.WhichOneof("body") == "error"
    assert answer.error.reason == "bad_seal"
    assert _link_refused(tree, "豫14", since).count("bad_seal") == 1
    # The real 豫1403's link was never displaced.
    children = {c["court"]: c["state"] for c in tree.status("豫14")["children"]}
    assert children["豫1403"] == "up"
    _assert_serves(tree, "豫14")


def test_revoked_child_is_cut_off_everywhere(world: World) -> None:
    tree = world.tree
    since = _audit_head(tree, "豫14")
    revoked = tree.call("豫14", "revoke", {"court": "豫1404"})
    serial = revoked["serial"]
    assert _query(tree, "豫14", "SELECT court FROM revocations WHERE serial = :s", s=serial) == [("豫1404",)]

    # The real 豫1404 is cut off and its redial is refused (and audited) for the revocation.
    def refused_for_revocation() -> bool:
        return any(e["reason"] == "revoked" for e in _audit(tree, "豫14", since, "link_refused"))

    tree.wait_until(refused_for_revocation, 15, "豫1404's redial refused as revoked")
    children = {c["court"]: c["state"] for c in tree.status("豫14")["children"]}
    assert children["豫1404"] == "revoked"
    tree.wait_until(lambda: "revoked" in tree.status("豫1404")["parent"]["last_error"], 30, "豫1404 told why")

    # The key holder trying by hand fares no better: no link, so no envelope of it is accepted.
    me = Identity.from_home(tree.homes["豫1404"])
    before = _audit_head(tree, "豫14")

    async def run() -> lpb.Frame:
        async with RogueLink(me.address, me.parent_pem) as link:
            return await link.handshake(me)

    answer = asyncio.run(run())
    assert answer.WhichOneof("body") == "error"
    assert answer.error.reason == "revoked"
    assert "revoked" in answer.error.message
    assert "revoked" in _link_refused(tree, "豫14", before)

    # The revocation reaches the root (signed by 豫14, verified and stored there).
    tree.wait_until(
        lambda: bool(_query(tree, "豫", "SELECT 1 FROM revocations WHERE serial = :s", s=serial)),
        30,
        "revocation of 豫1404 at 豫",
    )
    _assert_serves(tree, "豫14")
    _assert_serves(tree, "豫")


def test_relayed_envelope_from_revoked_or_unknown_court_is_refused(world: World) -> None:
    """A relay cannot launder envelopes: the root checks every origin's certificate itself."""
    tree, city = world.tree, world.rogue_city
    county_key, county_cert = city.certify("豫1501")
    stranger_key = CourtKey.generate()  # 豫1502: never certified by anyone

    async def run() -> lpb.Frame:
        async with connected(city) as link:
            # 豫15 (legitimately) announces the court it certified, so the root can check its seals.
            await link.send(lpb.Frame(announce=lpb.Announce(certificates=[county_cert])))
            await asyncio.to_thread(
                tree.wait_until,
                lambda: bool(_query(tree, "豫", "SELECT 1 FROM certificates WHERE court = '豫1501'")),
                30,
                "豫1501's certificate at 豫",
            )
            accepted = await link.send_batch([_ping(county_key, "豫1501", "豫")], seq=1)
            assert _rejections(accepted) == {}
            # Now the root revokes 豫1501; the link from 豫15 stays up (豫15 is not revoked).
            await asyncio.to_thread(tree.call, "豫", "revoke", {"court": "豫1501"})
            since = await asyncio.to_thread(_audit_head, tree, "豫")
            revoked = _ping(county_key, "豫1501", "豫")
            unknown = _ping(stranger_key, "豫1502", "豫")
            ack = await link.send_batch([revoked, unknown], seq=2)
            expected = {_id(revoked): "revoked", _id(unknown): "unknown_court"}
            assert _rejections(ack) == expected
            _assert_rejected(world, "豫", since, expected, "豫15")
            return ack

    asyncio.run(run())
    _assert_serves(tree, "豫")


def test_oversized_frame_is_refused(world: World) -> None:
    tree = world.tree
    huge = lpb.ConnectRequest(
        frame=lpb.Frame(batch=lpb.EnvelopeBatch(seq=1, envelopes=[epb.Envelope(payload=b"\0" * (5 << 20))]))
    ).SerializeToString()
    assert len(huge) > MAX_FRAME_BYTES

    # Anyone can open a TLS connection: before any handshake ...
    since = _audit_head(tree, "豫14")

    async def anonymous() -> lpb.Frame:
        async with RogueLink(world.listen("豫14"), world.tls_pem("豫14")) as link:
            await link.send_raw(huge)
            return await link.until("challenge")

    answer = asyncio.run(anonymous())
    assert answer.WhichOneof("body") == "error"
    assert answer.error.reason == "frame_too_large"
    assert str(MAX_FRAME_BYTES) in answer.error.message
    assert _link_refused(tree, "豫14", since).count("frame_too_large") == 1

    # ... and an authenticated child after it.
    since = _audit_head(tree, "豫14")

    async def enrolled() -> tuple[lpb.Frame, list[lpb.Frame]]:
        async with connected(world.rogue) as link:
            await link.send_raw(huge)
            error = await link.until("never")
            return error, await link.end()

    error, rest = asyncio.run(enrolled())
    assert error.WhichOneof("body") == "error"
    assert error.error.reason == "frame_too_large"
    assert rest == []  # the parent closed the link after its LinkError
    entries = _audit(tree, "豫14", since, "link_closed")
    assert [(e["peer"], e["reason"]) for e in entries] == [("豫1402", "frame_too_large")]
    _assert_serves(tree, "豫14")


def test_frame_beyond_the_transport_limit_is_refused_and_audited(world: World) -> None:
    """Past gRPC's own receive limit (2 × MAX_FRAME_BYTES) the frame never reaches decode_frame;
    the refusal must still be clear to the sender and audited at the parent."""
    tree = world.tree
    huge = b"\x0a" + b"\x00" * (2 * MAX_FRAME_BYTES + (1 << 20))
    since = _audit_head(tree, "豫14")

    async def run() -> str:
        async with RogueLink(world.listen("豫14"), world.tls_pem("豫14"), max_send_bytes=len(huge) * 2) as link:
            try:
                await link.send_raw(huge)
                answer = await link.until("challenge")
            except LinkEnded as ended:
                return str(ended)
            return f"{answer.error.reason}: {answer.error.message}"

    refusal = asyncio.run(run())
    assert "frame_too_large" in refusal or "RESOURCE_EXHAUSTED" in refusal, refusal
    time.sleep(0.5)  # an audit written after the transport refused the frame would be asynchronous
    assert "frame_too_large" in _link_refused(tree, "豫14", since), f"refused ({refusal}) but not audited"
    _assert_serves(tree, "豫14")


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x0a\x64not a ConnectRequest", id="truncated-field"),
        pytest.param(b"\xff" * 16, id="bad-varint"),
        pytest.param(b"", id="empty-frame"),
        pytest.param(lpb.ConnectRequest(frame=lpb.Frame()).SerializeToString(), id="frame-without-body"),
    ],
)
def test_garbage_frame_is_refused(world: World, garbage: bytes) -> None:
    tree = world.tree
    since = _audit_head(tree, "豫14")

    async def run() -> lpb.Frame:
        async with RogueLink(world.listen("豫14"), world.tls_pem("豫14")) as link:
            await link.send_raw(garbage)
            return await link.until("challenge")

    answer = asyncio.run(run())
    assert answer.WhichOneof("body") == "error"
    assert answer.error.reason == "malformed_frame"
    assert _link_refused(tree, "豫14", since).count("malformed_frame") == 1
    _assert_serves(tree, "豫14")


def test_garbage_after_the_handshake_closes_only_that_link(world: World) -> None:
    tree = world.tree
    since = _audit_head(tree, "豫14")

    async def run() -> lpb.Frame:
        async with connected(world.rogue) as link:
            await link.send_raw(b"\x0a\x64not a ConnectRequest")
            return await link.until("never")

    answer = asyncio.run(run())
    assert answer.error.reason == "malformed_frame"
    entries = _audit(tree, "豫14", since, "link_closed")
    assert [(e["peer"], e["reason"]) for e in entries] == [("豫1402", "malformed_frame")]
    children = {c["court"]: c["state"] for c in tree.status("豫14")["children"]}
    assert children["豫1403"] == "up"
    _assert_serves(tree, "豫14")


def test_plain_tcp_garbage_to_the_tls_port_does_not_hurt_the_node(world: World) -> None:
    tree = world.tree
    host, _, port = world.listen("豫14").rpartition(":")
    junk = [
        b"GET / HTTP/1.1\r\nHost: courthub\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",  # a TLS record header that lies about its length
        bytes(range(256)) * 64,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 1024,  # cleartext HTTP/2 on the TLS port
    ]
    for data in junk:
        with socket.create_connection((host, int(port)), timeout=5) as sock, contextlib.suppress(OSError):
            sock.sendall(data)
            sock.settimeout(2)
            sock.recv(4096)
    # A connection opened and left half-done, plus one closed without a byte.
    idle = socket.create_connection((host, int(port)), timeout=5)
    socket.create_connection((host, int(port)), timeout=5).close()
    try:
        _assert_serves(tree, "豫14")

        async def handshake() -> None:
            async with connected(world.rogue):
                pass

        asyncio.run(handshake())  # a new link is still welcomed
        children = {c["court"]: c["state"] for c in tree.status("豫14")["children"]}
        assert children["豫1403"] == "up"
    finally:
        idle.close()
    assert tree.running("豫14")


# --------------------------------------------------------------------------- more hostile peers (issue 6)


def test_unenrolled_courts_cannot_open_a_link(world: World) -> None:
    """A node that was never enrolled here — a fresh one with a self-made certificate, or a court
    enrolled under another parent — is refused before any envelope; so is a self-made certificate
    for an enrolled court."""
    tree = world.tree
    since = _audit_head(tree, "豫14")
    fresh = Home(world.fresh_home("豫1409"))  # `court-hub init` only, never joined
    key = CourtKey.load(fresh.court_key)
    court = CourtCode.parse("豫1409")
    self_made = issue_certificate(key, court, court, "未入网的法院", key.public_raw, int(time.time() * 1000))
    stranger = Identity(court, key, self_made, CourtCode.parse("豫14"), world.listen("豫14"), world.tls_pem("豫14"))
    # 豫15 is enrolled under 豫, not 豫14
    elsewhere = dataclasses.replace(
        world.rogue_city, parent=stranger.parent, address=stranger.address, parent_pem=stranger.parent_pem
    )
    sibling_key = CourtKey.generate()
    forged_cert = issue_certificate(
        sibling_key, CourtCode.parse("豫1402"), CourtCode.parse("豫1402"), "伪造", sibling_key.public_raw, 0
    )
    impostor = dataclasses.replace(world.rogue, key=sibling_key, certificate=forged_cert)

    async def knock(me: Identity) -> lpb.Frame:
        async with RogueLink(me.address, me.parent_pem) as link:
            return await link.handshake(me)

    answers = {who: asyncio.run(knock(me)) for who, me in (("1409", stranger), ("15", elsewhere), ("1402", impostor))}
    reasons = {who: a.error.reason for who, a in answers.items()}
    assert reasons == {"1409": "not_enrolled", "15": "not_enrolled", "1402": "bad_certificate"}
    assert all(a.error.message for a in answers.values())
    refused = _link_refused(tree, "豫14", since)
    assert refused.count("not_enrolled") == 2 and refused.count("bad_certificate") == 1
    _assert_serves(tree, "豫14")


def test_truncated_and_mangled_seals_are_refused(world: World) -> None:
    tree, me = world.tree, world.rogue
    since = _audit_head(tree, "豫14")
    variants: list[epb.Envelope] = []
    for mangle in (
        lambda s: s[:-1],  # last character cut
        lambda s: s[:-20],  # signature truncated
        lambda s: s[: len(s) // 2],  # cut in the protected header
        lambda s: s.partition("..")[0],  # no signature at all
        lambda s: s + "AAAA",  # signature too long
        lambda s: s.replace("..", ".e30.", 1),  # attached payload instead of detached
        lambda s: "..",
        lambda s: s.partition("..")[0] + ".." + "=" * 86,  # padding for a signature
        lambda s: "\x00" + s,
        lambda s: s.encode().hex(),
    ):
        env = _ping(me.key, "豫1402", "豫14")
        env.seal = mangle(env.seal)
        variants.append(env)
    ack = _send_batch(me, variants)
    expected = {_id(e): "bad_seal" for e in variants}
    assert _rejections(ack) == expected
    _assert_rejected(world, "豫14", since, expected, "豫1402")
    _assert_serves(tree, "豫14")


def _tls_attempt(host: str, port: int, version: ssl.TLSVersion | None) -> str:
    """Try a TLS handshake limited to ``version`` (None: the best both sides know); returns the
    negotiated version or the error."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if version is not None:
        with contextlib.suppress(ssl.SSLError):
            ctx.set_ciphers("ALL:@SECLEVEL=0")  # let this client *offer* the old protocol at all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # deprecated: that is the point
            ctx.minimum_version = version
            ctx.maximum_version = version
    with socket.create_connection((host, port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                return str(tls.version())
        except (ssl.SSLError, ConnectionError) as exc:
            return f"refused: {exc}"


def test_tls_downgrade_and_plaintext_are_refused(world: World) -> None:
    """The link port speaks TLS 1.2 or later only; TLS 1.0/1.1 and cleartext gRPC get nothing."""
    tree = world.tree
    host, _, port = world.listen("豫14").rpartition(":")
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        outcome = _tls_attempt(host, int(port), old)
        assert outcome.startswith("refused"), f"{old.name} was accepted: {outcome}"
        # The server refused it, not this client's own OpenSSL policy.
        assert "NO_PROTOCOLS_AVAILABLE" not in outcome and "no protocols available" not in outcome, outcome
    assert _tls_attempt(host, int(port), ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _tls_attempt(host, int(port), None) in ("TLSv1.2", "TLSv1.3")

    async def cleartext() -> str:
        async with grpc.aio.insecure_channel(world.listen("豫14")) as channel:
            call = channel.stream_stream(CONNECT, request_serializer=None, response_deserializer=None)()
            try:
                await call.write(lpb.ConnectRequest(frame=lpb.Frame(heartbeat=lpb.Heartbeat())).SerializeToString())
                await asyncio.wait_for(call.read(), 10)
            except grpc.aio.AioRpcError as exc:
                return str(exc.code().name)
            return "answered"

    assert asyncio.run(cleartext()) == "UNAVAILABLE"
    _assert_serves(tree, "豫14")


def test_protobuf_nesting_bombs_are_refused(world: World) -> None:
    """Unknown groups nested far beyond any parser's recursion limit, in the frame itself (before
    the handshake) and inside a correctly sealed envelope's payload (after it)."""
    tree = world.tree
    bomb = b"\x7b" * 200_000 + b"\x7c" * 200_000  # field 15 as start-group, 200,000 deep
    since = _audit_head(tree, "豫14")

    async def anonymous() -> lpb.Frame:
        async with RogueLink(world.listen("豫14"), world.tls_pem("豫14")) as link:
            await link.send_raw(bomb)
            return await link.until("challenge")

    answer = asyncio.run(anonymous())
    assert answer.error.reason == "malformed_frame"
    assert "malformed_frame" in _link_refused(tree, "豫14", since)

    since = _audit_head(tree, "豫14")
    deep = _ping(world.rogue.key, "豫1402", "豫14")
    deep.payload = b"\x7b" * 50_000 + b"\x7c" * 50_000
    header = header_of(deep)
    header.payload_sha256 = hashlib.sha256(deep.payload).digest()
    deep.header = header.SerializeToString()
    deep.seal = seal(world.rogue.key, "豫1402", deep.header)  # an honest seal over a hostile payload
    pongs = "SELECT COUNT(*) FROM outbox WHERE kind = 'pong' AND next_hop = '豫1402'"
    pongs_before = _query(tree, "豫14", pongs)
    ack = _send_batch(world.rogue, [deep])
    # Payloads are opaque to the link (relays carry them unread): the destination refuses it when
    # it delivers, audited with the envelope kept as evidence; no pong is sent back.
    assert _rejections(ack) == {}
    _assert_rejected(world, "豫14", since, {_id(deep): "malformed_envelope"}, "豫1402")
    (entry,) = [e for e in _audit(tree, "豫14", since, "rejected") if e["envelope_id"] == _id(deep)]
    assert "payload" in entry["message"]
    assert _query(tree, "豫14", pongs) == pongs_before
    _assert_serves(tree, "豫14")


def test_many_half_open_connections_do_not_exhaust_the_node(world: World) -> None:
    """Slow-loris by numbers: idle TCP sockets, TLS sessions that never speak HTTP/2, and link
    streams that never say hello. The node keeps serving its children and welcomes a new link."""
    tree = world.tree
    host, _, port = world.listen("豫14").rpartition(":")
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(200)]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    tls: list[socket.socket] = [
        ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=10)) for _ in range(30)
    ]
    # A preface sent one byte at a time and never finished.
    for sock in tls[:10]:
        for byte in b"PRI * HTTP/2.0\r\n":
            sock.send(bytes([byte]))

    async def run() -> None:
        mute = [RogueLink(world.listen("豫14"), world.tls_pem("豫14")) for _ in range(20)]
        for link in mute:
            await link.__aenter__()
        try:
            await asyncio.to_thread(_assert_serves, tree, "豫14")
            async with connected(world.rogue) as link:  # a real child still gets its link
                ack = await link.send_batch([_ping(world.rogue.key, "豫1402", "豫14")])
                assert _rejections(ack) == {}
        finally:
            for link in mute:
                await link.__aexit__(None, None, None)

    try:
        asyncio.run(run())
        children = {c["court"]: c["state"] for c in tree.status("豫14")["children"]}
        assert children["豫1403"] == "up"
    finally:
        for sock in idle + tls:
            sock.close()
    _assert_serves(tree, "豫14")


SQLISH = [
    "'; DROP TABLE outbox; --",
    '" OR 1=1 --',
    "Robert'); DROP TABLE directives;--",
    "' UNION SELECT seal FROM outbox --",
    "１＝１' OR ''='",  # full-width lookalikes
    "\u202e反向\u202d 𠀋 😀",  # bidi overrides, astral plane
    "%s %(x)s {0} \\x27 $1 ?",  # placeholders of every driver style
    "a\x00b",  # NUL: PostgreSQL text cannot hold it
]


def _tables(tree: LocalTree, court: str) -> set[str]:
    if Home(tree.homes[court]).load().store.url:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {str(r[0]) for r in _query(tree, court, sql)}


def _admin_error(call: Any) -> str:
    """The details of an admin call's refusal (the call must fail)."""
    with pytest.raises(grpc.RpcError) as refused:
        call()
    details = refused.value.details()
    return str(details)


def test_sqlish_strings_in_every_text_field_are_stored_verbatim_or_refused(world: World) -> None:
    """Directive titles and bodies, workflow titles and data, case numbers, court names: each is
    carried and stored verbatim or refused with a clear error; every table is still there."""
    tree = world.tree
    tables = {c: _tables(tree, c) for c in ("豫14", "豫1403")}
    sent: dict[str, str] = {}
    for text_ in SQLISH:
        if "\x00" in text_:
            # NUL (and every control character) is refused on every backend, naming the field,
            # with nothing half-stored: no directive row, no envelope queued.
            message = _admin_error(lambda t=text_: tree.send_directive("豫14", "豫1403", t, t))
            assert "directive title contains a control character ('\\x00' at position 1)" in message
            assert not _query(tree, "豫14", "SELECT 1 FROM directives WHERE body LIKE 'a%b'")
            continue
        sent[tree.send_directive("豫14", "豫1403", text_, text_)] = text_

    def stored(court: str) -> dict[str, tuple[str, str]]:
        rows = _query(tree, court, "SELECT envelope_id, title, body FROM directives")
        return {str(e): (str(t), str(b)) for e, t, b in rows if e in sent}

    tree.wait_until(lambda: len(stored("豫1403")) == len(sent), 30, "directives with SQL-ish titles at 豫1403")
    for court in ("豫14", "豫1403"):
        assert stored(court) == {eid: (t, t) for eid, t in sent.items()}, court
        listed = {d["id"]: d["title"] for d in tree.call(court, "directive.list")}
        assert all(listed[eid] == t for eid, t in sent.items())

    # Workflows: title and data verbatim; a SQL-ish case number refused as a case number.
    items = {}
    for text_ in [t for t in SQLISH if "\x00" not in t]:
        created = tree.call(
            "豫14",
            "workflow.create",
            {
                "workflow": "supervision",
                "parties": ["豫1403"],
                "title": text_,
                "data": {"text": text_},
                "case_number": "（2024）豫1403执1号",
            },
        )
        items[created["item_id"]] = text_
    for bad in SQLISH:
        message = _admin_error(
            lambda b=bad: tree.call(
                "豫14",
                "workflow.create",
                {
                    "workflow": "supervision",
                    "parties": ["豫1403"],
                    "title": "督办",
                    "data": {"text": "x"},
                    "case_number": b,
                },
            )
        )
        assert "case number" in message, message

    def workflows_arrived() -> bool:
        return set(items) <= {i["item_id"] for i in tree.call("豫1403", "workflow.list")}

    tree.wait_until(workflows_arrived, 30, "supervision letters at 豫1403")
    listed = {i["item_id"]: i for i in tree.call("豫1403", "workflow.list")}
    for item_id, text_ in items.items():
        assert listed[item_id]["title"] == text_
        assert listed[item_id]["data"]["text"] == text_

    # A court name chosen by a hostile enroller is stored and shown verbatim.
    world.enroll("豫1407", SQLISH[0], "豫14")
    names = {c["court"]: c["name"] for c in tree.status("豫14")["children"]}
    assert names["豫1407"] == SQLISH[0]

    for court, before in tables.items():
        assert _tables(tree, court) == before
    assert _query(tree, "豫14", "SELECT COUNT(*) FROM outbox")[0][0] > 0
    _assert_serves(tree, "豫14")


def _secret_forms(key_file: Path) -> set[str]:
    """Every textual form in which a private key could leak: its PEM lines, DER (hex, base64) and
    the raw private scalar (hex, base64, base64url)."""
    pem = key_file.read_bytes()
    key = serialization.load_pem_private_key(pem, None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        raw = key.private_numbers().private_value.to_bytes(32, "big")
    forms = {line for line in pem.decode().splitlines() if len(line) >= 40}
    forms |= {der.hex(), base64.b64encode(der).decode(), raw.hex(), base64.b64encode(raw).decode().rstrip("=")}
    forms.add(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    return forms


def test_keys_and_join_tokens_never_appear_in_logs_or_errors(world: World) -> None:
    """After everything this module did (refusals, revocations, failed enrollments), plus a few CLI
    failures here: no node log, CLI output, audit message or admin error holds key material or a
    join token."""
    tree = world.tree
    token = provision.issue_token(tree.homes["豫14"], "豫1408", 60)
    first = world.fresh_home("豫1408")
    cli = [str(Path(sys.executable).parent / "court-hub")]
    outputs: list[str] = []

    def run(*args: str) -> None:
        done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60, check=False)
        outputs.append(done.stdout + done.stderr)

    asyncio.run(provision.join(first, token.token))
    # Each CLI start costs seconds: three failures that print what a careless one would print.
    run("join", "--home", str(world.fresh_home("豫1408")), "--token", token.token)  # reused: refused
    run("join", "--home", str(world.fresh_home("豫1408")), "--token", token.token[:-5] + "AAAAA")  # forged
    run("status", "--home", str(world.base / "no-such-home"))
    assert "used" in outputs[0] or "已使用" in outputs[0], outputs[0]
    outputs.append(_admin_error(lambda: tree.call("豫14", "revoke", {"court": "豫"})))

    secrets: dict[str, str] = {}
    homes = [*tree.homes.values(), first]
    for home in homes:
        for key_file in (Home(home).court_key, Home(home).tls_key):
            secrets.update({form: str(key_file) for form in _secret_forms(key_file)})
    secrets[token.token] = "join token"
    secrets[token.token.rsplit(".", 1)[1]] = "join token signature"

    haystacks = {f"cli {i}": out for i, out in enumerate(outputs)}
    for court, home in tree.homes.items():
        haystacks[f"{court} node.log"] = (home / "node.log").read_text(errors="replace")
        details = _query(tree, court, "SELECT detail FROM audit WHERE detail IS NOT NULL")
        haystacks[f"{court} audit details"] = "\n".join(str(d[0]) for d in details)
    assert sum(len(h) for h in haystacks.values()) > 3_000  # there was plenty to look through
    for where, text_ in haystacks.items():
        for secret, what in secrets.items():
            assert secret not in text_, f"{what} appears in {where}"
