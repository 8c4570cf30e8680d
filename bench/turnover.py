"""W3 and W4: clients that leave. W3's comes back with Last-Event-ID after missing events
of its symbol; W4's arrive at a steady rate and each stays a few seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.config import BenchConfig
from bench.environment import Environment, client_spec
from bench.processes import BenchError
from bench.workloads import connect_figures, loss_figures, milliseconds, seed


async def w3_resume(env: Environment, config: BenchConfig) -> dict[str, Any]:
    """W3: a client misses `w3_events` events of its symbol, then resumes by Last-Event-ID;
    the time from its connect to the last missed event, and whether they were exact."""
    runs: list[dict[str, Any]] = []
    for r in range(config.w3_repeats):
        symbol = r % config.symbols
        await env.publish(count=1, symbols=[symbol])
        first_id = 10 * r * len(env.loaders)  # both clients of a run on the same loader
        loader = env.loader_of(0)
        spec = {"id": first_id, "path": f"/stocks?symbols=SYM{symbol:02d}", "symbols": [symbol]}
        await _open_one(env, loader, spec)
        described = await _wait_for(loader, first_id, lambda c: c["events"] >= 1, 10.0)
        last_id = described["last_id"]
        await loader.request(op="close", ids=[first_id])
        missed = await env.publish(count=config.w3_events, symbols=[symbol], window=2_000)
        resumed = {**spec, "id": first_id + 1, "headers": {"Last-Event-ID": last_id}}
        resumed["target"] = config.w3_events
        meter = env.meter()
        await _open_one(env, loader, resumed)
        described = await _wait_for(
            loader, first_id + 1, lambda c: c["target_reached"] is not None, 60.0, keys=True
        )
        cpu = meter.percent()
        await loader.request(op="close", ids=[first_id + 1])
        keys = described["keys"]
        expected = missed["keys"]
        exact = keys[: len(expected)] == expected
        run = {
            "events": config.w3_events,
            "catch_up_s": round(described["target_reached"], 4),
            "first_event_ms": milliseconds(described["first_event"]),
            "connect_ms": milliseconds(described["first_byte"]),
            "events_per_s": round(config.w3_events / described["target_reached"]),
            "exact": exact,
            "lost": len(set(expected) - set(keys)),
            "unexpected": len(set(keys) - set(expected)),
            "resets": described["resets"],
            "cpu_percent": cpu,
        }
        runs.append(run)
        print(
            f"  W3 {env.target:7} resumed {config.w3_events} in {run['catch_up_s']} s,"
            f" exact={exact}",
            flush=True,
        )
    times = [r["catch_up_s"] for r in runs]
    return {
        "runs": runs,
        "catch_up_s_median": sorted(times)[len(times) // 2] if times else None,
        "zero_loss": all(r["exact"] for r in runs),
    }


async def _open_one(env: Environment, loader: Any, spec: dict[str, Any]) -> None:
    answer = await loader.request(op="open", conns=[spec], concurrency=1)
    if answer["opened"] != 1:
        raise BenchError(f"{env.target}: could not open {spec['path']}: {answer['statuses']}")


async def _wait_for(
    loader: Any, ident: int, done: Any, within: float, keys: bool = False
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        described: dict[str, Any] = await loader.request(op="conn", id=ident)
        if done(described):
            if keys:
                described = await loader.request(op="conn", id=ident, keys=True)
            return described
        if time.monotonic() > deadline:
            raise BenchError(f"client {ident} not done within {within}s: {described}")
        await asyncio.sleep(0.02)


async def w4_churn(env: Environment, config: BenchConfig) -> dict[str, Any]:
    """W4: clients connect at a steady rate while ticks are published, each staying
    `w4_lifetime` seconds; connect latency includes the consumer's creation."""
    await seed(env)
    count = round(config.w4_rate * config.w4_seconds)
    meter = env.meter()
    publishing = asyncio.create_task(
        env.publish(
            rate=config.w4_publish_rate, seconds=config.w4_seconds + config.w4_lifetime + 2.0
        )
    )
    try:
        await asyncio.sleep(0.5)
        opened = await env.open(
            [client_spec(i, config) for i in range(count)],
            rate=config.w4_rate,
            lifetime=config.w4_lifetime,
        )
        await publishing
    finally:
        if not publishing.done():
            publishing.cancel()
    cpu = meter.percent()
    tally, _ = await env.settle(config.settle_timeout)
    stats = await env.stats()
    figures: dict[str, Any] = {
        "connect": connect_figures(opened),
        "cpu_percent": cpu,
        "loss": loss_figures(tally),
        "closed_by_server": stats["closed_by_server"],
        "errors": stats["errors"],
    }
    if env.target == "gateway":
        figures["after"] = await _gauges_settled(env)
    connect = figures["connect"]
    print(
        f"  W4 {env.target:7} {connect['opened']}/{count} at {config.w4_rate}/s: connect p50 "
        f"{connect['p50_ms']} p99 {connect['p99_ms']} ms, lost {tally.lost}",
        flush=True,
    )
    return figures


async def _gauges_settled(env: Environment, within: float = 10.0) -> dict[str, Any]:
    """Streams and consumers left once every client has gone (should reach 0)."""
    deadline = time.monotonic() + within
    while True:
        gauges = await env.gateway_gauges()
        if not any(gauges.values()) or time.monotonic() > deadline:
            return gauges
        await asyncio.sleep(0.25)


WORKLOADS = {"W3": w3_resume, "W4": w4_churn}
