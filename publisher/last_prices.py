"""Where each symbol's walk goes on from: the last price stored in the stream.

A restarted publisher continues its symbols' prices instead of jumping back to the start
prices, and publishers sharing a symbol stay near each other. What is stored may come from
anyone with publish rights, so each message is decoded as untrusted input: one that is not
a tick of its symbol (malformed, oversized, deeply nested, another symbol) is skipped,
logged and counted, and that symbol starts from its default price.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.errors import InvalidTickError
from contracts.messages import PriceTick
from contracts.symbols import subject_for

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class LastPrices:
    prices: dict[str, Decimal] = field(default_factory=dict)
    skipped: int = 0  # stored messages that were no tick of their symbol


async def last_prices(
    js: JetStreamContext, stream: str, prefix: str, symbols: tuple[str, ...]
) -> LastPrices:
    """The last stored price of each symbol that has one and whose last message is a tick.

    Reads by direct get (no stream leader round trip; needs only DIRECT.GET permission).
    A symbol NATS cannot answer for is left out: its walk starts at its default price.
    """
    found = LastPrices()
    for symbol in symbols:
        subject = subject_for(symbol, prefix)
        try:
            stored = await js.get_last_msg(stream, subject, direct=True)
        except NotFoundError:
            continue  # never published
        except (nats.errors.Error, TimeoutError) as exc:
            logger.warning("last price not read", extra={"symbol": symbol, "error": repr(exc)})
            continue
        try:
            tick = PriceTick.decode(stored.data or b"")
            if tick.symbol != symbol:
                raise InvalidTickError(f"a tick of {tick.symbol!r} stored on {subject!r}")
        except InvalidTickError as exc:
            found.skipped += 1
            logger.warning(
                "stored message skipped",
                extra={"subject": subject, "seq": stored.seq, "error": str(exc)[:300]},
            )
            continue
        found.prices[symbol] = tick.price
    return found
