"""The tick model: validation, exact prices, extra fields (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contracts.errors import InvalidTickError
from contracts.messages import PriceTick

BASE = b'"timestamp":"2026-11-24T10:00:00.123456Z","source":"pub-1"'


def body(symbol: str = "AAPL", price: str = "189.23", extra: bytes = b"") -> bytes:
    return b'{"symbol":"%s","price":%s,%s%s}' % (symbol.encode(), price.encode(), BASE, extra)


@pytest.mark.parametrize("price", ["0.000001", "123456.7", "189.230000", "7", "100.10"])
def test_price_digits_survive_decode_and_encode(price: str) -> None:
    data = body(price=price)
    tick = PriceTick.decode(data)
    assert tick.price == Decimal(price)
    assert tick.encode() == data


def test_encode_is_compact_one_line_json_in_contract_order() -> None:
    tick = PriceTick.validate_object(
        {
            "source": "pub-1",
            "timestamp": datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC),
            "price": Decimal("1.50"),
            "symbol": "BRK.B",
        }
    )
    assert tick.encode() == (
        b'{"symbol":"BRK.B","price":1.50,"timestamp":"2026-11-24T10:00:00.123456Z",'
        b'"source":"pub-1"}'
    )


def test_unknown_extra_fields_are_kept_exactly() -> None:
    data = body(extra=b',"venue":"XNAS","bid":189.220000,"tags":["a"]')
    tick = PriceTick.decode(data)
    assert tick.model_extra == {"venue": "XNAS", "bid": Decimal("189.220000"), "tags": ["a"]}
    assert tick.encode() == data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (body(price="0"), "price"),
        (body(price="-1.5"), "price"),
        (body(price="1.0000001"), "price"),
        (body(price='"1.5"x'), "JSON"),
        (body(price="1e400"), "price"),
        (body(symbol="A*"), "symbol"),
        (body(symbol="aapl"), "symbol 'aapl' must be written 'AAPL'"),
        (
            b'{"symbol":"AAPL","price":1,"timestamp":"2026-11-24T10:00:00+01:00","source":"p"}',
            "timestamp",
        ),
        (b'{"symbol":"AAPL","price":1,"timestamp":"yesterday","source":"p"}', "timestamp"),
        (b'{"symbol":"AAPL","price":1,"timestamp":1700000000,"source":"p"}', "timestamp"),
        (b'{"symbol":"AAPL","price":1,"timestamp":"2026-11-24T10:00:00Z","source":""}', "source"),
        (b'{"symbol":"AAPL","price":1,"timestamp":"2026-11-24T10:00:00Z"}', "source"),
        (b"[1,2]", "object"),
        (b"not json", "JSON"),
        (b"[" * 30_000, "JSON"),
        (b'{"pad":"' + b"x" * 70_000 + b'"}', "exceeds"),
        (body(price='"1.5"'), "JSON number"),
        (body(price="true"), "JSON number"),
        (b'{"symbol":"AAPL","x":' + b"[" * 40 + b"]" * 40 + b"}", "nests 41 levels"),
        (body()[:-1] + b',"id":"1-2"}', "reserved"),
    ],
)
def test_invalid_ticks_are_refused_saying_what_is_wrong(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidTickError, match=problem):
        PriceTick.decode(data)


def test_timestamps_accept_rfc3339_utc_forms() -> None:
    for stamp in ("2026-11-24T10:00:00Z", "2026-11-24T10:00:00.5+00:00", "2026-11-24t10:00:00z"):
        data = b'{"symbol":"A","price":1,"timestamp":"%s","source":"p"}' % stamp.encode()
        assert PriceTick.decode(data).timestamp.tzinfo is not None
