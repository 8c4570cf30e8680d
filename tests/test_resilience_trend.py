"""The soak's leak detector on synthetic series: a healthy process's noise and warm-up pass,
a leak fails, whatever the resource; and the chaos schedule is seeded and keeps its rules."""

from __future__ import annotations

import itertools
import random

import pytest

from resilience.schedule import PARTITION, Shape, plan
from resilience.trend import MIB, TOLERANCES, judge, slope

MINUTES_30 = [10.0 * i for i in range(181)]  # a 30-minute run sampled every 10 s


def noisy(level: float, noise: float, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.uniform(-noise, noise) for _ in MINUTES_30]


def test_slope_is_the_least_squares_one() -> None:
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert slope([0, 1, 2], [5, 5, 5]) == 0.0
    assert slope([4.0], [1.0]) == 0.0
    assert slope([0, 10, 20], [0, 1, 5]) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("name", "level", "noise"),
    [
        ("rss_bytes", 80 * MIB, 2 * MIB),
        ("open_fds", 150, 15),
        ("asyncio_tasks", 150, 15),
        ("js_consumers", 3, 3),
        ("open_streams", 140, 15),
    ],
)
def test_a_flat_noisy_series_passes(name: str, level: float, noise: float) -> None:
    trend = judge(name, MINUTES_30, noisy(level, noise), TOLERANCES[name])
    assert not trend.upward, trend.describe()


def test_warm_up_growth_in_the_first_half_passes() -> None:
    # RSS climbs 30 MiB over the first 10 minutes (arenas, caches), then stays.
    values = [50 * MIB + min(t, 600) / 600 * 30 * MIB for t in MINUTES_30]
    trend = judge("rss_bytes", MINUTES_30, values, TOLERANCES["rss_bytes"])
    assert not trend.upward
    assert trend.samples == 91


@pytest.mark.parametrize(
    ("name", "level", "noise", "leak_per_s"),
    [
        # 2 KiB kept for each of 4 churned connections a second: 7 MiB over 15 minutes
        ("rss_bytes", 80 * MIB, 2 * MIB, 8 * 1024),
        ("open_fds", 150, 15, 1 / 30),  # one socket every 30 s
        ("asyncio_tasks", 150, 15, 1 / 15),  # one task every 15 s
        ("js_consumers", 3, 3, 1 / 60),  # one consumer a minute
        ("open_streams", 140, 15, 1 / 30),
    ],
)
def test_a_leak_on_top_of_the_noise_fails(
    name: str, level: float, noise: float, leak_per_s: float
) -> None:
    values = [v + leak_per_s * t for v, t in zip(noisy(level, noise), MINUTES_30, strict=True)]
    trend = judge(name, MINUTES_30, values, TOLERANCES[name])
    assert trend.upward, trend.describe()
    assert trend.slope_per_s == pytest.approx(leak_per_s, rel=0.5)


def test_a_leak_that_starts_late_fails() -> None:
    values = [150 + max(0.0, t - 1200) / 20 for t in MINUTES_30]
    assert judge("open_fds", MINUTES_30, values, TOLERANCES["open_fds"]).upward


def test_the_schedule_is_the_same_for_the_same_seed() -> None:
    shape = Shape(seconds=180, gateways=2, nodes=3, publishers=2)
    assert plan(5, shape) == plan(5, shape)
    assert plan(5, shape) != plan(6, shape)


@pytest.mark.parametrize("seed", range(20))
def test_the_schedule_keeps_one_gateway_and_one_node_down_at_most(seed: int) -> None:
    shape = Shape(seconds=180, gateways=2, nodes=3, publishers=2)
    faults = plan(seed, shape)
    assert {f.kind for f in faults} >= {"gateway-kill", "nats-kill", "publisher-restart"}
    for group in ("gateway", "nats"):
        mine = [f for f in faults if f.kind.startswith(group)]
        for earlier, later in itertools.pairwise(mine):
            assert later.at >= earlier.at + earlier.down, (earlier, later)
    assert all(f.at + f.down < shape.seconds for f in faults)


def test_partitions_are_drawn_only_when_asked_and_count_as_a_node_down() -> None:
    plain = Shape(seconds=180, gateways=2, nodes=3, publishers=2)
    cut = Shape(seconds=180, gateways=2, nodes=3, publishers=2, partitions=True)
    assert all(f.kind != PARTITION for seed in range(20) for f in plan(seed, plain))
    drawn = [plan(seed, cut) for seed in range(20)]
    assert all(any(f.kind == PARTITION for f in faults) for faults in drawn)
    for faults in drawn:
        nodes = [f for f in faults if f.kind.startswith("nats")]
        for earlier, later in itertools.pairwise(nodes):
            assert later.at >= earlier.at + earlier.down, (earlier, later)
