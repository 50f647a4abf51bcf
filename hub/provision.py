"""Setting up a node: create its home, issue join tokens, enroll under a parent.

Shared by the CLI (``init``, ``token``, ``join``) and by anything that builds a local federation
(the demo, benchmarks, tests), so there is one way to make a node.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from hub.clock import Clock, SystemClock
from hub.codes import CourtCode
from hub.config import Config, Home, NodeSection, ParentSection, TrustSection
from hub.errors import ConfigError
from hub.federation.enrollment import join as join_parent
from hub.federation.enrollment import record_token
from hub.federation.topology import save_certificate
from hub.keys import CourtKey
from hub.store import Store
from hub.tls import fingerprint_pem, generate_self_signed
from hub.trust import CourtCertificate, JoinToken, issue_certificate, issue_join_token


def open_store(home: Home, config: Config) -> Store:
    store = Store(home.store_url(config))
    store.migrate()
    return store


def init_node(
    path: Path,
    court: str,
    name: str,
    listen: str,
    *,
    root: bool = False,
    advertise: str = "",
    store_url: str = "",
    nats_url: str = "",
    clock: Clock | None = None,
) -> tuple[Config, str]:
    """Create a node home: court key (0600), TLS key and certificate, config and store.

    A root node also gets its self-signed court certificate, the trust anchor of its tree.
    Returns the config and the TLS certificate fingerprint children will pin.
    """
    home = Home(path)
    if home.exists():
        raise ConfigError(f"{home.path} already holds a node (config.toml exists); choose another home")
    try:
        code = CourtCode.parse(court)
        node = NodeSection(court=str(code), name=name, listen=listen, advertise=advertise, root=root)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{first['loc'][0]}: {first['msg']}") from None
    config = Config(node=node, trust=TrustSection(root=str(code) if root else ""))
    config.store.url = store_url
    config.bus.nats_url = nats_url
    key = CourtKey.generate()
    key.save(home.court_key)
    fingerprint = generate_self_signed(str(code), home.tls_cert, home.tls_key)
    home.save(config)
    store = open_store(home, config)
    try:
        if root:
            now = (clock or SystemClock()).now_ms()
            token = issue_certificate(key, code, code, name, key.public_raw, now, days=3650)
            store.write_sync(lambda conn: save_certificate(conn, CourtCertificate.parse(token)))
    finally:
        store.close()
    return config, fingerprint


def issue_token(path: Path, child: str, ttl_s: int, *, clock: Clock | None = None) -> JoinToken:
    """Issue and record a one-time join token for ``child`` (the node need not be running)."""
    home = Home(path)
    config = home.load()
    key = CourtKey.load(home.court_key)
    now = (clock or SystemClock()).now_ms()
    address = config.node.advertise or config.node.listen
    token = issue_join_token(
        key, config.court, CourtCode.parse(child), address, fingerprint_pem(home.tls_cert.read_bytes()), now, ttl_s
    )
    store = open_store(home, config)
    try:
        record_token(store, token, now)
    finally:
        store.close()
    return token


async def join(path: Path, token: str) -> ParentSection:
    """Enroll the node at ``path`` with its parent (which must be running)."""
    home = Home(path)
    config = home.load()
    if config.parent is not None:
        raise ConfigError(f"{config.court} is already enrolled under {config.parent.court}")
    key = CourtKey.load(home.court_key)
    store = open_store(home, config)
    try:
        return await join_parent(home, store, key, token, config.node.name, config.node.listen)
    finally:
        store.close()
