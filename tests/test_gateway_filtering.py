"""Which prices a client gets: the symbols of its query, and nothing else."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway
from tests.sse_client import open_stream
from tests.ticks import publish

SYMBOLS = ["AAPL", "MSFT", "GOOG", "BRK.B", "RDS-A", "TSLA"]


async def publish_all(js: JetStreamContext) -> dict[int, str]:
    """One tick of every symbol; returns sequence -> symbol."""
    return {await publish(js, symbol): symbol for symbol in SYMBOLS}


async def received_symbols(
    gateway: RunningGateway, params: dict[str, str | list[str]], count: int
) -> list[str]:
    async with open_stream(gateway.url, params) as stream:
        events = await stream.events(count)
        await stream.assert_quiet(0.3)
    return [event.json()["symbol"] for event in events]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"symbols": "AAPL"}, ["AAPL"]),
        ({"symbols": "AAPL,GOOG"}, ["AAPL", "GOOG"]),
        ({"symbols": ["AAPL", "TSLA"]}, ["AAPL", "TSLA"]),
        ({"symbols": ["msft,goog", "tsla"]}, ["MSFT", "GOOG", "TSLA"]),
        ({"symbols": "brk.b,rds-a"}, ["BRK.B", "RDS-A"]),
        ({"symbols": "AAPL,aapl, AAPL "}, ["AAPL"]),
    ],
    ids=["single", "several", "repeated-param", "lower-case", "dotted-and-dashed", "duplicates"],
)
async def test_client_gets_the_latest_price_of_exactly_its_symbols(
    gateway: RunningGateway,
    js: JetStreamContext,
    params: dict[str, str | list[str]],
    expected: list[str],
) -> None:
    await publish_all(js)
    got = await received_symbols(gateway, params, len(expected))
    assert got == [s for s in SYMBOLS if s in expected]  # in stream order


async def test_absent_symbols_means_every_symbol(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    await publish_all(js)
    assert await received_symbols(gateway, {}, len(SYMBOLS)) == SYMBOLS


async def test_live_ticks_of_other_symbols_are_not_sent(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    async with open_stream(gateway.url, {"symbols": "BRK.B,GOOG"}) as stream:
        await stream.next_block()  # retry: the consumer exists once the stream has started
        for symbol in SYMBOLS * 3:
            await publish(js, symbol)
        events = await stream.events(6)
        await stream.assert_quiet(0.3)
    assert [e.json()["symbol"] for e in events] == ["GOOG", "BRK.B"] * 3
    sequences = [e.sequence for e in events]
    assert sequences == sorted(sequences)
