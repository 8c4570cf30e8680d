"""W1 and W2, and the figures every workload reports (connects, losses, latencies).

W3 and W4, clients that leave, are bench.turnover."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.checking import Tally
from bench.config import BenchConfig
from bench.environment import Environment, client_spec
from bench.processes import BenchError
from bench.stats import Histogram, percentile
from bench.workers import per_port_metric

MS = 1000.0
IDLE_WINDOW = 5.0  # seconds over which W2 measures CPU with every connection idle


def milliseconds(seconds: float | None) -> float | None:
    """Seconds as rounded milliseconds (None stays None)."""
    return None if seconds is None else round(seconds * MS, 2)


def connect_figures(opened: dict[str, Any]) -> dict[str, Any]:
    times = opened["connect_s"]
    return {
        "attempted": sum(opened["statuses"].values()),
        "opened": opened["opened"],
        "statuses": opened["statuses"],
        "rate_per_s": round(opened["opened"] / opened["seconds"], 1) if opened["seconds"] else None,
        "p50_ms": milliseconds(percentile(times, 50)),
        "p99_ms": milliseconds(percentile(times, 99)),
        "max_ms": milliseconds(max(times) if times else None),
    }


def loss_figures(tally: Tally) -> dict[str, int]:
    return {
        "received": tally.received,
        "lost": tally.lost,
        "undelivered": tally.undelivered,
        "duplicated": tally.duplicated,
        "unexpected": tally.unexpected,
        "out_of_order": tally.out_of_order,
        "silent_connections": tally.silent,
    }


def latency_figures(hist: Histogram) -> dict[str, Any]:
    return {
        "samples": hist.total,
        "p50_ms": milliseconds(hist.percentile(50)),
        "p99_ms": milliseconds(hist.percentile(99)),
        "max_ms": milliseconds(hist.max if hist.total else None),
    }


async def seed(env: Environment) -> None:
    """One tick per symbol, so fresh clients have a latest price to start with."""
    await env.publish(count=env.config.symbols)


async def w1_fan_out(env: Environment, config: BenchConfig) -> dict[str, Any]:
    """W1: clients x symbols_per_client of the symbols, publish rate rising step by step
    until p99 exceeds the limit or an event is lost."""
    await seed(env)
    opened = await env.open([client_spec(i, config) for i in range(config.w1_clients)])
    if opened["opened"] < config.w1_clients:
        raise BenchError(
            f"{env.target}: {opened['opened']} of {config.w1_clients} clients connected "
            f"(statuses {opened['statuses']})"
        )
    snapshot, _ = await env.settle(config.settle_timeout)
    steps: list[dict[str, Any]] = []
    for rate in config.w1_rates:
        await env.each(op="mark", min_key=env.last_key + 1)
        meter = env.meter()
        started = time.monotonic()
        published = await env.publish(rate=rate, seconds=config.w1_step_seconds)
        window = await env.stats()
        elapsed = time.monotonic() - started
        cpu = meter.percent()
        tally, settle_s = await env.settle(config.settle_timeout)
        after = await env.stats()
        latency = latency_figures(after["hist"])
        loss = loss_figures(tally)
        step = {
            "rate_target": rate,
            "rate_published": round(published["rate"], 1),
            "deliveries_per_s": round(window["window_events"] / elapsed),
            "deliveries_due_per_s": round(published["deliveries_due"] / published["seconds"]),
            "latency": latency,
            "settle_s": round(settle_s, 2),
            "cpu_percent": cpu,
            "server_rss_mb": round(env.server_rss() / 2**20, 1),
            "loss": loss,
            "closed_by_server": after["closed_by_server"],
        }
        # The loaders share the other core(s) with nats-server and the publisher: when
        # those are busy, latencies may be the loaders' and not the server's.
        other = cpu["loaders"] + cpu["publisher"] + cpu["nats"]
        step["other_cores_busy"] = other >= 90 * env.pinning.other_count
        step["passed"] = (
            _clean(loss)
            and not after["closed_by_server"]
            and latency["p99_ms"] is not None
            and latency["p99_ms"] <= config.p99_limit_ms
        )
        steps.append(step)
        print(_w1_line(env.target, step), flush=True)
        if not step["passed"]:
            break
    passing = [s for s in steps if s["passed"]]
    return {
        "clients": config.w1_clients,
        "connect": connect_figures(opened),
        "snapshot_loss": loss_figures(snapshot),
        "steps": steps,
        "max_deliveries_per_s": max((s["deliveries_per_s"] for s in passing), default=0),
        "zero_loss": all(_clean(s["loss"]) for s in steps) and _clean(loss_figures(snapshot)),
    }


def _clean(loss: dict[str, int]) -> bool:
    """Nothing lost, doubled or foreign; undelivered counts too (events stuck past the
    settle timeout would be the worst latencies, missing from the percentiles)."""
    return not (loss["lost"] or loss["undelivered"] or loss["duplicated"] or loss["unexpected"])


def _w1_line(target: str, step: dict[str, Any]) -> str:
    lat = step["latency"]
    cpu = step["cpu_percent"]
    return (
        f"  W1 {target:7} {step['rate_target']:>6.0f} ticks/s: {step['deliveries_per_s']:>7} del/s"
        f" (due {step['deliveries_due_per_s']}) p50 {lat['p50_ms']} p99 {lat['p99_ms']}"
        f" max {lat['max_ms']} ms, cpu server {cpu['server']}% loaders {cpu['loaders']}%"
        f" nats {cpu['nats']}%, lost {step['loss']['lost']}"
        f" undelivered {step['loss']['undelivered']}"
        f"{' (loaders core busy)' if step['other_cores_busy'] else ''}"
        f"{'' if step['passed'] else '  <- stop'}"
    )


async def w2_idle(env: Environment, config: BenchConfig) -> dict[str, Any]:
    """W2: idle connections held open; the server's memory per connection."""
    await seed(env)
    warm = await env.open([client_spec(i, config) for i in range(10)])
    await env.each(op="close")
    await asyncio.sleep(1.0)
    baseline = env.server_rss()
    levels: list[dict[str, Any]] = []
    held = 0
    first = warm["opened"] + 1000  # idents continue past the warm-up ones
    for target in config.w2_connections:
        specs = [client_spec(first + i, config) for i in range(held, target)]
        meter = env.meter()
        opened = await env.open(specs)
        cpu = meter.percent()
        await asyncio.sleep(2.0)  # let allocations settle
        idle = env.meter()
        await asyncio.sleep(IDLE_WINDOW)
        idle_cpu = idle.percent()
        stats = await env.stats()
        held = target
        rss = env.server_rss()
        open_now = stats["open"]
        levels.append(
            {
                "target": target,
                "open": open_now,
                "connect": connect_figures(opened),
                "cpu_percent_while_connecting": cpu,
                "cpu_percent_idle": idle_cpu,
                "server_rss_mb": round(rss / 2**20, 1),
                "rss_per_connection_bytes": round((rss - baseline) / open_now)
                if open_now
                else None,
                "nats_rss_mb": round(env.nats_rss() / 2**20, 1),
                "closed_by_server": stats["closed_by_server"],
            }
        )
        print(
            f"  W2 {env.target:7} {open_now}/{target} open, "
            f"{levels[-1]['rss_per_connection_bytes']} B/conn, "
            f"connect {levels[-1]['connect']['rate_per_s']}/s p99 "
            f"{levels[-1]['connect']['p99_ms']} ms, idle cpu server {idle_cpu['server']}%"
            f" nats {idle_cpu['nats']}%",
            flush=True,
        )
        if len(ports := env.metrics_ports()) > 1:  # --workers: how the kernel spread them
            by_worker = await per_port_metric(ports, "gateway_open_streams")
            levels[-1]["open_streams_by_worker"] = by_worker
            print(f"    streams by worker: {by_worker}", flush=True)
        if open_now < target:
            break
    tally, _ = await env.settle(config.settle_timeout)
    return {
        "baseline_rss_mb": round(baseline / 2**20, 1),
        "levels": levels,
        "loss": loss_figures(tally),
    }


WORKLOADS = {"W1": w1_fan_out, "W2": w2_idle}
RESUMABLE = {"gateway"}  # the naive baseline has no history to resume from
