"""W1C and W1S: delivery control (`?conflate=<ms>`) measured against exact delivery.

W1C runs W1's fan-out at each of `w1c_rates`, first with every client exact, then with
every client at `conflate=<conflate_ms>`, back to back in one environment (fresh clients
each time): deliveries/s, the gateway's CPU per tick and per delivery, and the bytes the
loaders read per tick, side by side with their ratios.

W1S holds one client on every symbol that reads slowly (`w1s_read_bytes`, then sleeps
`w1s_read_pause`) while `w1s_rate` ticks/s are published for `w1s_seconds`, sampling the
gateway's RSS every second: once conflated (its memory must stay flat), then exact (it
must be cut off or fall back to a consumer of its own; /metrics says which).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from array import array
from collections.abc import Sequence
from typing import Any

from bench.checking import ConflatedCheck, DeliveryCheck, PublishedLog, Tally
from bench.config import BenchConfig
from bench.environment import Environment, client_spec
from bench.processes import BenchError
from bench.publisher import symbol_name
from bench.wire import ProtocolError, ResponseDecoder, event_key
from bench.workloads import latency_figures, loss_figures, seed

MODES = ("exact", "conflated")
COUNTERS = (
    "gateway_events_conflated_total",
    "gateway_live_fallbacks_total",
    "gateway_slow_client_disconnects_total",
)
RSS_SAMPLE_S = 1.0
WARM_UP_S = 1.0
SLOW_RCVBUF = 16 * 1024  # the slow client's receive buffer: no room to hide a backlog in
FAST_READ = 256 * 1024


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
        "zero_loss": all(_clean(loss) for loss in losses),
    }


def _clean(loss: dict[str, Any]) -> bool:
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
        gateway_events_conflated=_delta(counters, counted, COUNTERS[0]),
        live_fallbacks=_delta(counters, counted, "gateway_live_fallbacks_total"),
        slow_client_disconnects=_delta(counters, counted, "gateway_slow_client_disconnects_total"),
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


def _delta(
    before: dict[str, float | None], after: dict[str, float | None], name: str
) -> int | None:
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


class SlowClient:
    """A client on `symbols` with a small receive buffer that reads `read_bytes` and then
    sleeps `pause` seconds, until `fast` is set: then it reads as fast as it can."""

    def __init__(self, port: int, path: str, check: DeliveryCheck | ConflatedCheck) -> None:
        self.port = port
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self.check = check
        self.decoder = ResponseDecoder()
        self.keys: array[int] = array("q")
        self.times: array[float] = array("d")
        self.stamps: array[float] = array("d")  # not judged: a slow reader has no interval rule
        self.bytes = 0
        self.local_port = 0
        self.closed_by_server = False
        self.error: str | None = None
        self.fast = asyncio.Event()
        self.answered = asyncio.Event()

    async def run(self, read_bytes: int, pause: float) -> None:
        loop = asyncio.get_running_loop()
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", self.port))
            self.local_port = sock.getsockname()[1]
            await loop.sock_sendall(sock, self.request)
            while True:
                data = await loop.sock_recv(sock, FAST_READ if self.fast.is_set() else read_bytes)
                if not data:
                    self.closed_by_server = True
                    break
                self._take(data)
                if not self.fast.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.fast.wait(), pause)

    def _take(self, data: bytes) -> None:
        now = time.time()
        self.bytes += len(data)
        try:
            blocks = self.decoder.feed(data)
        except ProtocolError as exc:
            self.error = str(exc)
            raise
        if self.decoder.status:
            self.answered.set()
        for block in blocks:
            if block.startswith(b"id: "):
                self.keys.append(event_key(block))
                self.times.append(now)
                self.stamps.append(now)

    def tally(self, log: PublishedLog, final: bool) -> Tally:
        self.check.advance(self.keys, log, self.times, self.stamps)
        closed = self.closed_by_server
        end = self.check.last if closed else log.last_key
        return self.check.tally(log, end, final=final, closed=closed)


async def w1s_slow_client(env: Environment, config: BenchConfig) -> dict[str, Any]:
    """W1S: a slow reader on every symbol, conflated then exact."""
    seeded = await env.publish(count=config.symbols)  # as `seed`, keeping what was stored
    log = PublishedLog()
    log.extend((k, s) for k, s in seeded["stored"])
    results = {
        "conflated": await _slow_run(env, config, config.conflate_ms, log),
        "exact": await _slow_run(env, config, 0, log),
    }
    conflated = results["conflated"]
    return {
        "rate": config.w1s_rate,
        "seconds": config.w1s_seconds,
        "read_bytes": config.w1s_read_bytes,
        "read_pause_s": config.w1s_read_pause,
        "conflate_ms": config.conflate_ms,
        **results,
        "rss_flat": conflated["rss"]["slope_mb_per_min"] is not None
        and abs(conflated["rss"]["slope_mb_per_min"]) < 1.0
        and not conflated["closed_by_server"],
        "zero_loss": all(_clean(r["loss"]) for r in results.values()),
    }


async def _slow_run(
    env: Environment, config: BenchConfig, conflate_ms: int, log: PublishedLog
) -> dict[str, Any]:
    symbols = list(range(config.symbols))
    path = "/stocks?symbols=" + ",".join(symbol_name(s) for s in symbols)
    check: DeliveryCheck | ConflatedCheck = DeliveryCheck(frozenset(symbols))
    if conflate_ms:
        path += f"&conflate={conflate_ms}"
        # Receive times say nothing about a reader that lets events wait in its buffers.
        check = ConflatedCheck(frozenset(symbols), conflate_ms / 1000, math.inf)
    client = SlowClient(env.port, path, check)
    counters = await env.gateway_counters(COUNTERS)
    reading = asyncio.create_task(client.run(config.w1s_read_bytes, config.w1s_read_pause))
    try:
        async with asyncio.timeout(10):
            await client.answered.wait()
        if client.decoder.status != 200:
            raise BenchError(f"W1S: {path} answered {client.decoder.status}")
        samples, published = await _publish_sampling(
            env, config.w1s_rate, config.w1s_seconds, client.local_port
        )
        log.extend((k, s) for k, s in published["stored"])
        client.fast.set()
        tally, settle_s = await _settle_one(client, log, config.settle_timeout)
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, ProtocolError):
            await reading
    counted = await env.gateway_counters(COUNTERS)
    loss: dict[str, Any] = loss_figures(tally)
    loss.update(too_soon=tally.too_soon)
    result = {
        "conflate_ms": conflate_ms,
        "ticks": published["sent"],
        "events": len(client.keys),
        "bytes": client.bytes,
        "closed_by_server": client.closed_by_server,
        "settle_s": round(settle_s, 2),
        "conflated_away": tally.conflated_away,
        "live_fallbacks": _delta(counters, counted, "gateway_live_fallbacks_total"),
        "slow_client_disconnects": _delta(
            counters, counted, "gateway_slow_client_disconnects_total"
        ),
        "gateway_events_conflated": _delta(counters, counted, "gateway_events_conflated_total"),
        "rss": rss_figures(samples),
        "loss": loss,
    }
    result["outcome"] = _outcome(result)
    print(_w1s_line(env.target, result), flush=True)
    return result


async def _publish_sampling(
    env: Environment, rate: float, seconds: float, client_port: int
) -> tuple[list[tuple[float, int, int | None]], dict[str, Any]]:
    """Publish while sampling, every second, the server's RSS and the bytes its socket to
    the client holds in the kernel's send queue: (seconds, RSS, send queue) samples."""
    publishing = asyncio.create_task(env.publish(rate=rate, seconds=seconds))
    started = time.monotonic()
    samples: list[tuple[float, int, int | None]] = []
    try:
        while not publishing.done():
            queued = send_queue(env.port, client_port)
            samples.append((time.monotonic() - started, env.server_rss(), queued))
            await asyncio.wait({publishing}, timeout=RSS_SAMPLE_S)
    finally:
        if not publishing.done():
            publishing.cancel()
    return samples, await publishing


