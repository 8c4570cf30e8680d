"""?conflate=<ms> end to end: at most one event per symbol per interval, the latest value
winning and never lost, ids still increasing, resumes conflated too."""

from __future__ import annotations

import asyncio
import itertools
import math
import time

import httpx
import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.problems import assert_problem
from tests.scrape import scrape
from tests.servers import eventually
from tests.sse_client import open_stream
from tests.ticks import client_consumers, event_id, publish
from tests.timed_events import Received, collecting, request

pytestmark = pytest.mark.timeout(60)

# Receive times are the client's, so each gap carries the jitter of two deliveries.
TOLERANCE = 0.1


@pytest.fixture
async def gateway(start_gateway: StartGateway, js: JetStreamContext) -> RunningGateway:
    return await start_gateway()


def prices(received: list[Received]) -> list[tuple[str, float]]:
    return [(r.symbol, r.price) for r in received]


async def test_conflated_stream_sends_at_most_one_event_per_symbol_per_interval(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    symbols = ["AAPL", "MSFT"]
    rounds = 20  # 10 ticks/s per symbol for 2 s, at conflate=500
    params = {"symbols": ",".join(symbols), "conflate": "500"}
    async with open_stream(gateway.url, params) as stream, collecting(stream) as events:
        for i in range(1, rounds + 1):
            for symbol in symbols:
                await publish(js, symbol, f"{i}")
            await asyncio.sleep(0.1)
        received = await events.until(
            lambda r: sum(e.price == rounds for e in r) == len(symbols),
            within=2.0,
            what="the last tick of each symbol",
        )
    for symbol in symbols:
        times = [r.at for r in received if r.symbol == symbol]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= 0.5 - TOLERANCE, (symbol, gaps)
        assert len(times) <= math.ceil(2 / 0.5) + 2, (symbol, prices(received))


async def test_the_last_tick_of_every_symbol_arrives_within_one_interval_of_a_burst(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    symbols = ["AAPL", "MSFT", "GOOG"]
    params = {"symbols": ",".join(symbols), "conflate": "500"}
    async with open_stream(gateway.url, params) as stream, collecting(stream) as events:
        for i in range(1, 11):
            for symbol in symbols:
                await publish(js, symbol, f"{i}")
        burst_end = time.monotonic()
        received = await events.until(
            lambda r: {(s, 10.0) for s in symbols} <= set(prices(r)),
            within=3.0,
            what="the last tick of each symbol",
        )
        await events.quiet(0.7)  # nothing is left over, either
    last = {r.symbol: r for r in received}
    assert {symbol: r.price for symbol, r in last.items()} == dict.fromkeys(symbols, 10.0)
    for r in last.values():
        assert r.at - burst_end < 0.5 + 0.5, r


@pytest.mark.parametrize("shared_feed", [True, False], ids=["shared-feed", "own-consumers"])
async def test_the_latest_tick_is_sent_not_the_first_or_a_queued_one(
    start_gateway: StartGateway, js: JetStreamContext, shared_feed: bool
) -> None:
    # Without the shared feed too: a conflated stream must still conflate there.
    gateway = await start_gateway(shared_feed=shared_feed)
    params = {"symbols": "AAPL", "conflate": "2000"}
    async with open_stream(gateway.url, params) as stream, collecting(stream) as events:
        # The first goes at once (nothing sent for AAPL yet); the other 49 land within
        # the interval that follows (a few ms each), in the one slot the first left.
        await publish(js, "AAPL", "1")
        await events.count(1)
        for i in range(2, 51):
            await publish(js, "AAPL", f"{i}")
        await events.count(2, within=4.0)
        await events.quiet(0.5)
    assert prices(events.received) == [("AAPL", 1.0), ("AAPL", 50.0)]


async def test_a_tick_after_a_quiet_spell_goes_out_at_once(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    params = {"symbols": "AAPL", "conflate": "1000"}
    async with open_stream(gateway.url, params) as stream, collecting(stream) as events:
        first_published = time.monotonic()  # nothing sent before on this connection
        await publish(js, "AAPL", "1")
        first = (await events.count(1))[0]
        await asyncio.sleep(1.2)  # the quiet spell: longer than the interval
        published = time.monotonic()
        await publish(js, "AAPL", "2")
        second = (await events.count(2))[1]
    assert (first.price, second.price) == (1.0, 2.0)
    # Well under the 1 s interval, both.
    assert first.at - first_published < 0.3
    assert second.at - published < 0.3


async def test_ids_increase_along_a_conflated_connection_across_symbols(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    symbols = ["AAPL", "MSFT", "GOOG", "AMZN"]
    params = {"symbols": ",".join(symbols), "conflate": "200"}
    async with open_stream(gateway.url, params) as stream, collecting(stream) as events:
        # Symbols tick at different rates, so their slots fall due in changing orders.
        for i in range(1, 41):
            for n, symbol in enumerate(symbols, start=1):
                if i % n == 0:
                    await publish(js, symbol, f"{i}")
            await asyncio.sleep(0.02)
        received = await events.until(
            lambda r: ("AAPL", 40.0) in prices(r), within=2.0, what="the last AAPL tick"
        )
    sequences = [r.sequence for r in received]
    assert sequences == sorted(set(sequences)), sequences
    assert {r.symbol for r in received} == set(symbols)


async def test_conflated_resume_sends_per_symbol_its_latest_tick_after_the_id(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    before = {
        "GOOG": await publish(js, "GOOG", "1"),  # no tick after the id: nothing for GOOG
        "AAPL": await publish(js, "AAPL", "1"),
        "MSFT": await publish(js, "MSFT", "1"),
    }
    last_seen = before["MSFT"]
    after = [
        await publish(js, symbol, price)
        for symbol, price in [("AAPL", "2"), ("MSFT", "2"), ("AAPL", "3"), ("AAPL", "4")]
    ]
    params = {"symbols": "AAPL,MSFT,GOOG", "conflate": "500"}
    headers = {"Last-Event-ID": await event_id(js, last_seen)}
    async with (
        open_stream(gateway.url, params, headers) as stream,
        collecting(stream) as events,
    ):
        received = await events.until(
            lambda r: {("AAPL", 4.0), ("MSFT", 2.0)} <= set(prices(r)),
            within=3.0,
            what="the latest AAPL and MSFT ticks",
        )
        await events.quiet(0.7)
        received = list(events.received)
    assert all(r.sequence > last_seen for r in received), prices(received)
    assert all(r.sequence in after for r in received), prices(received)
    assert [r.sequence for r in received] == sorted({r.sequence for r in received})
    assert {r.symbol for r in received} == {"AAPL", "MSFT"}


async def test_fresh_conflated_connection_starts_with_the_latest_tick_of_each_symbol(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    for symbol, price in [("AAPL", "1"), ("MSFT", "1"), ("AAPL", "2"), ("GOOG", "1")]:
        await publish(js, symbol, price)
    params = {"symbols": "AAPL,MSFT", "conflate": "1000"}
    async with open_stream(gateway.url, params) as stream:
        snapshot = [await stream.next_event(), await stream.next_event()]
        await stream.assert_quiet(0.5)
    assert [(e.json()["symbol"], e.json()["price"]) for e in snapshot] == [
        ("MSFT", 1.0),
        ("AAPL", 2.0),
    ]


async def test_ticks_conflated_away_are_counted(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    name = "gateway_events_conflated_total"
    before = (await scrape(gateway)).get(name, 0.0)
    params = {"symbols": "AAPL", "conflate": "500"}
    async with open_stream(gateway.url, params) as stream, collecting(stream) as events:
        for i in range(1, 21):
            await publish(js, "AAPL", f"{i}")
        await events.until(lambda r: ("AAPL", 20.0) in prices(r), within=2.0, what="the last tick")
        sent = len(events.received)
    after = (await scrape(gateway))[name]
    assert after - before == 20 - sent


async def test_open_conflated_stream_is_counted_by_its_delivery(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    conflated = "gateway_open_streams_by_delivery{conflated=true,delayed=false}"
    exact = "gateway_open_streams_by_delivery{conflated=false,delayed=false}"
    async with open_stream(gateway.url, {"conflate": "250"}) as stream:
        await stream.next_block()
        during = await scrape(gateway)
    assert (during[conflated], during[exact]) == (1.0, 0.0)

    async def closed() -> bool:
        return (await scrape(gateway))[conflated] == 0.0

    await eventually(closed, within=5.0, what="the stream no longer counted")


async def test_stream_answers_its_effective_conflation_in_a_header(
    gateway: RunningGateway,
) -> None:
    answered = {}
    for conflate in (None, "0", "250", "60000"):
        params = {} if conflate is None else {"conflate": conflate}
        async with open_stream(gateway.url, params) as stream:
            headers = stream.response.headers
            answered[conflate] = (headers["price-conflate"], headers["price-delay"])
    assert answered == {
        None: ("0", "0"),
        "0": ("0", "0"),
        "250": ("250", "0"),
        "60000": ("60000", "0"),
    }


async def test_head_answers_the_conflation_headers_without_a_consumer(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.head("/stocks", params={"conflate": "250"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert (response.headers["price-conflate"], response.headers["price-delay"]) == ("250", "0")
    assert await client_consumers(js) == []


async def test_a_bad_conflation_is_a_problem_naming_it(gateway: RunningGateway) -> None:
    for query, named in [
        ("conflate=10", "conflate=10"),
        ("conflate=49", "conflate=49"),
        ("conflate=60001", "conflate=60001"),
        ("conflate=70000", "conflate=70000"),
        ("conflate=abc", "abc"),
        ("conflate=1.5", "1.5"),
        ("conflate=-5", "-5"),
        ("conflate=", "conflate"),
        ("conflate=%EF%BC%95%EF%BC%90%EF%BC%90", "conflate"),  # fullwidth digits
        ("conflate=250&conflate=500", "conflate"),
    ]:
        assert_problem(await request(gateway.url, f"symbols=AAPL&{query}"), 400, named)
