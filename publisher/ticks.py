"""Demo prices: a random walk per symbol, in exact decimals, as PriceTicks (no I/O)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from contracts.messages import PriceTick

# Roughly where these traded recently, so the demo page looks familiar.
KNOWN_START_PRICES = {
    "AAPL": Decimal("189.50"),
    "MSFT": Decimal("415.30"),
    "GOOG": Decimal("172.60"),
    "GOOGL": Decimal("171.90"),
    "AMZN": Decimal("185.20"),
    "BRK.B": Decimal("412.80"),
    "META": Decimal("505.10"),
    "NVDA": Decimal("121.40"),
    "TSLA": Decimal("242.70"),
    "JPM": Decimal("198.30"),
    "RDS-A": Decimal("68.40"),
}
# Any other symbol starts somewhere in 5.00-499.99, the same place in every process.
HASHED_START_CENTS = (500, 50_000)
# A step moves the price by at most 0.1%, in steps of 0.001% (1/100,000).
MAX_STEP = 100
STEP_SCALE = -5
# Pull towards the start price, per tick, as a fraction of the distance: weak enough to
# wander (a few percent over hours at 2 ticks/s), strong enough never to drift away.
REVERSION = Decimal("0.00005")
SMALLEST_PRICE = Decimal("0.000001")
# PriceTick admits 12 integer digits; no walk should get near this.
LARGEST_PRICE = Decimal("999999999999.00")


def start_price(symbol: str) -> Decimal:
    """A plausible, deterministic first price for `symbol` (a canonical symbol)."""
    known = KNOWN_START_PRICES.get(symbol)
    if known is not None:
        return known
    digest = hashlib.blake2b(symbol.encode(), digest_size=8).digest()
    low, high = HASHED_START_CENTS
    cents = low + int.from_bytes(digest, "big") % (high - low)
    return Decimal(cents).scaleb(-2)


def fraction_digits(price: Decimal) -> int:
    """How many fraction digits a price is quoted with: 2 from 1 up, more below."""
    if price >= 1:
        return 2
    if price >= Decimal("0.01"):
        return 4
    return 6


def quote(price: Decimal) -> Decimal:
    """`price` rounded to its quoting precision, never below the smallest quotable price."""
    quoted = price
    # Rounding may cross 1 or 0.01 (0.999996 -> 1.0000), which changes the precision.
    for _ in range(2):
        quoted = price.quantize(Decimal(1).scaleb(-fraction_digits(quoted)), ROUND_HALF_EVEN)
    return min(max(quoted, SMALLEST_PRICE), LARGEST_PRICE)


def utc_now() -> datetime:
    return datetime.now(UTC)


class PriceWalk:
    """One random walk per symbol; `tick(symbol)` takes a step and returns the new price.

    The walk keeps each price at full decimal precision and quotes it only on the way out,
    so that small steps accumulate instead of being rounded away at low prices.
    """

    def __init__(
        self,
        symbols: Iterable[str],
        source: str,
        *,
        seed: int | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.source = source
        self._rng = random.Random(seed)
        self._clock = clock
        self._start = {symbol: start_price(symbol) for symbol in symbols}
        self._price = dict(self._start)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._start)

    def continue_from(self, prices: dict[str, Decimal]) -> None:
        """Go on from these prices (the last stored ones) instead of the start prices; the
        walk still reverts towards its start price, so it never drifts away for good."""
        for symbol, price in prices.items():
            if symbol in self._price:
                self._price[symbol] = min(max(price, SMALLEST_PRICE), LARGEST_PRICE)

    def step(self, symbol: str) -> Decimal:
        """Move `symbol`'s price one step; return it quoted (> 0, fixed fraction digits)."""
        price = self._price[symbol]
        start = self._start[symbol]
        move = Decimal(self._rng.randint(-MAX_STEP, MAX_STEP)).scaleb(STEP_SCALE)
        pull = (start - price) / start * REVERSION
        # |move + pull| stays far below 1, so the factor is positive and so is the price.
        price = min(price * (1 + move + pull), LARGEST_PRICE)
        self._price[symbol] = price
        return quote(price)

    def tick(self, symbol: str) -> PriceTick:
        """The next price of `symbol`, stamped now (UTC, microseconds) with this source."""
        return PriceTick(
            symbol=symbol, price=self.step(symbol), timestamp=self._clock(), source=self.source
        )
