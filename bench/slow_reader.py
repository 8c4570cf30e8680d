"""W1S: one slow reader, conflated then exact.

It holds one client on every symbol that reads slowly (`w1s_read_bytes`, then sleeps
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
from bench.delivery import COUNTERS, clean, counter_delta
from bench.environment import Environment
from bench.processes import BenchError
from bench.publisher import symbol_name
from bench.wire import ProtocolError, ResponseDecoder, event_key
from bench.workloads import loss_figures

RSS_SAMPLE_S = 1.0
SLOW_RCVBUF = 16 * 1024  # the slow client's receive buffer: no room to hide a backlog in
FAST_READ = 256 * 1024


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
        "zero_loss": all(clean(r["loss"]) for r in results.values()),
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
        "live_fallbacks": counter_delta(counters, counted, "gateway_live_fallbacks_total"),
        "slow_client_disconnects": counter_delta(
            counters, counted, "gateway_slow_client_disconnects_total"
        ),
        "gateway_events_conflated": counter_delta(
            counters, counted, "gateway_events_conflated_total"
        ),
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


WORKLOADS = {"W1S": w1s_slow_client}
GATEWAY_ONLY = {"W1S": "the naive baseline has no ?conflate="}
