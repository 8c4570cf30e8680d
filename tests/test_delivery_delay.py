"""?delay=<s> end to end: every tick sent `delay` seconds after JetStream stored it, a
snapshot of what was stored that long ago, exact resumes, one delayed feed per delay."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.problems import assert_problem
from tests.scrape import scrape
from tests.sse_client import open_stream
from tests.ticks import client_consumers, event_id, publish
from tests.timed_events import Received, collecting, request, stored_at

pytestmark = pytest.mark.timeout(60)

# The client's clock and JetStream's are the same host's; this covers their rounding.
EARLY = 0.01
# How late a due tick may arrive (the contract: within delay + 1 s).
LATE = 1.0


@pytest.fixture
async def gateway(start_gateway: StartGateway, js: JetStreamContext) -> RunningGateway:
    return await start_gateway()


async def assert_on_time(js: JetStreamContext, received: list[Received], delay: float) -> None:
    for r in received:
        due = await stored_at(js, r.sequence) + delay
        assert due - EARLY <= r.wall <= due + LATE, (r.symbol, r.price, r.wall - due)


async def test_every_delayed_tick_arrives_between_delay_and_delay_plus_a_second(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    params = {"symbols": "AAPL,MSFT", "delay": "1"}
    async with open_stream(gateway.url, params) as stream, collecting(stream) as events:
        published = []
        for i in range(1, 7):
            published.append(await publish(js, "AAPL" if i % 2 else "MSFT", f"{i}"))
            await asyncio.sleep(0.1)
        received = await events.count(6, within=3.0)
    assert [r.sequence for r in received] == published
    await assert_on_time(js, received, 1.0)


async def test_delay_holds_on_a_gateway_without_the_shared_feed(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(shared_feed=False)
    params = {"symbols": "AAPL", "delay": "1"}
    async with open_stream(gateway.url, params) as stream, collecting(stream) as events:
        published = [await publish(js, "AAPL", f"{i}") for i in range(1, 4)]
        received = await events.count(3, within=3.0)
    assert [r.sequence for r in received] == published
    await assert_on_time(js, received, 1.0)


async def test_fresh_delayed_feed_starts_with_what_was_stored_at_least_delay_ago(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    await publish(js, "AAPL", "1")
    await publish(js, "MSFT", "1")
    await asyncio.sleep(1.2)  # older than the delay now
    newer = await publish(js, "AAPL", "2")
    params = {"symbols": "AAPL,MSFT", "delay": "1"}
    async with open_stream(gateway.url, params) as stream, collecting(stream) as events:
        snapshot = await events.count(2, within=1.0)
        received = await events.count(3, within=3.0)
    assert [(r.symbol, r.price) for r in snapshot] == [("AAPL", 1.0), ("MSFT", 1.0)]
    assert received[2].sequence == newer
    await assert_on_time(js, received[2:], 1.0)


async def test_running_delayed_feed_starts_a_new_client_with_what_it_has_handed_over(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    params = {"symbols": "AAPL", "delay": "1"}
    async with open_stream(gateway.url, params) as first, collecting(first) as events:
        await publish(js, "AAPL", "1")
        await events.count(1, within=3.0)  # handed over: the feed is a second behind
        newer = await publish(js, "AAPL", "2")
        async with open_stream(gateway.url, params) as second, collecting(second) as late:
            received = await late.count(2, within=3.0)
    assert [r.price for r in received] == [1.0, 2.0]
    assert received[1].sequence == newer
    await assert_on_time(js, received[1:], 1.0)


async def test_delayed_resume_sends_exactly_the_next_ticks_each_when_due(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    params = {"symbols": "AAPL,MSFT", "delay": "1"}
    async with open_stream(gateway.url, params) as stream:
        await stream.next_block()
        await publish(js, "AAPL", "1")
        last_seen = (await stream.next_event(3.0)).id
    assert last_seen is not None
    # Missed while away: one due by the time the client is back, two not yet.
    missed = [await publish(js, "AAPL", "2")]
    await asyncio.sleep(1.2)
    missed += [await publish(js, "MSFT", "2"), await publish(js, "AAPL", "3")]
    headers = {"Last-Event-ID": last_seen}
    async with (
        open_stream(gateway.url, params, headers) as stream,
        collecting(stream) as events,
    ):
        received = await events.count(3, within=3.0)
        await events.quiet(0.5)
    assert [r.event.id for r in received] == [await event_id(js, s) for s in missed]
    due = [await stored_at(js, s) + 1.0 for s in missed]
    assert all(r.wall >= d - EARLY for r, d in zip(received, due, strict=True))
    assert all(r.wall <= d + LATE for r, d in zip(received[1:], due[1:], strict=True))


async def test_clients_with_the_same_delay_share_one_delayed_feed(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    async with (
        open_stream(gateway.url, {"symbols": "AAPL", "delay": "1"}) as a,
        open_stream(gateway.url, {"symbols": "AAPL,MSFT", "delay": "1"}) as b,
        open_stream(gateway.url, {"delay": "1", "conflate": "500"}) as c,
        open_stream(gateway.url, {"symbols": "AAPL", "delay": "2"}) as d,
        collecting(a) as by_a,
        collecting(b) as by_b,
    ):
        # Each is attached to its feed once its answer's head has come.
        assert (c.response.status_code, d.response.status_code) == (200, 200)
        names = [c.name for c in await js.consumers_info("PRICES")]
        own = await client_consumers(js)
        # What the shared feed hands over reaches each of its clients.
        published = [await publish(js, "AAPL", f"{i}") for i in range(1, 4)]
        received = [await by_a.count(3, within=3.0), await by_b.count(3, within=3.0)]
    delayed = sorted(name.split("-", 1)[0] for name in names if name.startswith("delayed"))
    assert delayed == ["delayed1", "delayed2"], names
    assert own == []  # a fresh delayed client starts from its feed's snapshot
    assert [[r.sequence for r in events] for events in received] == [published, published]


async def test_delayed_stream_answers_its_delay_in_a_header_and_is_counted(
    gateway: RunningGateway,
) -> None:
    delayed = "gateway_open_streams_by_delivery{conflated=false,delayed=true}"
    async with open_stream(gateway.url, {"delay": "5"}) as stream:
        await stream.next_block()
        headers = stream.response.headers
        during = await scrape(gateway)
    assert (headers["price-delay"], headers["price-conflate"]) == ("5", "0")
    assert during[delayed] == 1.0


async def test_delay_and_conflation_combine(gateway: RunningGateway, js: JetStreamContext) -> None:
    params = {"symbols": "AAPL", "delay": "1", "conflate": "500"}
    async with open_stream(gateway.url, params) as stream, collecting(stream) as events:
        headers = stream.response.headers
        for i in range(1, 21):
            await publish(js, "AAPL", f"{i}")
        published = time.monotonic()
        received = await events.until(
            lambda r: any(e.price == 20.0 for e in r), within=3.0, what="the last tick"
        )
        await events.quiet(0.7)
    assert (headers["price-delay"], headers["price-conflate"]) == ("1", "500")
    assert len(events.received) == len(received) <= 3, [r.price for r in received]
    assert received[-1].price == 20.0
    assert received[-1].at - published < 1.0 + 0.5 + 0.5
    await assert_on_time(js, received, 1.0)


async def test_a_bad_delay_is_a_problem_naming_it(gateway: RunningGateway) -> None:
    for query, named in [
        ("delay=0.5", "0.5"),
        ("delay=86401", "delay=86401"),
        ("delay=x", "x"),
        ("delay=-1", "-1"),
        ("delay=1e3", "1e3"),
        ("delay=", "delay"),
        ("delay=5&delay=10", "delay"),
    ]:
        assert_problem(await request(gateway.url, f"symbols=AAPL&{query}"), 400, named)


async def test_distinct_delays_beyond_the_limit_are_refused(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(max_delays=1)
    async with open_stream(gateway.url, {"delay": "1"}) as stream:
        await stream.next_block()
        response = await request(gateway.url, "delay=2")
        async with open_stream(gateway.url, {"delay": "1"}) as same:
            await same.next_block()
    assert_problem(response, 503, "delays")
