"""W1C: delivery control (`?conflate=<ms>`) measured against exact delivery; W1S, the slow
reader, is bench.slow_reader.

W1C runs W1's fan-out at each of `w1c_rates`, first with every client exact, then with
every client at `conflate=<conflate_ms>`, back to back in one environment (fresh clients
each time): deliveries/s, the gateway's CPU per tick and per delivery, and the bytes the
loaders read per tick, side by side with their ratios.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.config import BenchConfig
from bench.environment import Environment, client_spec
from bench.processes import BenchError
from bench.workloads import latency_figures, loss_figures, seed

MODES = ("exact", "conflated")
COUNTERS = (
    "gateway_events_conflated_total",
    "gateway_live_fallbacks_total",
    "gateway_slow_client_disconnects_total",
)
WARM_UP_S = 1.0


def conflated_spec(config: BenchConfig, conflate_ms: int) -> dict[str, Any]:
    """What a loader needs to open and judge a client at `conflate_ms` (0: exact)."""
    if not conflate_ms:
        return {}
    return {"conflate": [conflate_ms / 1000, config.conflate_tolerance_ms / 1000]}


def _with_conflate(spec: dict[str, Any], conflate_ms: int) -> dict[str, Any]:
    if conflate_ms:
        spec["path"] += f"&conflate={conflate_ms}"
    return spec


async def w1c_conflated(env: Environment, config: BenchConfig) -> dict[str, Any]:
    """W1C: W1's clients exact, then all at conflate_ms, at each rate of w1c_rates."""
    await seed(env)
    steps: list[dict[str, Any]] = []
    first_id = 0
    for rate in config.w1c_rates:
        step: dict[str, Any] = {"rate_target": rate}
        for mode in MODES:
            conflate_ms = config.conflate_ms if mode == "conflated" else 0
            step[mode] = await fan_out_step(env, config, rate, conflate_ms, first_id)
            first_id += config.w1_clients
        step["ratios"] = _ratios(step["exact"], step["conflated"])
        steps.append(step)
        print(_w1c_line(env.target, step), flush=True)
    losses = [s[mode]["loss"] for s in steps for mode in MODES]
    return {
        "clients": config.w1_clients,
        "conflate_ms": config.conflate_ms,
        "gap_tolerance_ms": config.conflate_tolerance_ms,
        "steps": steps,
        "zero_loss": all(clean(loss) for loss in losses),
    }


def clean(loss: dict[str, Any]) -> bool:
    """No loss of any kind, interval faults included."""
    kinds = ("lost", "undelivered", "duplicated", "unexpected", "out_of_order", "too_soon")
    return not any(loss.get(kind) for kind in kinds)


