"""Reconnect delays: exponential with jitter, and the gateway's Retry-After (no I/O)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class Backoff:
    """`initial`, then doubling up to `maximum`; each delay stretched by up to a fifth, so
    clients cut off together do not come back together. `reset()` after a good stream."""

    def __init__(
        self, initial: float = 0.5, maximum: float = 30.0, seed: int | None = None
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self._failures = 0
        self._random = random.Random(seed)

    def next_delay(self) -> float:
        base = min(math.ldexp(self.initial, min(self._failures, 60)), self.maximum)
        self._failures += 1
        return base * self._random.uniform(1.0, 1.2)

    def reset(self) -> None:
        self._failures = 0


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
