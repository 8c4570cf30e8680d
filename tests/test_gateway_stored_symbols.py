"""The stream's info and its stored symbols, against a real nats-server: one function says
why NATS cannot answer, and one cache lists the symbols for /symbols and for grants."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from contracts.stream import StreamSettings
from gateway.broker.streams import stream_info
from gateway.broker.symbols import StoredSymbols
from gateway.errors import NatsUnavailableError
from tests.ticks import publish, publish_raw


@dataclass
class Connected:
    nc: NATS | None
    js: JetStreamContext | None


async def test_stream_info_answers_with_the_stream(nc: NATS, js: JetStreamContext) -> None:
    await publish(js, "AAPL")
    info = await stream_info(js, nc, "PRICES", subjects_filter="prices.>")
    assert info.state.subjects == {"prices.AAPL": 1}


async def test_stream_info_is_unavailable_before_a_connection() -> None:
    with pytest.raises(NatsUnavailableError, match=r"^not connected to NATS$"):
        await stream_info(None, None, "PRICES")


async def test_stream_info_is_unavailable_without_the_stream(
    nc: NATS, js: JetStreamContext
) -> None:
    with pytest.raises(NatsUnavailableError, match=r"^stream NOPE not found$"):
        await stream_info(js, nc, "NOPE")


async def test_stream_info_is_unavailable_once_closed(nc: NATS, js: JetStreamContext) -> None:
    await nc.close()
    with pytest.raises(NatsUnavailableError, match=r"^not connected to NATS$"):
        await stream_info(js, nc, "PRICES")


async def test_stored_symbols_lists_the_symbols_with_a_price(
    nc: NATS, js: JetStreamContext
) -> None:
    for symbol in ("MSFT", "BRK.B", "AAPL", "MSFT"):
        await publish(js, symbol)
    await publish_raw(js, "aapl", b"{}")  # prices.aapl: outside the grammar, not listed
    stored = StoredSymbols(Connected(nc, js), StreamSettings(), ttl=0)
    assert await stored.get() == ["AAPL", "BRK.B", "MSFT"]


async def test_stored_symbols_asks_once_per_ttl(nc: NATS, js: JetStreamContext) -> None:
    await publish(js, "AAPL")
    stored = StoredSymbols(Connected(nc, js), StreamSettings(), ttl=3600)
    assert await stored.get() == ["AAPL"]
    await publish(js, "MSFT")
    assert await stored.get() == ["AAPL"]  # kept
    assert await StoredSymbols(Connected(nc, js), StreamSettings()).get() == ["AAPL", "MSFT"]


async def test_stored_symbols_waits_for_the_connection(nc: NATS, js: JetStreamContext) -> None:
    connection = Connected(None, None)
    stored = StoredSymbols(connection, StreamSettings(), ttl=0)
    with pytest.raises(NatsUnavailableError, match="not connected"):
        await stored.get()
    connection.nc, connection.js = nc, js  # connected later, as the hub is
    assert await stored.get() == []
