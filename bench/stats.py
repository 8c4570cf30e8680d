"""Latency histograms and percentiles: mergeable across loader processes."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping

# 50 µs buckets: fine enough for loopback medians, small enough to ship as JSON.
BUCKETS_PER_SECOND = 20_000


class Histogram:
    """Counts of latencies (seconds) in fixed 50 µs buckets, plus the exact maximum."""

    __slots__ = ("counts", "max")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.max = 0.0

    def merge(self, counts: Mapping[int | str, int], maximum: float) -> None:
        for bucket, n in counts.items():
            key = int(bucket)
            self.counts[key] = self.counts.get(key, 0) + n
        self.max = max(self.max, maximum)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, p: float) -> float | None:
        """The upper edge of the bucket holding the p-th percentile (seconds); None if empty."""
        total = self.total
        if not total:
            return None
        rank = p / 100 * total
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min((bucket + 1) / BUCKETS_PER_SECOND, self.max)
        return self.max


def percentile(values: Iterable[float], p: float) -> float | None:
    """The p-th percentile of raw values (nearest rank); None if there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
