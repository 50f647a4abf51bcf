"""Tables of a node's store (SQLAlchemy Core).

The store is the node's source of truth: the bus carries work and events, but anything the node has
promised to keep (an accepted envelope, a measure, an audit entry) is here first. Alembic
migrations in ``hub/store/migrations`` create these tables; keep the two in step
(``tests/test_store.py`` checks that the migrated schema matches this metadata).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Small key/value facts about this node (schema epoch, link sequence numbers …).
node_meta = Table(
    "node_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Envelopes waiting for (or having had) a next hop's ack. One row per (envelope, next hop): a
# subtree broadcast fans out into one row per child link. Rows are sent in id order per hop.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("envelope_id", String(64), nullable=False),
    Column("next_hop", String(16), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("header", LargeBinary, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("seal", Text, nullable=False),
    # pending → delivered | rejected
    Column("state", String(16), nullable=False, default="pending"),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("done_at_ms", BigInteger),
    Column("reason", Text),
)
Index("ix_outbox_hop_state_id", outbox.c.next_hop, outbox.c.state, outbox.c.id)

# Every envelope this node committed from a link, by id: the dedupe set. Pruned after the
# configured retention (longer than the longest outage the federation must survive).
inbox = Table(
    "inbox",
    metadata,
    Column("envelope_id", String(64), primary_key=True),
    Column("origin", String(16), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("from_hop", String(16), nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
)
Index("ix_inbox_received", inbox.c.received_at_ms)

# Courts reachable from here and the neighbour that leads to each ("" = this node).
routes = Table(
    "routes",
    metadata,
    Column("court", String(16), primary_key=True),
    Column("via", String(16), nullable=False),
    Column("distance", Integer, nullable=False),
    Column("capabilities", Text, nullable=False, default="[]"),
    Column("updated_at_ms", BigInteger, nullable=False),
)

# Court certificates known to this node (its own, its chain, and those announced to it).
certificates = Table(
    "certificates",
    metadata,
    Column("court", String(16), primary_key=True),
    Column("token", Text, nullable=False),
    Column("issuer", String(16), nullable=False),
    Column("serial", String(64), nullable=False),
    Column("not_after_ms", BigInteger, nullable=False),
)

revocations = Table(
    "revocations",
    metadata,
    Column("serial", String(64), primary_key=True),
    Column("court", String(16), nullable=False),
    Column("token", Text, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=False),
)

# Join tokens this node issued; a token is spent by exactly one enrollment.
join_tokens = Table(
    "join_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("child", String(16), nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("issued_at_ms", BigInteger, nullable=False),
    Column("used_at_ms", BigInteger),
)

# Children enrolled under this node.
children = Table(
    "children",
    metadata,
    Column("court", String(16), primary_key=True),
    Column("name", Text, nullable=False),
    Column("serial", String(64), nullable=False),
    Column("enrolled_at_ms", BigInteger, nullable=False),
)

# Hash-chained, append-only audit log (全程留痕). `hash` = SHA-256 over the previous hash and
# this entry's canonical content, including the SHA-256 of `raw` (the sealed envelope).
audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("action", String(32), nullable=False),
    Column("envelope_id", String(64)),
    Column("kind", String(64)),
    Column("origin", String(16)),
    Column("peer", String(16)),
    Column("detail", Text, nullable=False, default="{}"),
    Column("raw", LargeBinary),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# Signed audit chain heads received from children (tamper evidence upstream).
chain_heads = Table(
    "chain_heads",
    metadata,
    Column("court", String(16), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("envelope_id", String(64), nullable=False),
)

# Envelopes this node originated that expect receipts, per recipient court.
deliveries = Table(
    "deliveries",
    metadata,
    Column("envelope_id", String(64), primary_key=True),
    Column("recipient", String(16), primary_key=True),
    # pending → delivered | rejected
    Column("state", String(16), nullable=False),
    Column("receipt_at_ms", BigInteger),
    Column("reason", Text),
)

# Directives (指令) sent or received by this node.
directives = Table(
    "directives",
    metadata,
    Column("envelope_id", String(64), primary_key=True),
    Column("direction", String(8), nullable=False),  # sent | received
    Column("origin", String(16), nullable=False),
    Column("target", String(16), nullable=False),
    Column("subtree", Boolean, nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("level", String(16), nullable=False),
    Column("feedback_due_ms", BigInteger),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("received_at_ms", BigInteger),
)
Index("ix_directives_created", directives.c.created_at_ms)