async def fan_out_step(
    env: Environment,
    config: BenchConfig,
    rate: float,
    conflate_ms: int,
    first_id: int,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Open w1_clients fresh clients (with `headers` on their requests), publish at `rate`
    for w1c_step_seconds, let them settle, close them; the step's figures."""
    extra = conflated_spec(config, conflate_ms)
    if headers:
        extra["headers"] = headers
    specs = [
        _with_conflate(client_spec(first_id + i, config, **extra), conflate_ms)
        for i in range(config.w1_clients)
    ]
    env.subscribers = [0] * config.symbols  # the clients of earlier steps are gone
    opened = await env.open(specs)
    if opened["opened"] < config.w1_clients:
        raise BenchError(f"{env.target}: {opened['opened']} of {config.w1_clients} connected")
    await env.settle(config.settle_timeout)  # the snapshot arrived
    # A second at the step's rate first: every client is live and past its first tick.
    await env.publish(rate=rate, seconds=WARM_UP_S)
    before, _ = await env.settle(config.settle_timeout)
    counters = await env.gateway_counters(COUNTERS)
    await env.each(op="mark", min_key=env.last_key + 1)
    meter = env.meter()
    started = time.monotonic()
    published = await env.publish(rate=rate, seconds=config.w1c_step_seconds)
    window = await env.stats()
    wall, used = meter.sample()
    elapsed = time.monotonic() - started
    tally, settle_s = await env.settle(config.settle_timeout)
    after = await env.stats()
    counted = await env.gateway_counters(COUNTERS)
    await env.each(op="close")
    step = _step_figures(published, window, wall, used, elapsed)
    loss: dict[str, Any] = loss_figures(tally)
    if conflate_ms:  # the step's own interval faults; the closest gap so far in the workload
        loss.update(
            too_soon=tally.too_soon - before.too_soon,
            gaps_under=tally.gaps_under - before.gaps_under,
            min_gap_ms=tally.min_gap_ms,
        )
    step.update(
        conflate_ms=conflate_ms,
        latency=latency_figures(after["hist"]),
        settle_s=round(settle_s, 2),
        conflated_away=tally.conflated_away - before.conflated_away,
        gateway_events_conflated=counter_delta(counters, counted, COUNTERS[0]),
        live_fallbacks=counter_delta(counters, counted, "gateway_live_fallbacks_total"),
        slow_client_disconnects=counter_delta(
            counters, counted, "gateway_slow_client_disconnects_total"
        ),
        loss=loss,
        closed_by_server=after["closed_by_server"],
        server_rss_mb=round(env.server_rss() / 2**20, 1),
    )
    await asyncio.sleep(1.0)  # the gateway lets the closed clients go before the next step
    return step


def _step_figures(
    published: dict[str, Any],
    window: dict[str, Any],
    wall: float,
    used: dict[str, float],
    elapsed: float,
) -> dict[str, Any]:
    ticks = published["sent"]
    events = window["window_events"]
    cpu = {name: round(100 * seconds / wall, 1) for name, seconds in used.items()}
    return {
        "ticks": ticks,
        "rate_published": round(published["rate"], 1),
        "deliveries_per_s": round(events / elapsed),
        "deliveries_due_exact_per_s": round(published["deliveries_due"] / published["seconds"]),
        "server_cpu_percent": cpu["server"],
        "cpu_percent": cpu,
        "cpu_us_per_tick": round(used["server"] / ticks * 1e6, 1) if ticks else None,
        "cpu_us_per_delivery": round(used["server"] / events * 1e6, 2) if events else None,
        "bytes_per_tick": round(window["window_bytes"] / ticks) if ticks else None,
        "bytes_per_delivery": round(window["window_bytes"] / events, 1) if events else None,
    }


def counter_delta(
    before: dict[str, float | None], after: dict[str, float | None], name: str
) -> int | None:
    """How much counter `name` rose (None: not known both times)."""
    a, b = before.get(name), after.get(name)
    return None if a is None or b is None else round(b - a)


RATIO_FIGURES = ("deliveries_per_s", "server_cpu_percent", "cpu_us_per_tick", "bytes_per_tick")


def _ratios(exact: dict[str, Any], conflated: dict[str, Any]) -> dict[str, float | None]:
    """conflated / exact for the headline figures."""
    out: dict[str, float | None] = {}
    for name in RATIO_FIGURES:
        a, b = conflated.get(name), exact.get(name)
        out[name] = round(a / b, 3) if a is not None and b else None
    return out


def _w1c_line(target: str, step: dict[str, Any]) -> str:
    parts = []
    for mode in MODES:
        s = step[mode]
        parts.append(
            f"{mode} {s['deliveries_per_s']} del/s cpu {s['server_cpu_percent']}%"
            f" {s['cpu_us_per_tick']} us/tick {s['bytes_per_tick']} B/tick"
            f" p99 {s['latency']['p99_ms']} ms"
            f"{f' fallbacks {fb}' if (fb := s['live_fallbacks']) else ''}"
        )
    conflated = step["conflated"]
    return (
        f"  W1C {target:7} {step['rate_target']:>6.0f} ticks/s: {'; '.join(parts)};"
        f" conflated away {conflated['conflated_away']},"
        f" min gap {conflated['loss']['min_gap_ms']} ms (gaps under"
        f" {conflated['loss']['gaps_under']}), too soon {conflated['loss']['too_soon']},"
        f" undelivered {conflated['loss']['undelivered']}"
    )


# -- W1S: one slow reader


WORKLOADS = {"W1C": w1c_conflated}
GATEWAY_ONLY = {"W1C": "the naive baseline has no ?conflate="}
