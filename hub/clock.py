"""Injectable time.

Every deadline, expiry and retention in the hub reads time through a :class:`Clock`, so tests can
move time forward instead of sleeping. ``SystemClock`` is the default everywhere.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FixedClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start_ms: int) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, *, ms: int = 0, seconds: float = 0, days: float = 0) -> None:
        self._now += ms + int(seconds * 1000) + int(days * 86_400_000)


def iso(ms: int) -> str:
    """Render epoch milliseconds as an ISO-8601 UTC timestamp for people and JSON output."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class OffsetClock:
    """The system clock plus an offset that can only be moved forward: lets process-level tests
    and drills cross deadlines (days, months) without waiting. A node uses it only when started
    with ``COURTHUB_CLOCK_CONTROL=1``; the admin operation ``clock.advance`` exists only then."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("the clock only moves forward")
        self.offset_ms += ms
