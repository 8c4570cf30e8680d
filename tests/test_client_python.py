"""price_client against a real gateway over real HTTP: exact prices, exact resume across a
gateway restart, Retry-After honoured on 503, resets reported, 4xx raised."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from price_client import (
    Backoff,
    GaveUpError,
    PriceStream,
    RequestRejectedError,
    Reset,
    Tick,
)
from price_client.backoff import retry_after
from price_client.sse import Event, EventParser
from tests.conftest import RunningGateway, StartGateway
from tests.servers import eventually, free_port
from tests.sse_client import open_stream
from tests.ticks import event_id, publish

PACKAGE = Path(__file__).resolve().parent.parent / "price_client"
FAST = Backoff(initial=0.05, maximum=0.2, seed=1)


async def take(stream: AsyncIterator[Tick], count: int, within: float = 10) -> list[Tick]:
    async with asyncio.timeout(within):
        return [await anext(stream) for _ in range(count)]


# --- pure parts -------------------------------------------------------------------------


def test_events_are_parsed_as_the_sse_standard_says() -> None:
    parser = EventParser()
    lines = [
        "retry: 2000", "", ": heartbeat", "", "id: a-1", "event: stockUpdate",
        "data: {\"x\":", "data:1}", "", "data: no id of its own", "",
    ]  # fmt: skip
    events = [e for e in map(parser.feed, lines) if e is not None]
    assert events == [
        Event("stockUpdate", '{"x":\n1}', "a-1"),
        Event("message", "no id of its own", "a-1"),
    ]
    assert parser.retry == 2.0


def test_backoff_doubles_to_its_maximum_with_at_most_a_fifth_of_jitter() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, seed=7)
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, base in zip(delays, [0.5, 1, 2, 4, 4, 4], strict=True):
        assert base <= delay <= base * 1.2
    backoff.reset()
    assert backoff.next_delay() <= 0.6


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after("2") == 2.0
    assert retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_the_client_imports_nothing_of_the_gateway_or_the_publisher() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in {"gateway", "publisher", "tests"}, path


# --- against the gateway ----------------------------------------------------------------


async def test_ticks_arrive_in_order_with_their_exact_prices(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    await publish(js, "AAPL", "1")
    async with PriceStream(gateway.url, ["AAPL"], backoff=FAST) as stream:
        ticks = aiter(stream)
        (latest,) = await take(ticks, 1)  # no id: the latest stored price first
        prices = ("189.230000", "190", "0.000001")
        sequences = [await publish(js, "AAPL", price) for price in prices]
        await publish(js, "MSFT", "415.30")  # not asked for
        live = await take(ticks, 3)
    assert latest.price == Decimal("1")
    assert [str(t.price) for t in live] == list(prices)  # the digits as published
    assert [t.id for t in live] == [await event_id(js, s) for s in sequences]
    assert {t.symbol for t in live} == {"AAPL"}
    assert live[0].timestamp.tzinfo is not None
    assert live[0].data["source"] == live[0].source == "test-pub"


async def test_a_gateway_restart_resumes_with_exactly_the_missed_ticks(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    port = free_port()
    first = await start_gateway(port=port, retry=0.05)
    known = await event_id(js, await publish(js, "AAPL", "99"))  # seen in an earlier run
    before = [await publish(js, "AAPL", f"10{i}") for i in range(3)]
    async with PriceStream(first.url, ["AAPL"], last_event_id=known, backoff=FAST) as stream:
        ticks = aiter(stream)
        seen = await take(ticks, 3)
        await first.stop()  # drains: the stream ends, the client retries a closed port
        missed = [await publish(js, "AAPL", f"20{i}") for i in range(4)]
        await start_gateway(port=port, retry=0.05)
        after = [await publish(js, "AAPL", f"30{i}") for i in range(2)]
        seen += await take(ticks, 6, within=20)
        assert stream.attempts, "it reconnected"
    expected = [await event_id(js, s) for s in before + missed + after]
    assert [t.id for t in seen] == expected


async def test_a_503_is_retried_no_sooner_than_its_retry_after(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(max_connections=1)
    await publish(js, "AAPL", "1")
    async with PriceStream(gateway.url, ["AAPL"], backoff=FAST) as stream:
        ticks = aiter(stream)
        async with open_stream(gateway.url, {"symbols": "MSFT"}) as holder:
            await holder.next_block()
            reading = asyncio.create_task(take(ticks, 1, within=20))
            await eventually(lambda: bool(stream.attempts), within=10, what="a refused attempt")
        (tick,) = await reading  # the holder is gone: the retry after Retry-After gets in
    assert tick.price == Decimal("1")
    refused = stream.attempts[0]
    assert refused.outcome == "503"
    assert refused.delay >= 2.0  # the gateway's Retry-After: 2, over a 0.05 s back-off


async def test_a_lost_position_is_reported_and_ticks_go_on(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    old = await event_id(js, await publish(js, "AAPL", "1"))
    await publish(js, "AAPL", "2")
    await js.purge_stream("PRICES")
    latest = await publish(js, "AAPL", "3")
    resets: list[Reset] = []
    async with PriceStream(
        gateway.url, ["AAPL"], last_event_id=old, on_reset=resets.append, backoff=FAST
    ) as stream:
        (tick,) = await take(aiter(stream), 1)
    assert [r.reason for r in resets] == ["position-lost"]
    assert tick.id == await event_id(js, latest)


async def test_a_bad_request_is_raised_with_the_gateways_detail_not_retried(
    gateway: RunningGateway,
) -> None:
    async with PriceStream(gateway.url, ["BAD*"], backoff=FAST) as stream:
        with pytest.raises(RequestRejectedError) as raised:
            await take(aiter(stream), 1)
    assert raised.value.status == 400
    assert "BAD*" in raised.value.problem["detail"]
    assert not stream.attempts


async def test_it_gives_up_after_max_attempts_failures_in_a_row() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with PriceStream(url, ["AAPL"], backoff=FAST, max_attempts=3) as stream:
        with pytest.raises(GaveUpError, match="3 connections in a row failed"):
            await take(aiter(stream), 1)
    assert [a.outcome for a in stream.attempts] == ["transport: ConnectError"] * 2


async def test_a_shared_http_client_is_left_open(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient() as http:
        async with PriceStream(gateway.url, ["AAPL"], http=http):
            pass
        assert not http.is_closed
