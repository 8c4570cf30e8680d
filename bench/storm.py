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
from bench.workloads import connect_figures, latency_figures, loss_figures, seed

WARM_UP_S = 2.0  # streaming from A at the rate before the kill
AFTER_S = 2.0  # still publishing once every client streams again: they must stay live
PUBLISH_CHUNK_S = 1.0  # the publisher's runs; the loaders learn what was stored after each
RETRY_S = 2.0  # the gateway's SSE retry: the page's backoff after a failure starts there
TARGET_S = 3.0  # the target: every client streaming again within 3 s
LOSS_KINDS = ("lost", "undelivered", "duplicated", "unexpected", "out_of_order")
# B's counters (labelled ones by label value); absent ones are reported as None.
COUNTERS = {
    "consumers_created": ("gateway_consumer_create_seconds_count", None),
    "requests_shed": ("gateway_requests_shed_total", None),
    "resumes_memory": ("gateway_resumes_total", 'source="memory"'),
    "resumes_jetstream": ("gateway_resumes_total", 'source="jetstream"'),
    "at_capacity": ("gateway_errors_total", 'kind="at_capacity"'),
    "nats_unavailable": ("gateway_errors_total", 'kind="nats_unavailable"'),
}


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
    print(_line(result), flush=True)
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
    figures = _figures(answers, storm, after, config)
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
    counters = {name: _sample(metrics, *which) for name, which in COUNTERS.items()}
    return {"jsz": await env.jsz(), "gateway_b": counters}


def _sample(text: str, name: str, labels: str | None) -> float | None:
    """A sample of a Prometheus exposition: unlabelled, or the one whose labels include
    `labels` (e.g. 'source="memory"'); None when absent."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name) :]
        if labels is None and rest.startswith(" "):
            return float(rest.split()[-1])
        if labels is not None and rest.startswith("{") and labels in rest.split("}")[0]:
            return float(rest.rsplit(" ", 1)[1])
    return None


def _figures(
    answers: list[dict[str, Any]], storm: dict[str, Any], after: dict[str, Any], config: BenchConfig
) -> dict[str, Any]:
    killed_at = storm["killed_at"]
    clients = config.w5_clients

    def since_kill(name: str) -> list[float]:
        return sorted(t - killed_at for a in answers for t in a[name] if t is not None)

    def total(name: str) -> int:
        return sum(a[name] for a in answers)

    statuses: dict[str, int] = {}
    failures: dict[str, int] = {}
    for answer in answers:
        for status, n in answer["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
        for kind, n in answer["failures"].items():
            failures[kind] = failures.get(kind, 0) + n
    before_jsz, after_jsz = storm["before"]["jsz"], after["jsz"]
    return {
        "clients": clients,
        "rate": config.w5_rate,
        "timeout_s": config.w5_timeout,
        "watched_s": storm["watched_s"],
        "armed": total("armed"),
        "a_before_kill": storm["before_kill"],  # A keeping up at the rate, or not
        "noticed": _ranks(since_kill("lost_at"), clients),
        "streaming_again": _ranks(since_kill("first_event_at"), clients),
        "first_byte_again": _ranks(since_kill("answered_at"), clients),
        "attempts": total("attempts"),
        "refused_503": statuses.get("503", 0),
        "refused": statuses,
        "clients_refused": total("clients_refused"),
        "failures": failures,
        "clients_failed": total("clients_failed"),
        "dropped_after_resume": total("dropped"),
        "jetstream": {
            "api_calls": after_jsz["api"]["total"] - before_jsz["api"]["total"],
            "api_errors": after_jsz["api"]["errors"] - before_jsz["api"]["errors"],
            "consumers_created": storm["consumers_created"],
            "consumers_before": before_jsz["consumers"],
            "consumers_peak": storm["consumers_peak"],
            "consumers_after": after_jsz["consumers"],
        },
        "gateway_b": _deltas(storm["before"]["gateway_b"], after["gateway_b"]),
        "cpu_percent": storm["cpu_percent"],
    }


def _ranks(times: list[float], clients: int) -> dict[str, Any]:
    """When 50, 99 and 100 % of `clients` had done it (seconds after the kill; None: not
    within the storm's window), and how many did within the target and at all."""

    def by(share: float) -> float | None:
        rank = max(1, -(-clients * share // 100))  # ceil
        return round(times[int(rank) - 1], 3) if rank <= len(times) else None

    return {
        "p50_s": by(50),
        "p99_s": by(99),
        "p100_s": by(100),
        "max_s": round(times[-1], 3) if times else None,
        "within_target": sum(t <= TARGET_S for t in times),
        "by_end": len(times),
        "never": clients - len(times),
    }


def _deltas(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, Any]:
    pairs = {name: (before.get(name), after.get(name)) for name in COUNTERS}
    return {n: None if a is None or b is None else round(b - a) for n, (a, b) in pairs.items()}


def w5_figures(w5: dict[str, Any], out: dict[str, Any], losses: dict[str, int]) -> None:
    """W5's headlines for the summary table (bench.report)."""
    again = w5["streaming_again"]
    out["w5_streaming_again_p50_s"] = again["p50_s"]
    out["w5_streaming_again_p99_s"] = again["p99_s"]
    out["w5_streaming_again_p100_s"] = again["p100_s"]
    out["w5_streaming_within_3s"] = again["within_target"]
    out["w5_never_streaming_again"] = again["never"]
    out["w5_noticed_p100_s"] = w5["noticed"]["p100_s"]  # the loaders' own lag, at the kill
    out["w5_a_p99_ms_before_kill"] = w5["a_before_kill"]["latency"]["p99_ms"]
    out["w5_refused_503"] = w5["refused_503"]
    out["w5_connect_failures"] = sum(w5["failures"].values())
    for name in ("api_calls", "api_errors", "consumers_created", "consumers_peak"):
        out[f"w5_jetstream_{name}"] = w5["jetstream"][name]
    for name, value in w5["gateway_b"].items():
        if value is not None and name != "consumers_created":
            out[f"w5_gateway_b_{name}"] = value
    if gc := w5.get("server_b_gc"):
        out["w5_gateway_b_gc_max_pause_ms"] = gc["max_ms"]
    for kind in LOSS_KINDS:
        losses[kind] += w5["loss"][kind]


def _line(result: dict[str, Any]) -> str:
    again = result["streaming_again"]
    js = result["jetstream"]
    loss = result["loss"]
    return (
        f"  W5 gateway {result['clients']} clients at {result['rate']:.0f} ticks/s: streaming "
        f"again p50 {again['p50_s']} p99 {again['p99_s']} 100% {again['p100_s']} s, "
        f"{again['within_target']} within {TARGET_S:.0f} s, {again['never']} never; "
        f"503s {result['refused_503']}, failures {sum(result['failures'].values())}; "
        f"JetStream API calls {js['api_calls']} (errors {js['api_errors']}), consumers "
        f"created {js['consumers_created']} (peak {js['consumers_peak']}); lost {loss['lost']}"
        f" duplicated {loss['duplicated']} undelivered {loss['undelivered']}"
    )


WORKLOADS = {"W5": w5_storm}
GATEWAY_ONLY = {"W5": "the naive baseline keeps no history to resume from"}
