"""What a node knows of the tree: children, routes, certificates and revocations.

Children announce their subtree (routes with capabilities) and the certificates in it; parents
announce the certificates and revocations they know plus the courts above. Each side accepts only
what the sender may speak for: a child only courts inside its subtree, a parent only courts
outside ours. Changes are persisted, then passed on (routes upward, trust both ways) so every node
can verify any origin's seal and revocations reach the whole tree.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Table, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from hub.clock import Clock
from hub.codes import CourtCode
from hub.errors import CourtHubError, InvalidCode
from hub.federation.router import Router
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.store import Store
from hub.store.schema import certificates, children, revocations, routes
from hub.trust import CourtCertificate, Revocation, TrustStore

log = logging.getLogger(__name__)


@dataclass
class Changes:
    routes: bool = False
    trust: bool = False
    revoked: tuple[CourtCode, ...] = ()


def _upsert(conn: Connection, table: Table, values: dict[str, object], key: str) -> None:
    dialect = conn.dialect.name
    ins = (sqlite if dialect == "sqlite" else postgresql).insert(table)
    stmt = ins.values(**values).on_conflict_do_update(
        index_elements=[key], set_={k: v for k, v in values.items() if k != key}
    )
    conn.execute(stmt)


def save_certificate(conn: Connection, cert: CourtCertificate) -> None:
    _upsert(
        conn,
        certificates,
        {
            "court": str(cert.court),
            "token": cert.token,
            "issuer": str(cert.issuer),
            "serial": cert.serial,
            "not_after_ms": cert.not_after_ms,
        },
        "court",
    )


def save_revocation(conn: Connection, rev: Revocation) -> None:
    _upsert(
        conn,
        revocations,
        {"serial": rev.serial, "court": str(rev.court), "token": rev.token, "revoked_at_ms": rev.at_ms},
        "serial",
    )


def load_trust(conn: Connection, root_court: CourtCode, clock: Clock) -> TrustStore:
    """Rebuild the trust store from the certificates and revocations table."""
    rows = conn.execute(select(certificates.c.court, certificates.c.token)).all()
    by_court = {r.court: r.token for r in rows}
    if str(root_court) not in by_court:
        raise CourtHubError(f"no root certificate for {root_court} in the store (enrollment incomplete?)")
    trust = TrustStore(CourtCertificate.parse(by_court[str(root_court)]), clock)
    for court, token in sorted(by_court.items(), key=lambda kv: CourtCode.parse(kv[0]).level.depth):
        if court == str(root_court):
            continue
        try:
            trust.add_certificate(token)
        except CourtHubError as exc:
            log.warning("ignoring stored certificate of %s: %s", court, exc)
    for (token,) in conn.execute(select(revocations.c.token)).all():
        try:
            trust.add_revocation(token)
        except CourtHubError as exc:
            log.warning("ignoring stored revocation: %s", exc)
    return trust


class Topology:
    def __init__(self, router: Router, trust: TrustStore, store: Store, clock: Clock) -> None:
        self.router = router
        self.trust = trust
        self.store = store
        self.clock = clock
        self.ancestor_routes: dict[CourtCode, tuple[int, list[str]]] = {}
        self._route_info: dict[CourtCode, tuple[int, list[str]]] = {}

    def load(self, conn: Connection) -> None:
        for (court,) in conn.execute(select(children.c.court)).all():
            self.router.children.add(CourtCode.parse(court))
        for row in conn.execute(select(routes)).all():
            court, via = CourtCode.parse(row.court), CourtCode.parse(row.via)
            info = (row.distance, json.loads(row.capabilities))
            if via == self.router.parent:
                self.ancestor_routes[court] = info
            else:
                self.router.routes[court] = via
                self._route_info[court] = info

    # -- building ------------------------------------------------------------------------------
    def announcement(self, peer: CourtCode, to_child: bool) -> lpb.Announce:
        me = self.router.me
        own = lpb.Route(court=str(me), distance=0, capabilities=sorted(self.router.capabilities))
        if to_child:
            rs = [own] + [
                lpb.Route(court=str(c), distance=d, capabilities=caps) for c, (d, caps) in self.ancestor_routes.items()
            ]
            certs = [c.token for c in self.trust.certificates() if not c.court.is_within(peer)]
        else:
            rs = [own] + [
                lpb.Route(court=str(c), distance=d, capabilities=caps)
                for c, (d, caps) in self._route_info.items()
                if c.is_within(me)
            ]
            certs = [c.token for c in self.trust.certificates() if c.court.is_within(me)]
        return lpb.Announce(routes=rs, certificates=certs, revocations=[r.token for r in self.trust.revocations()])

    # -- applying ------------------------------------------------------------------------------
    def apply(
        self, peer: CourtCode, from_child: bool, announce: lpb.Announce
    ) -> tuple[Changes, Callable[[Connection], None]]:
        """Validate an announcement, update memory, and return the changes and the store write."""
        me = self.router.me
        changes = Changes()
        new_routes: dict[CourtCode, tuple[int, list[str]]] = {}
        for route in announce.routes[:10_000]:
            try:
                court = CourtCode.parse(route.court)
            except InvalidCode as exc:
                log.warning("announcement from %s: bad route: %s", peer, exc)
                continue
            allowed = court.is_within(peer) if from_child else not court.is_within(me)
            if not allowed:
                log.warning("announcement from %s: route to %s refused (not theirs to announce)", peer, court)
                continue
            new_routes[court] = (route.distance + 1, sorted(set(route.capabilities))[:100])

        certs: list[CourtCertificate] = []
        for token in announce.certificates[:10_000]:
            try:
                cert = CourtCertificate.parse(token)
            except CourtHubError as exc:
                log.warning("announcement from %s: bad certificate: %s", peer, exc)
                continue
            allowed = cert.court.is_within(peer) if from_child else not cert.court.is_within(me)
            if allowed:
                certs.append(cert)
        added_certs: list[CourtCertificate] = []
        for cert in sorted(certs, key=lambda c: c.court.level.depth):
            known = self.trust.certificate(cert.court)
            if known is not None and known.token == cert.token:
                continue
            try:
                added_certs.append(self.trust.add_certificate(cert.token))
            except CourtHubError as exc:
                log.warning("announcement from %s: certificate of %s refused: %s", peer, cert.court, exc)
        added_revs: list[Revocation] = []
        for token in announce.revocations[:10_000]:
            try:
                rev = self.trust.add_revocation(token)
            except CourtHubError as exc:
                log.warning("announcement from %s: revocation refused: %s", peer, exc)
                continue
            if rev is not None:
                added_revs.append(rev)
        changes.trust = bool(added_certs or added_revs)
        changes.revoked = tuple(r.court for r in added_revs)

        if from_child:
            old = {c: i for c, i in self._route_info.items() if self.router.routes.get(c) == peer}
            if old != new_routes:
                changes.routes = True
                for court in old:
                    self.router.routes.pop(court, None)
                    self._route_info.pop(court, None)
                for court, info in new_routes.items():
                    self.router.routes[court] = peer
                    self._route_info[court] = info
        elif self.ancestor_routes != new_routes:
            changes.routes = True
            self.ancestor_routes = dict(new_routes)
        now = self.clock.now_ms()

        def write(conn: Connection) -> None:
            if changes.routes:
                conn.execute(delete(routes).where(routes.c.via == str(peer)))
                if new_routes:
                    conn.execute(
                        insert(routes),
                        [
                            {
                                "court": str(c),
                                "via": str(peer),
                                "distance": d,
                                "capabilities": json.dumps(caps),
                                "updated_at_ms": now,
                            }
                            for c, (d, caps) in new_routes.items()
                        ],
                    )
            for cert in added_certs:
                save_certificate(conn, cert)
            for rev in added_revs:
                save_revocation(conn, rev)

        return changes, write

    def reachable_capabilities(self) -> dict[str, str]:
        """Capability → the nearest court offering it (here, else the closest ancestor)."""
        found = {cap: str(self.router.me) for cap in self.router.capabilities}
        for court, (_d, caps) in sorted(self.ancestor_routes.items(), key=lambda kv: kv[1][0]):
            for cap in caps:
                found.setdefault(cap, str(court))
        return found
