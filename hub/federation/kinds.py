"""Envelope kinds: payload type, which way they may cross a link, and who may send them where.

Authority rules live here as data so that every node enforces the same ones (DESIGN.md §2
"Authority"): directives go down only; reports and chain heads go up only; receipts, pings and
pongs go either way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

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


_KINDS: dict[str, KindSpec] = {}


def register(spec: KindSpec) -> KindSpec:
    if spec.name in _KINDS and _KINDS[spec.name] != spec:
        raise ValueError(f"envelope kind {spec.name!r} registered twice")
    _KINDS[spec.name] = spec
    return spec


def get(name: str) -> KindSpec | None:
    return _KINDS.get(name)


def names() -> list[str]:
    return sorted(_KINDS)


DIRECTIVE = register(KindSpec("directive", pb.DirectivePayload, False, True, Authority.DOWNWARD, True))
RECEIPT = register(KindSpec("receipt", pb.ReceiptPayload, True, True, Authority.ANY, False))
PING = register(KindSpec("ping", pb.PingPayload, True, True, Authority.ANY, False))
PONG = register(KindSpec("pong", pb.PongPayload, True, True, Authority.ANY, False))
CHAIN_HEAD = register(KindSpec("chain_head", pb.ChainHeadPayload, True, False, Authority.UPWARD, False))
# Load generator for `court-hub bench`: stored and acked like any envelope, no receipt.
BENCH = register(KindSpec("bench", pb.BenchPayload, True, True, Authority.ANY, False))
