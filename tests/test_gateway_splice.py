"""The shared feed's splice: a client read from its own consumer while it catches up, then
from the live feed, gets every tick once, in order, whatever is published meanwhile."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from nats.js import JetStreamContext
from prometheus_client import Counter

from tests.conftest import StartGateway
from tests.publishing import SteadyPublisher
from tests.servers import eventually
from tests.sse_client import SSEStream, open_stream
from tests.ticks import client_consumers, event_id, publish

SYMBOLS = ["AAPL", "MSFT"]
LIVE_TICKS = 300  # published after the client went live (~200 of its symbols)


@pytest.mark.parametrize(
    "max_pending_bytes",
    [4 * 1024 * 1024, 64 * 1024],
    ids=["buffer-holds", "buffer-overflows-during-catch-up"],
)
async def test_resume_while_publishing_splices_without_gap_or_duplicate(
    start_gateway: StartGateway, js: JetStreamContext, max_pending_bytes: int
) -> None:
    gateway = await start_gateway(
        shared_feed=True, max_pending_bytes=max_pending_bytes, pull_batch=64
    )
    seen = await publish(js, "AAPL", "1.00")
    missed = [await publish(js, SYMBOLS[i % 2], f"1.{i:02d}") for i in range(1500)]
    publisher = SteadyPublisher(js, [*SYMBOLS, "GOOG"], rate=1500, burst=15)
    async with asyncio.TaskGroup() as tg:
        publishing = tg.create_task(publisher.run())
        await eventually(lambda: len(publisher.sequences) > 100, within=5, what="publishing")
        async with open_stream(
            gateway.url, {"symbols": ",".join(SYMBOLS)}, {"Last-Event-ID": await event_id(js, seen)}
        ) as stream:
            received = [e.sequence for e in await stream.events(len(missed), timeout=20)]
            await eventually(lambda: _no_client_consumer(js), within=10, what="went live")
            went_live = len(publisher.sequences)
            await eventually(  # live ticks on top of the catch-up
                lambda: len(publisher.sequences) >= went_live + LIVE_TICKS,
                within=10,
                what=f"{LIVE_TICKS} ticks published after going live",
            )
            publisher.stop()
            await publishing
            # What the publisher stored for the client's symbols, after the missed ones.
            live = sorted(
                s for s, symbol in publisher.symbols_by_sequence.items() if symbol in SYMBOLS
            )
            received += [e.sequence for e in await stream.events(len(live), timeout=20)]
            await stream.assert_quiet(0.3)
    assert received == missed + live
    assert len(live) > 100


async def _no_client_consumer(js: JetStreamContext) -> bool:
    return not await client_consumers(js)


async def test_live_client_that_falls_behind_goes_back_to_its_own_consumer_losing_nothing(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(shared_feed=True, max_pending_bytes=64 * 1024, send_timeout=30.0)
    publisher = SteadyPublisher(js, SYMBOLS, rate=2000, burst=40, extra={"pad": "x" * 4096})
    for symbol in SYMBOLS:  # the fresh client's snapshot, so that it must get them all
        await publisher.publish_one(symbol)
    fallbacks = gateway.hub.metrics.live_fallbacks
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as http,
        http.stream(
            "GET", f"{gateway.url}/stocks", params={"symbols": ",".join(SYMBOLS)}
        ) as response,
    ):
        await eventually(lambda: _no_client_consumer(js), within=5, what="live")
        async with asyncio.TaskGroup() as tg:
            publishing = tg.create_task(publisher.run())
            # Not reading: the socket fills, then the client's live buffer overflows.
            await eventually(
                lambda: len(publisher.sequences) > 6000,
                within=20,
                what="published while the client does not read",
            )
            stream = SSEStream(response)
            reader = tg.create_task(stream.read_into_queue())
            await eventually(lambda: _value(fallbacks) >= 1, within=20, what="fell back")
            publisher.stop()
            await publishing
            stored = sorted(publisher.sequences)
            received = [e.sequence for e in await stream.events(len(stored), timeout=30)]
            await stream.assert_quiet(0.3)
            reader.cancel()
    assert received == stored
    assert _value(gateway.hub.metrics.slow_client_disconnects) == 0


def _value(counter: Counter) -> float:
    return float(next(iter(counter.collect())).samples[0].value)
