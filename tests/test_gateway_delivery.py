"""End to end through JetStream: exact digits, several publishers, de-duplicated retries."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway
from tests.sse_client import open_stream
from tests.ticks import make_tick, publish


@pytest.mark.parametrize(
    "price", ["0.000001", "123456.7", "189.230000", "7", "999999999999.999999"]
)
async def test_prices_keep_their_exact_digits_end_to_end(
    gateway: RunningGateway, js: JetStreamContext, price: str
) -> None:
    async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
        await stream.next_block()
        await publish(js, "AAPL", price)
        event = await stream.next_event()
    assert f'"price":{price},' in event.data


async def test_two_publishers_interleaved_each_event_once_in_stream_order(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    published: list[tuple[int, str]] = []
    async with open_stream(gateway.url, {"symbols": "AAPL,MSFT"}) as stream:
        await stream.next_block()
        for i in range(20):
            source = "pub-1" if i % 2 else "pub-2"
            symbol = "AAPL" if i % 3 else "MSFT"
            published.append((await publish(js, symbol, f"1.{i:02d}", source=source), source))
        events = await stream.events(20)
        await stream.assert_quiet(0.3)
    got = [(e.sequence, e.json()["source"]) for e in events]
    assert got == published


async def test_a_retried_publish_is_stored_and_sent_once(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    tick = make_tick("AAPL", "5.55", "pub-1")
    async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
        await stream.next_block()
        first = await js.publish("prices.AAPL", tick.encode(), headers={"Nats-Msg-Id": "pub-1:7"})
        retry = await js.publish("prices.AAPL", tick.encode(), headers={"Nats-Msg-Id": "pub-1:7"})
        events = [await stream.next_event()]
        await stream.assert_quiet(0.5)
    assert retry.duplicate is True
    assert retry.seq == first.seq
    assert len(events) == 1
