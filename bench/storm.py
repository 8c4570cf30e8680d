"""W5 "storm": a gateway with `w5_clients` clients dies, every client resumes on another.

Two gateways (A, the environment's server, and B) on one nats-server; the clients stream
from A while `w5_rate` ticks/s are published; the loaders are armed (bench.reconnect), A
gets SIGKILL and every client reconnects to B at once with its Last-Event-ID. Measured:
the time from the kill to each client's first event from B, 503s and failures, JetStream
API calls, errors and consumers created (/jsz, advisories), B's resume and shedding
counters, and every client's history across the kill (bench.checking).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from typing import Any

import nats

from bench.config import BenchConfig
from bench.environment import STREAM, Environment, client_spec
from bench.processes import BenchError, CpuMeter, Process, free_port, http_get
from bench.storm_figures import COUNTERS, LOSS_KINDS, sample, storm_figures, storm_line
from bench.workloads import connect_figures, latency_figures, loss_figures, seed

WARM_UP_S = 2.0  # streaming from A at the rate before the kill
AFTER_S = 2.0  # still publishing once every client streams again: they must stay live
PUBLISH_CHUNK_S = 1.0  # the publisher's runs; the loaders learn what was stored after each
RETRY_S = 2.0  # the gateway's SSE retry: the page's backoff after a failure starts there


def storm_config(config: BenchConfig) -> BenchConfig:
    """W5's own symbols (`w5_symbols`): its clients spread over more of them than W1's."""
    return dataclasses.replace(config, symbols=config.w5_symbols)


async def w5_storm(env: Environment, config: BenchConfig) -> dict[str, Any]:
    await seed(env)
    port_b = free_port()
    server_b = await env.start_another_server("bench-b", port_b)
    try:
        result = await _storm(env, config, server_b, port_b)
    finally:
        tail = server_b.tail(3000)
        await server_b.stop(signal.SIGKILL)
    if tail.strip():
        result["server_b_log_tail"] = tail
    if config.gc_probe:
        result["server_b_gc"] = env.gc_pauses(server_b)
    print(storm_line(result), flush=True)
    return result


async def _storm(
    env: Environment, config: BenchConfig, server_b: Process, port_b: int
) -> dict[str, Any]:
    opened = await env.open([client_spec(i, config) for i in range(config.w5_clients)])
    if opened["opened"] < config.w5_clients:
        raise BenchError(
            f"W5: {opened['opened']} of {config.w5_clients} clients connected to A "
            f"(statuses {opened['statuses']})"
        )
    await env.settle(config.settle_timeout)  # every snapshot arrived
    await env.each(op="mark", min_key=env.last_key + 1)  # A's latencies before the kill
    # JetStream announces each consumer it creates: counted from before the kill until
    # every client has settled (as the API calls are).
    nc = await nats.connect(env.nats_url, name="bench-storm")
    created = [0]

    async def advisory(_: Any) -> None:
        created[0] += 1

    try:
        await nc.subscribe(f"$JS.EVENT.ADVISORY.CONSUMER.CREATED.{STREAM}.>", cb=advisory)
        stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                publishing = tg.create_task(_publish_until(env, config.w5_rate, stop))
                try:
                    await asyncio.sleep(WARM_UP_S)
                    storm = await _kill_and_watch(env, config, (server_b, port_b), created)
                    await asyncio.sleep(AFTER_S)
                finally:
                    stop.set()
        except* BenchError as failed:  # unwrapped: the harness reports it as an error
            raise failed.exceptions[0] from None
        answers = await env.each(op="calm")
        tally, settle_s = await env.settle(config.settle_timeout)
        after = await _scrape(env, port_b)  # once settled: B answers /metrics again
        await nc.flush()
    finally:
        await nc.close()
    storm["consumers_created"] = created[0] - storm["consumers_created"]
    loss = loss_figures(tally)
    figures = storm_figures(answers, storm, after, config)
    figures.update(
        connect_a=connect_figures(opened),
        ticks_published=publishing.result(),
        loss=loss,
        settle_s=round(settle_s, 2),
        zero_loss=not any(loss[k] for k in LOSS_KINDS),
    )
    figures["target_met"] = (
        figures["streaming_again"]["within_target"] == config.w5_clients
        and figures["zero_loss"]
        and figures["jetstream"]["api_errors"] == 0
    )
    return figures


async def _publish_until(env: Environment, rate: float, stop: asyncio.Event) -> int:
    """Publish at `rate` in runs of a second until `stop`; the ticks published. A run
    starts its round of the symbols afresh, so each run goes on where the last stopped."""
    ticks = 0
    every = list(range(env.config.symbols))
    while not stop.is_set():
        at = ticks % len(every)
        answer = await env.publish(
            rate=rate, seconds=PUBLISH_CHUNK_S, symbols=every[at:] + every[:at]
        )
        ticks += answer["sent"]
    return ticks


async def _kill_and_watch(
    env: Environment, config: BenchConfig, b: tuple[Process, int], created: list[int]
) -> dict[str, Any]:
    """Arm the loaders, SIGKILL A, watch until every client streams again on B (or the
    timeout): A's figures before, the counters at the kill, how long we watched, the most
    consumers seen, CPU."""
    server_b, port_b = b
    warm = await env.stats()
    before_kill = {
        "deliveries_per_s": round(warm["window_events"] / WARM_UP_S),
        "latency": latency_figures(warm["hist"]),
    }
    before = await _scrape(env, port_b)
    created_before = created[0]
    peak = before["jsz"]["consumers"]
    await env.each(
        op="arm", port=port_b, seconds=config.w5_timeout, jitter=config.w5_jitter, retry=RETRY_S
    )
    pids = {"loaders": [loader.pid for loader in env.loaders], "nats": [env.nats.pid]}
    meter = CpuMeter({"server_b": [server_b.pid], "publisher": [env.publisher.pid], **pids})
    killed_at = time.perf_counter()
    await env.server.stop(signal.SIGKILL)
    while True:
        progress = await env.each(op="storm")
        peak = max(peak, (await env.jsz())["consumers"])
        watched = time.perf_counter() - killed_at
        everyone = sum(p["streaming"] for p in progress) >= config.w5_clients
        if everyone or watched > config.w5_timeout:
            break
        await asyncio.sleep(0.25)
    return {
        "before_kill": before_kill,
        "before": before,
        "consumers_created": created_before,
        "killed_at": killed_at,
        "watched_s": round(watched, 2),
        "consumers_peak": peak,
        "cpu_percent": meter.percent(),
    }


async def _scrape(env: Environment, port_b: int) -> dict[str, Any]:
    """nats-server's /jsz and B's counters, now."""
    status, text = await http_get(port_b, "/metrics")
    metrics = text.decode(errors="replace") if status == 200 else ""
    counters = {name: sample(metrics, *which) for name, which in COUNTERS.items()}
    return {"jsz": await env.jsz(), "gateway_b": counters}


WORKLOADS = {"W5": w5_storm}
GATEWAY_ONLY = {"W5": "the naive baseline keeps no history to resume from"}
