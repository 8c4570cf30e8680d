"""A client that stops reading: it loses its stream, not events, and nobody else loses
theirs (latency under such a load is measured by `make bench`, not asserted here)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import httpx
from nats.js import JetStreamContext

from tests.processes import GatewayProcess
from tests.publishing import SteadyPublisher
from tests.sse_client import PLAIN, SSEStream, open_stream

SYMBOLS = ["AAPL", "MSFT", "GOOG", "AMZN"]
RATE = 2000  # ticks/s
PADDING = {"padding": "x" * 6 * 1024}
DURATION = 10.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def metric(url: str, name: str) -> float:
    async with httpx.AsyncClient() as client:
        for line in (await client.get(f"{url}/metrics")).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


async def test_slow_client_is_ended_without_growing_memory_or_ending_others(
    nats_url: str, js: JetStreamContext
) -> None:
    gateway = GatewayProcess(nats_url, "--send-timeout", "2")
    await gateway.start()
    assert gateway.process is not None
    publisher = SteadyPublisher(js, SYMBOLS, rate=RATE, extra=PADDING, burst=40)
    for symbol in SYMBOLS:
        await publisher.publish_one(symbol)
    lags: list[float] = []
    normal_seen: list[int] = []
    rss: list[int] = []
    try:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as http,
            # Never read until the end; uncompressed, so that its backlog fills the sockets.
            http.stream("GET", f"{gateway.url}/stocks", headers=PLAIN) as slow,
            open_stream(gateway.url) as normal,
        ):
            assert slow.status_code == 200
            await normal.events(len(SYMBOLS))
            rss.append(rss_bytes(gateway.process.pid))
            async with asyncio.TaskGroup() as tg:
                publishing = tg.create_task(publisher.run())
                deadline = time.monotonic() + DURATION
                while time.monotonic() < deadline:
                    event = await normal.next_event()
                    normal_seen.append(event.sequence)
                    stamp = datetime.fromisoformat(event.json()["timestamp"])
                    lags.append(time.time() - stamp.timestamp())
                    if len(lags) % 500 == 0:
                        rss.append(rss_bytes(gateway.process.pid))
                publisher.stop()
                await publishing
            published = sorted(publisher.sequences)
            slow_ended = await metric(gateway.url, "gateway_slow_client_disconnects_total")
            # The slow client now reads what reached it, then resumes from its last id.
            stream = SSEStream(slow)
            reader = asyncio.create_task(stream.read_into_queue())
            got: list[int] = []
            last_id = ""
            while (block := await stream.next_block(timeout=10)) is not None:
                if block.data:
                    got.append(block.sequence)
                    last_id = block.id or ""
            await reader
        assert slow_ended == 1, "the slow client, and only it, was ended as too slow"
        assert got, "the slow client had received something before it stalled"
        assert got == published[: len(got)]
        async with open_stream(gateway.url, headers={"Last-Event-ID": last_id}) as resumed:
            rest = [e.sequence for e in await resumed.events(len(published) - len(got), timeout=30)]
        assert got + rest == published
    finally:
        await gateway.stop()
    lags.sort()
    p99 = lags[int(len(lags) * 0.99)]
    growth = max(rss) - rss[0]
    print(
        f"\nslow client: {len(published)} ticks at {RATE}/s, normal client p99 "
        f"{p99 * 1000:.0f} ms over {len(lags)} events, gateway RSS growth "
        f"{growth / 2**20:.1f} MiB"
    )
    assert growth < 100 * 2**20
    # The normal client's latency is printed, not asserted: `make bench` measures speed.
    # After its snapshot (one per symbol), every tick in order, nothing skipped.
    assert normal_seen == published[len(SYMBOLS) : len(SYMBOLS) + len(normal_seen)]
