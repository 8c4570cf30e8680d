"""The demo price walk: exact decimals, always positive, plausible and reproducible (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from contracts.messages import PriceTick
from publisher.ticks import (
    KNOWN_START_PRICES,
    SMALLEST_PRICE,
    PriceWalk,
    fraction_digits,
    quote,
    start_price,
)

CENT = Decimal("0.01")
SYMBOLS = ("AAPL", "BRK.B", "RDS-A", "ZZZZ", "X1")


def exponent(price: Decimal) -> int:
    value = price.as_tuple().exponent
    assert isinstance(value, int)
    return value


def test_well_known_symbols_start_at_their_table_price() -> None:
    assert start_price("AAPL") == Decimal("189.50")
    assert start_price("BRK.B") == KNOWN_START_PRICES["BRK.B"]


@pytest.mark.parametrize("symbol", ["ZZZZ", "X1", "ABC-D", "Q.Q", "0"])
def test_other_symbols_start_at_a_plausible_price_that_depends_only_on_the_symbol(
    symbol: str,
) -> None:
    price = start_price(symbol)
    assert price == start_price(symbol)
    assert Decimal("5.00") <= price < Decimal("500.00")
    assert exponent(price) == -2


def test_different_symbols_start_at_different_prices() -> None:
    prices = {start_price(f"SYM{n}") for n in range(50)}
    assert len(prices) > 45


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("189.505", "189.50"),  # half to even
        ("189.515", "189.52"),
        ("1", "1.00"),
        ("0.999996", "1.00"),  # rounding across 1 changes the precision
        ("0.99994", "0.9999"),
        ("0.0123456", "0.0123"),
        ("0.00999999", "0.0100"),
        ("0.00123456", "0.001235"),
        ("0.0000004", "0.000001"),  # never rounds to 0
    ],
)
def test_quote_rounds_to_the_precision_of_the_price(raw: str, quoted: str) -> None:
    result = quote(Decimal(raw))
    assert str(result) == quoted
    assert exponent(result) == -fraction_digits(result)


def test_walk_stays_positive_plausible_and_quoted_over_many_steps() -> None:
    walk = PriceWalk(SYMBOLS, "pub-t", seed=7)
    for symbol in SYMBOLS:
        start = start_price(symbol)
        moved = False
        previous = start
        for _ in range(20_000):
            price = walk.step(symbol)
            assert price >= SMALLEST_PRICE
            assert exponent(price) == -fraction_digits(price)
            # A step moves at most 0.1% (plus a tiny pull), and quoting adds a cent.
            assert abs(price - previous) <= max(price, previous) * Decimal("0.00101") + CENT
            moved = moved or price != start
            previous = price
        assert moved
        # The pull towards the start keeps a long walk within a plausible band.
        assert start / 2 < previous < start * 2


def test_same_seed_gives_the_same_walk() -> None:
    a = PriceWalk(SYMBOLS, "pub-t", seed=3)
    b = PriceWalk(SYMBOLS, "pub-t", seed=3)
    c = PriceWalk(SYMBOLS, "pub-t", seed=4)
    steps_a = [a.step(s) for _ in range(100) for s in SYMBOLS]
    assert steps_a == [b.step(s) for _ in range(100) for s in SYMBOLS]
    assert steps_a != [c.step(s) for _ in range(100) for s in SYMBOLS]


def test_tick_carries_symbol_source_and_utc_microsecond_time() -> None:
    before = datetime.now(UTC)
    tick = PriceWalk(["BRK.B"], "pub-t", seed=1).tick("BRK.B")
    assert tick.symbol == "BRK.B"
    assert tick.source == "pub-t"
    assert tick.timestamp.utcoffset() == timedelta(0)
    assert before <= tick.timestamp <= datetime.now(UTC)


def test_tick_encodes_its_price_digits_exactly() -> None:
    fixed = datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)
    walk = PriceWalk(["AAPL"], "pub-t", seed=1, clock=lambda: fixed)
    for _ in range(200):
        tick = walk.tick("AAPL")
        body = tick.encode()
        assert (
            body
            == (
                f'{{"symbol":"AAPL","price":{tick.price},'
                f'"timestamp":"2026-11-24T10:00:00.123456Z","source":"pub-t"}}'
            ).encode()
        )
        decoded = PriceTick.decode(body)
        assert decoded.price == tick.price
        assert str(decoded.price) == str(tick.price)


def test_small_steps_accumulate_at_prices_too_low_for_one_step_to_show(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At 0.000100 one step (<= 0.1%) is below the last quoted digit; a walk over quoted
    # prices would never move.
    monkeypatch.setitem(KNOWN_START_PRICES, "PENNY", Decimal("0.000100"))
    walk = PriceWalk(["PENNY"], "pub-t", seed=11)
    prices = {walk.step("PENNY") for _ in range(5_000)}
    assert len(prices) > 3
    assert all(p > 0 and exponent(p) == -6 for p in prices)
