"""Enrollment, both sides.

Parent: ``enroll_child`` spends a join token exactly once (an atomic UPDATE … WHERE used_at IS
NULL), checks the child's proof of key possession, issues its court certificate and records the
child. Child: ``join`` fetches the parent's TLS certificate, checks it against the token's pin,
enrolls over that pinned channel, and stores the certificate chain and the parent's address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from sqlalchemy import Connection, insert, update

from hub.audit import AuditLog
from hub.codes import CourtCode
from hub.config import Home, ParentSection
from hub.errors import CourtHubError, InvalidCode, InvalidInput, TrustError, Unavailable
from hub.federation.interceptors import reason_of
from hub.federation.server import SERVICE
from hub.federation.topology import save_certificate
from hub.keys import CourtKey
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.store import Store
from hub.store.schema import children, join_tokens
from hub.tls import fetch_pinned_certificate
from hub.trust import CourtCertificate, JoinToken, issue_certificate, make_proof, verify_join_token, verify_proof

if TYPE_CHECKING:
    from hub.node import Node


def certificate_chain(node: Node) -> list[str]:
    """This node's certificate and its issuers' up to the root, nearest first."""
    chain: list[str] = []
    court: CourtCode | None = node.me
    while court is not None:
        cert = node.trust.certificate(court)
        if cert is None:
            raise CourtHubError(f"certificate chain of {node.me} is incomplete at {court}")
        chain.append(cert.token)
        court = None if cert.self_signed else cert.issuer
    return chain


async def enroll_child(node: Node, req: lpb.EnrollRequest) -> lpb.EnrollResponse:
    now = node.clock.now_ms()
    try:
        court = CourtCode.parse(req.court)
    except InvalidCode as exc:
        raise InvalidInput(f"enroll: {exc}") from None
    token = verify_join_token(req.token, node.key, node.me, now)
    if token.child != court:
        raise TrustError(f"join token is for {token.child}, not for {court}", reason="wrong_court")
    verify_proof(req.proof, req.public_key, court, token.jti)
    name = req.name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("enroll: court name must be 1–100 characters")
    cert_token = issue_certificate(
        node.key, node.me, court, name, req.public_key, now, days=node.config.trust.certificate_days
    )
    cert = CourtCertificate.parse(cert_token)

    def spend(conn: Connection) -> None:
        used = conn.execute(
            update(join_tokens)
            .where(join_tokens.c.jti == token.jti, join_tokens.c.used_at_ms.is_(None))
            .values(used_at_ms=now)
        ).rowcount
        if used != 1:
            raise TrustError("join token was already used or was not issued by this court", reason="token_used")
        conn.execute(children.delete().where(children.c.court == str(court)))
        conn.execute(insert(children).values(court=str(court), name=name, serial=cert.serial, enrolled_at_ms=now))
        save_certificate(conn, cert)
        log = AuditLog(conn)
        log.append("enrolled", now, peer=str(court), detail={"name": name, "serial": cert.serial})
        log.flush()

    await node.store.write(spend)
    node.trust.add_certificate(cert_token)
    node.router.children.add(court)
    # Every node must learn the new certificate to verify the newcomer's seals: both ways.
    node.announce_soon(up=True, down=True)
    return lpb.EnrollResponse(certificate=cert_token, chain=certificate_chain(node))


def record_token(store: Store, token: JoinToken, now_ms: int) -> None:
    store.write_sync(
        lambda conn: conn.execute(
            insert(join_tokens).values(
                jti=token.jti, child=str(token.child), expires_at_ms=token.expires_at_ms, issued_at_ms=now_ms
            )
        )
    )


async def join(home: Home, store: Store, key: CourtKey, token_text: str, name: str, listen: str) -> ParentSection:
    """Child side: enroll with the parent named in the token; returns the parent config section."""
    token = JoinToken.parse(token_text)
    config = home.load()
    me = config.court
    if token.child != me:
        raise TrustError(f"this join token is for {token.child}, but this node is {me}", reason="wrong_court")
    host, _, port = token.address.rpartition(":")
    pem = fetch_pinned_certificate(host, int(port), token.fingerprint)
    from hub.federation.client import secure_channel

    request = lpb.EnrollRequest(
        token=token.token,
        court=str(me),
        name=name,
        public_key=key.public_raw,
        proof=make_proof(key, me, token.jti),
        listen=listen,
    )
    async with secure_channel(token.address, pem) as channel:
        enroll = channel.unary_unary(
            f"/{SERVICE}/Enroll",
            request_serializer=lpb.EnrollRequest.SerializeToString,
            response_deserializer=lpb.EnrollResponse.FromString,
        )
        try:
            response = await enroll(request, timeout=15)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"parent {token.parent} at {token.address}: {exc.details()}") from None
            raise CourtHubError(
                f"parent refused enrollment: {exc.details()}", reason=reason_of(exc) or "refused"
            ) from None
    cert = CourtCertificate.parse(response.certificate)
    if cert.court != me or cert.public_raw != key.public_raw or cert.issuer != token.parent:
        raise TrustError("the certificate the parent issued does not match this node's court and key")
    chain = [CourtCertificate.parse(t) for t in response.chain]
    if not chain or not chain[-1].self_signed:
        raise TrustError("the parent's certificate chain does not end at a self-signed root")
    root = chain[-1]

    def save(conn: Connection) -> None:
        for c in [cert, *chain]:
            save_certificate(conn, c)

    store.write_sync(save)
    home.parent_cert.write_bytes(pem)
    parent = ParentSection(court=str(token.parent), address=token.address, fingerprint=token.fingerprint)
    config.parent = parent
    config.trust.root = str(root.court)
    home.save(config)
    return parent
