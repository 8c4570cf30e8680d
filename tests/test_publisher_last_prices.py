"""A restarted publisher goes on from the stored prices, and treats what is stored as untrusted."""

from __future__ import annotations

from decimal import Decimal

import pytest
from nats.js import JetStreamContext

from contracts.messages import PriceTick
from contracts.stream import StreamSettings, ensure_stream
from publisher.app import PublisherService
from publisher.last_prices import last_prices
from publisher.settings import PublisherSettings
from publisher.ticks import PriceWalk
from tests.servers import eventually
from tests.ticks import publish, publish_raw

POISON = {
    "MSFT": b'{"symbol":"MSFT","price":1,"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "GOOG": b'{"symbol":"GOOG","pad":"' + b"x" * 70_000 + b'"}',
    "AMZN": b'{"symbol":"AAPL","price":5,"timestamp":"2026-11-25T10:00:00Z","source":"x"}',
    "NVDA": b'{"symbol":"NVDA","price":',
    "META": b'{"symbol":"META","price":"12","timestamp":"2026-11-25T10:00:00Z","source":"x"}',
}


async def test_last_prices_skip_and_count_what_is_not_a_tick_of_its_symbol(
    js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    # An operator may raise the stream's message size; the publisher's own bound still holds.
    await ensure_stream(js, StreamSettings(max_msg_size=1024 * 1024))
    await publish(js, "AAPL", "123.45")
    await publish(js, "BRK.B", "9.5")
    await publish(js, "BRK.B", "412.120000")  # the last one counts
    for symbol, body in POISON.items():
        await publish_raw(js, symbol, body)
    symbols = ("AAPL", "BRK.B", "TSLA", *POISON)
    found = await last_prices(js, "PRICES", "prices", symbols)
    assert found.prices == {"AAPL": Decimal("123.45"), "BRK.B": Decimal("412.120000")}
    assert found.skipped == len(POISON)
    skipped = [r for r in caplog.records if r.getMessage() == "stored message skipped"]
    assert sorted(r.subject for r in skipped) == sorted(f"prices.{s}" for s in POISON)  # type: ignore[attr-defined]


def test_a_walk_continues_from_given_prices_and_ignores_others() -> None:
    walk = PriceWalk(["AAPL", "MSFT"], "pub-1", seed=7)
    walk.continue_from({"AAPL": Decimal("50.00"), "TSLA": Decimal("1")})
    assert abs(walk.step("AAPL") - Decimal("50.00")) <= Decimal("0.05")  # one step: <= 0.1%
    assert abs(walk.step("MSFT") - Decimal("415.30")) <= Decimal("0.42")
    assert walk.symbols == ("AAPL", "MSFT")


async def test_the_app_starts_its_walk_from_the_stored_price(
    nats_url: str, js: JetStreamContext
) -> None:
    await publish(js, "AAPL", "50.00")
    await publish_raw(js, "MSFT", POISON["MSFT"])
    first_seq = (await js.stream_info("PRICES")).state.last_seq + 1
    settings = PublisherSettings(nats_url=nats_url, source="pub-2", symbols="AAPL,MSFT", rate=20)
    service = PublisherService(settings)
    async with service.app:
        await eventually(lambda: _stored_at_least(js, first_seq + 2), within=10, what="first round")
    assert service.last_prices is not None
    assert service.last_prices.skipped == 1
    by_symbol: dict[str, Decimal] = {}
    for seq in (first_seq, first_seq + 1):
        msg = await js.get_msg("PRICES", seq)
        tick = PriceTick.decode(msg.data or b"")
        by_symbol[tick.symbol] = tick.price
    assert abs(by_symbol["AAPL"] - Decimal("50.00")) <= Decimal("0.05")
    assert abs(by_symbol["MSFT"] - Decimal("415.30")) <= Decimal("0.42")  # default start


async def _stored_at_least(js: JetStreamContext, last_seq: int) -> bool:
    return (await js.stream_info("PRICES")).state.last_seq >= last_seq
