"""Per-link rate limiting of received envelopes: a token bucket that applies backpressure.

A child that floods its parent must not starve the parent's other children (DESIGN.md §2, issue 6
"flood from one child"). Dropping or refusing envelopes would break the promise that nothing
accepted is lost, so the limiter never drops anything: when a link's bucket is empty, the link's
reader simply stops reading until enough tokens have accrued. The frames then wait in gRPC's
receive buffers, HTTP/2 flow control closes the window, and the flooder's own writes block — the
pressure lands on the sender, not on the parent's memory or on its other links.

The bucket runs on the real monotonic clock (it limits real throughput; a node's domain clock may
be a test's ``FixedClock``). A batch larger than the burst is let through as soon as the bucket is
full and leaves it in debt, so an oversized batch is slowed, never stuck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``rate <= 0`` means unlimited.

    ``throttled_s`` and ``throttled`` count the time spent waiting and how many acquisitions had
    to wait, for the link's stats and the ``courthub_link_throttled_seconds_total`` metric.
    """

    def __init__(self, rate: float, burst: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        if rate > 0 and burst <= 0:
            raise ValueError(f"a token bucket with rate {rate}/s needs a positive burst, not {burst}")
        self.rate = rate
        self.burst = burst
        self._monotonic = monotonic
        self._tokens = burst
        self._stamp = monotonic()
        self.throttled_s = 0.0
        self.throttled = 0

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self) -> None:
        now = self._monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_s(self, n: float) -> float:
        """How long until ``n`` tokens may be taken (0 when they may be taken now)."""
        if self.unlimited:
            return 0.0
        self._refill()
        need = min(n, self.burst)  # a batch beyond the burst waits for a full bucket, then goes into debt
        return 0.0 if self._tokens >= need else (need - self._tokens) / self.rate

    def take(self, n: float) -> None:
        """Take ``n`` tokens now (the balance may go negative: debt paid back by later waits)."""
        if not self.unlimited:
            self._refill()
            self._tokens -= n

    async def acquire(self, n: float) -> float:
        """Wait until ``n`` tokens are available, take them, and return the seconds waited."""
        waited = 0.0
        while (delay := self.wait_s(n)) > 0:
            started = self._monotonic()
            await asyncio.sleep(delay)
            waited += self._monotonic() - started
        if waited:
            self.throttled_s += waited
            self.throttled += 1
        self.take(n)
        return waited
