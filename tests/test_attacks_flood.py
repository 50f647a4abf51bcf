"""A child that floods its parent is slowed down, loses nothing, and starves nobody.

In-process tree 豫 → 豫14 → 豫1403 (real nodes, TLS gRPC on loopback, SQLite). A rogue 豫1402,
legitimately enrolled under 豫14, opens its link and writes batches of ``bench`` envelopes as fast
as gRPC lets it, never waiting for acks. 豫14's per-child token bucket (``[federation]
child_rate_per_s``/``child_burst``, set low here) pauses reading that link; meanwhile the honest
child 豫1403 keeps getting its pings answered and a directive delivered. Afterwards every envelope
the flooder wrote is in 豫14's inbox exactly once, acked, none refused.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from inproc import InProcTree, inproc_tree
from rogue import Identity, RogueLink, connected, envelope
from sqlalchemy import func, select

from hub import provision
from hub.codes import CourtCode
from hub.federation.envelope import Target
from hub.federation.ratelimit import TokenBucket
from hub.localtree import NodeSpec
from hub.netutil import free_port
from hub.proto.courthub.v1 import link_pb2 as lpb
from hub.proto.courthub.v1 import payloads_pb2 as ppb
from hub.store.schema import directives, inbox

TREE = [
    NodeSpec("豫", "河南省高级人民法院"),
    NodeSpec("豫14", "商丘市中级人民法院", "豫"),
    NodeSpec("豫1403", "商丘市睢阳区人民法院", "豫14"),
]
RATE = 400.0  # envelopes per second from one child
BURST = 200
BATCHES = 24
PER_BATCH = 100
PAD = bytes(8000)  # ~800 KB per batch: the flood outgrows gRPC's buffers and the HTTP/2 window


async def _enroll_rogue(tree: InProcTree, base: Path) -> Identity:
    home = base / "rogue-1402"
    provision.init_node(home, "豫1402", "商丘市梁园区人民法院", f"127.0.0.1:{free_port()}")
    token = await asyncio.to_thread(provision.issue_token, tree["豫14"].home.path, "豫1402", 60)
    await provision.join(home, token.token)
    return await asyncio.to_thread(Identity.from_home, home)


async def _count(tree: InProcTree, court: str, origin: str) -> int:
    def read(conn: object) -> int:
        return int(conn.execute(select(func.count()).select_from(inbox).where(inbox.c.origin == origin)).scalar_one())  # type: ignore[attr-defined]

    return await tree[court].store.read(read)


async def _flood(link: RogueLink, me: Identity, written: list[float]) -> None:
    """Write every batch without waiting for acks; record when each write returned."""
    target = Target.to_court(CourtCode.parse("豫14"))
    for seq in range(1, BATCHES + 1):
        batch = [
            envelope(me.key, "豫1402", "bench", target, ppb.BenchPayload(sent_at_us=time.time_ns() // 1000, pad=PAD))
            for _ in range(PER_BATCH)
        ]
        await link.send(lpb.Frame(batch=lpb.EnvelopeBatch(seq=seq, envelopes=batch)))
        written.append(time.monotonic())


async def test_flooding_child_is_rate_limited_without_starving_its_sibling(tmp_path: Path) -> None:
    async with inproc_tree(tmp_path, TREE) as tree:
        parent = tree["豫14"]
        parent.config.federation.child_rate_per_s = RATE
        parent.config.federation.child_burst = BURST
        me = await _enroll_rogue(tree, tmp_path)
        total = BATCHES * PER_BATCH

        async with connected(me) as link:
            session = parent.sessions[CourtCode.parse("豫1402")]
            started = time.monotonic()
            written: list[float] = []
            acks: list[lpb.Frame] = []

            async def read_acks() -> None:
                while len(acks) < BATCHES:
                    frame = await link.until("ack", wait_s=60)
                    assert frame.WhichOneof("body") == "ack", frame
                    acks.append(frame)

            samples: list[tuple[float, int]] = []

            async def sample() -> None:
                while True:
                    samples.append((time.monotonic(), session.stats.envelopes_received))
                    await asyncio.sleep(0.05)

            flooding = asyncio.create_task(_flood(link, me, written))
            reading = asyncio.create_task(read_acks())
            sampling = asyncio.create_task(sample())
            await tree.settle(lambda: session.stats.throttled_batches > 0)

            # While the flood is being held back, the honest child is served: pings both ways
            # through 豫14 and a directive down to it.
            sibling = tree["豫1403"]
            for result in await sibling.pinger.ping(CourtCode.parse("豫"), 3, 10):
                assert result["ok"], result
            for result in await tree["豫"].pinger.ping(CourtCode.parse("豫1403"), 3, 10):
                assert result["ok"], result
            eid, _ = await tree["豫"].directives.send(CourtCode.parse("豫1403"), False, "限流期间的指令", "正文")

            async def delivered() -> bool:
                rows = await sibling.store.read(
                    lambda c: c.execute(select(directives.c.envelope_id).where(directives.c.envelope_id == eid)).all()
                )
                return bool(rows)

            await tree.settle(delivered)
            received_meanwhile = session.stats.envelopes_received
            assert received_meanwhile < total, "the flood was not held back while the sibling was served"

            # Backpressure reached the flooder: its writes block (they do not all land in buffers).
            await asyncio.wait_for(asyncio.gather(flooding, reading), 120)
            sampling.cancel()
            # Backpressure reached the flooder: its last write returned only once most of the flood
            # had been read, i.e. its writes blocked instead of all landing in buffers.
            read_when_written = max(n for t, n in samples if t <= written[-1])
            assert read_when_written >= total // 2, f"all writes returned with only {read_when_written} read"

        # The received rate is capped by the bucket: at every sample, burst + rate × time since the
        # session started (+ one batch let into debt), and the bucket really made it wait.
        assert session.stats.envelopes_received == total
        for t, n in samples:
            assert n <= BURST + RATE * (t - started) + PER_BATCH, (t - started, n)
        assert session.stats.throttled_s > 0
        assert parent.metrics.link_throttled.labels("豫1402")._value.get() > 0
        # Nothing dropped, nothing refused, nothing twice: every acked envelope is in the inbox once.
        assert all(not a.ack.rejections for a in acks)
        assert sorted(a.ack.seq for a in acks) == list(range(1, BATCHES + 1))
        assert await _count(tree, "豫14", "豫1402") == total


def test_token_bucket_arithmetic() -> None:
    """Burst first, then the rate; a batch beyond the burst waits for a full bucket and goes into
    debt (slowed, never stuck); rate 0 never waits."""
    now = [0.0]
    bucket = TokenBucket(100.0, 50, monotonic=lambda: now[0])
    assert bucket.wait_s(50) == 0
    bucket.take(50)
    assert bucket.wait_s(10) == pytest.approx(0.1)
    now[0] += 0.1
    assert bucket.wait_s(10) == 0
    bucket.take(10)
    assert bucket.wait_s(500) == pytest.approx(0.5)  # capped at the burst: waits for a full bucket ...
    now[0] += 0.5
    bucket.take(500)  # ... then takes it all, 450 in debt
    assert bucket.wait_s(1) == pytest.approx(4.51)
    assert TokenBucket(0, 0).wait_s(10**9) == 0
