"""Envelope kinds: payload type, which way they may cross a link, and who may send them where.

Authority rules live here as data so that every node enforces the same ones (DESIGN.md §2
"Authority"): directives go down only; reports and chain heads go up only; receipts, pings and
pongs go either way.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache

from google.protobuf import empty_pb2
from google.protobuf.message import Message

from hub.proto.courthub.v1 import payloads_pb2 as pb


class Authority(enum.StrEnum):
    ANY = "any"
    # The destination must be strictly below the origin (directives, supervision).
    DOWNWARD = "downward"
    # The destination must be strictly above the origin (reports, chain heads).
    UPWARD = "upward"


@dataclass(frozen=True)
class KindSpec:
    name: str
    payload: type[Message]
    # May cross a link child → parent / parent → child.
    up: bool
    down: bool
    authority: Authority
    # The destination answers with a signed receipt.
    receipt: bool
    # False for a kind this node's version does not know (see ``unknown``).
    known: bool = True


_KINDS: dict[str, KindSpec] = {}


def register(spec: KindSpec) -> KindSpec:
    if spec.name in _KINDS and _KINDS[spec.name] != spec:
        raise ValueError(f"envelope kind {spec.name!r} registered twice")
    _KINDS[spec.name] = spec
    return spec


def get(name: str) -> KindSpec | None:
    return _KINDS.get(name)


# What a kind name may look like, so a newer peer's kinds are tolerated but not arbitrary bytes.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){0,3}$")


@lru_cache(maxsize=256)
def unknown(name: str) -> KindSpec | None:
    """The spec for a kind introduced by a newer peer, or None if ``name`` is not a kind name.

    A newer node may send kinds this one has never heard of (protocol evolution, DESIGN.md §2).
    They are tolerated: routed and relayed like any envelope (the seal and the origin's link
    authority still hold), stored and reported at the destination, never interpreted. Their
    payload is kept as opaque bytes; no receipt is sent because the kind's rules are not known.
    """
    if not _NAME.match(name):
        return None
    return KindSpec(name, empty_pb2.Empty, True, True, Authority.ANY, False, known=False)


def names() -> list[str]:
    return sorted(_KINDS)


DIRECTIVE = register(KindSpec("directive", pb.DirectivePayload, False, True, Authority.DOWNWARD, True))
RECEIPT = register(KindSpec("receipt", pb.ReceiptPayload, True, True, Authority.ANY, False))
PING = register(KindSpec("ping", pb.PingPayload, True, True, Authority.ANY, False))
PONG = register(KindSpec("pong", pb.PongPayload, True, True, Authority.ANY, False))
CHAIN_HEAD = register(KindSpec("chain_head", pb.ChainHeadPayload, True, False, Authority.UPWARD, False))
# Load generator for `court-hub bench`: stored and acked like any envelope, no receipt.
BENCH = register(KindSpec("bench", pb.BenchPayload, True, True, Authority.ANY, False))
