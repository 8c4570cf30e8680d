"""Whether a sampled resource trends upward: the least-squares slope over the second half.

The first half of a run is warm-up (allocator arenas, caches, the first reconnects); a
leak is growth that goes on. Over the second half's samples the slope (units per second)
times that half's duration is the growth a straight line explains; the series fails when
that growth exceeds its tolerance: a fixed floor (noise a healthy process shows, e.g. a few
MiB of RSS or a handful of sockets mid-reconnect) or a fraction of the series' median
level, whichever is larger. Pure functions, no I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Growth allowed over the second half: max(floor, relative x median level)."""

    floor: float
    relative: float = 0.10

    def allowed(self, level: float) -> float:
        return max(self.floor, self.relative * abs(level))


# What a healthy gateway stays within; `test_resilience_trend` shows a leak fails them.
TOLERANCES: dict[str, Tolerance] = {
    "rss_bytes": Tolerance(floor=4 * MIB, relative=0.03),
    "open_fds": Tolerance(floor=12),
    "asyncio_tasks": Tolerance(floor=30),
    "js_consumers": Tolerance(floor=6),
    "open_streams": Tolerance(floor=12),
}


def slope(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of `values` over `times` (0 for fewer than 2 distinct times)."""
    n = len(times)
    if n < 2:
        return 0.0
    mean_t = sum(times) / n
    mean_v = sum(values) / n
    spread = sum((t - mean_t) ** 2 for t in times)
    if not spread:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread


@dataclass(frozen=True, slots=True)
class Trend:
    """One series' verdict over the second half of its samples."""

    name: str
    samples: int  # in the second half
    level: float  # median over the second half
    slope_per_s: float
    growth: float  # slope x the second half's duration
    allowed: float

    @property
    def upward(self) -> bool:
        return self.growth > self.allowed

    def describe(self) -> str:
        verdict = "UPWARD" if self.upward else "flat"
        return (
            f"{self.name:<14} {verdict:<6} median {_fmt(self.name, self.level):>10}  "
            f"growth over 2nd half {_fmt(self.name, self.growth):>10} "
            f"(allowed {_fmt(self.name, self.allowed)}), {self.samples} samples"
        )


def _fmt(name: str, value: float) -> str:
    return f"{value / MIB:.1f} MiB" if name.endswith("bytes") else f"{value:.1f}"


def second_half(times: Sequence[float], values: Sequence[float]) -> tuple[list[float], list[float]]:
    """The samples taken in the second half of the sampled time span."""
    if not times:
        return [], []
    middle = (times[0] + times[-1]) / 2
    kept = [(t, v) for t, v in zip(times, values, strict=True) if t >= middle]
    return [t for t, _ in kept], [v for _, v in kept]


def judge(
    name: str, times: Sequence[float], values: Sequence[float], tolerance: Tolerance
) -> Trend:
    """The trend of one series, judged over its second half."""
    half_t, half_v = second_half(times, values)
    rate = slope(half_t, half_v)
    level = statistics.median(half_v) if half_v else 0.0
    duration = half_t[-1] - half_t[0] if len(half_t) > 1 else 0.0
    return Trend(
        name=name,
        samples=len(half_t),
        level=level,
        slope_per_s=rate,
        growth=rate * duration,
        allowed=tolerance.allowed(level),
    )
