"""Publishing test ticks straight into JetStream, as a publisher would."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

from nats.js import JetStreamContext

from contracts.event_ids import incarnation_of
from contracts.messages import MSG_ID_HEADER, PriceTick, message_id
from contracts.symbols import subject_for

_ids = itertools.count(1)


def make_tick(symbol: str, price: str = "100.25", source: str = "test-pub") -> PriceTick:
    return PriceTick.validate_object(
        {
            "symbol": symbol,
            "price": Decimal(price),
            "timestamp": datetime.now(UTC),
            "source": source,
        }
    )


async def publish(
    js: JetStreamContext,
    symbol: str,
    price: str = "100.25",
    *,
    source: str = "test-pub",
    msg_id: str | None = None,
) -> int:
    """Publish one tick; returns its stream sequence."""
    tick = make_tick(symbol, price, source)
    ack = await js.publish(
        subject_for(tick.symbol),
        tick.encode(),
        headers={MSG_ID_HEADER: msg_id or message_id(source, next(_ids))},
    )
    return ack.seq


async def publish_raw(js: JetStreamContext, symbol: str, body: bytes) -> int:
    ack = await js.publish(subject_for(symbol), body)
    return ack.seq


async def event_id(js: JetStreamContext, sequence: int, stream: str = "PRICES") -> str:
    """The event id the gateway gives the message at `sequence` of the current stream."""
    info = await js.stream_info(stream)
    assert info.created is not None
    return f"{incarnation_of(info.created)}-{sequence}"


async def client_consumers(js: JetStreamContext, stream: str = "PRICES") -> list[str]:
    """Names of the per-client consumers (not the gateways' live-feed consumers)."""
    return [c.name for c in await js.consumers_info(stream) if c.name.startswith("sse-")]