async def _settle_one(client: SlowClient, log: PublishedLog, timeout: float) -> tuple[Tally, float]:
    started = time.monotonic()
    while True:
        tally = client.tally(log, final=False)
        waited = time.monotonic() - started
        if not tally.pending:
            return tally, waited
        if waited > timeout:
            return client.tally(log, final=True), waited
        await asyncio.sleep(0.1)


def send_queue(server_port: int, client_port: int) -> int | None:
    """Bytes the server's socket to `client_port` has sent but the client has not taken
    (the kernel's send queue, /proc/net/tcp's tx_queue); None if it is not there."""
    local = f":{server_port:04X}"
    remote = f":{client_port:04X}"
    try:
        with open("/proc/net/tcp") as table:
            for line in table:
                fields = line.split()
                if fields[1].endswith(local) and fields[2].endswith(remote):
                    return int(fields[4].split(":")[0], 16)
    except OSError:
        pass
    return None


def rss_figures(samples: Sequence[tuple[float, int, int | None]]) -> dict[str, Any]:
    """The RSS samples' least-squares slope over their second half (MB/min), their range;
    the kernel's send queue to the client at its largest; every sample (MB, KB)."""
    mb = [(t, rss / 2**20) for t, rss, _ in samples]
    half = mb[len(mb) // 2 :]
    queued = [q for _, _, q in samples if q is not None]
    return {
        "every_second_mb": [round(v, 2) for _, v in mb],
        "send_queue_kb": [None if q is None else round(q / 1024) for _, _, q in samples],
        "send_queue_max_kb": round(max(queued) / 1024) if queued else None,
        "samples": len(mb),
        "first_mb": round(mb[0][1], 1) if mb else None,
        "last_mb": round(mb[-1][1], 1) if mb else None,
        "max_minus_min_mb": round(max(v for _, v in mb) - min(v for _, v in mb), 2) if mb else None,
        "slope_mb_per_min": _slope_per_min(half),
    }


def _slope_per_min(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return None
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / spread
    return round(slope * 60, 3)


def _outcome(result: dict[str, Any]) -> str:
    """What happened to the slow client, in words."""
    said = []
    if result["slow_client_disconnects"]:
        said.append("cut off as a slow client")
    elif result["closed_by_server"]:
        said.append("closed by the gateway")
    if result["live_fallbacks"]:
        said.append(f"fell back to a consumer of its own {result['live_fallbacks']} time(s)")
    if not said:
        said.append("kept on the live feed")
    return ", ".join(said)


def _w1s_line(target: str, result: dict[str, Any]) -> str:
    rss = result["rss"]
    mode = f"conflate={result['conflate_ms']}" if result["conflate_ms"] else "exact"
    return (
        f"  W1S {target:7} {mode}: {result['outcome']}; RSS {rss['first_mb']}->{rss['last_mb']} MB,"
        f" kernel send queue up to {rss['send_queue_max_kb']} KB,"
        f" slope {rss['slope_mb_per_min']} MB/min (2nd half), max-min {rss['max_minus_min_mb']} MB;"
        f" {result['events']} events, conflated away {result['conflated_away']},"
        f" undelivered {result['loss']['undelivered']}, lost {result['loss']['lost']}"
    )


WORKLOADS = {"W1C": w1c_conflated, "W1S": w1s_slow_client}
GATEWAY_ONLY = {
    "W1C": "the naive baseline has no ?conflate=",
    "W1S": "the naive baseline has no ?conflate=",
}
