"""Two checks of one fact: what a tick is. PriceTick decides; the gateway's hot-path check
(`tick_verdict`, through `framer.inspect`) must give the same answer on the same bytes.

The inputs are ticks and near-misses of each field, written the ways JSON allows: the
publisher's compact form, spaces, escapes, reordered or repeated keys, nested look-alikes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from contracts.errors import InvalidTickError
from contracts.messages import _RFC3339_UTC, MAX_TICK_BYTES, PriceTick, tick_verdict, utc_timestamp
from contracts.symbols import subject_for, subject_token
from gateway.feed.framer import inspect
from publisher.ticks import PriceWalk

T = TypeVar("T")
TICK = (
    b'{"symbol":"AAPL","price":189.23,"timestamp":"2026-11-24T10:00:00.123456Z","source":"pub-1"}'
)


def mostly(good: st.SearchStrategy[T], bad: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`good` four times in five: each part of a payload is a near-miss now and then."""
    return st.integers(0, 4).flatmap(lambda n: bad if n == 0 else good)


def decimal_text(units: int, fraction_digits: int) -> str:
    """`units` / 10**fraction_digits written out exactly, without an exponent."""
    whole, fraction = divmod(units, 10**fraction_digits)
    return f"{whole}.{fraction:0{fraction_digits}d}"


symbols = mostly(
    st.from_regex(r"\A[A-Z0-9][A-Z0-9.-]{0,15}\Z"),
    st.sampled_from(["aapl", "Brk.b", "BRK_B", "", "A*", ".A", "A" * 17, "\u0131", "AAPL "]),
)
prices = mostly(
    st.one_of(
        st.integers(1, 10**12 - 1).map(str),
        st.builds(decimal_text, st.integers(1, 10**18 - 1), st.integers(1, 6)),
    ),
    st.one_of(
        st.builds(decimal_text, st.integers(1, 10**12), st.integers(7, 9)),
        st.sampled_from(
            [
                "0",
                "0.0",
                "-1.5",
                "1.0000001",  # 7 fraction digits
                "1.5000000",  # 7, but trailing zeros: 1.5 to the contract
                "1.50000000000000001",  # more digits than a float keeps
                "0.000001",
                "0.0000001",
                "1e2",
                "1E-7",
                "1.5e-6",
                "123456789012.123456",
                "123456789012.1234567",
                "1234567890123",
                "1e400",
                "NaN",
                "Infinity",
                "true",
                "null",
                '"12.5"',
                "[1]",
                "99999999999999999999999",
            ]
        ),
    ),
)


def _written(moment: datetime, digits: int, zone: str) -> str:
    """`moment` in RFC 3339 form with `digits` fraction digits and `zone` after them."""
    text = moment.isoformat(timespec="microseconds")  # YYYY-MM-DDTHH:MM:SS.ffffff
    return text[:19] + ("." + text[20 : 20 + digits] if digits else "") + zone


moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))
timestamps = mostly(
    st.builds(_written, moments, st.integers(0, 6), st.sampled_from(["Z", "+00:00", "-00:00"])),
    st.one_of(
        st.builds(
            _written,
            moments,
            st.integers(0, 6),
            st.sampled_from(["z", "+01:00", "", "+0000", "Z ", "-00:01"]),
        ),
        st.sampled_from(
            [
                "2026-11-24T10:00:00.1234567Z",  # 7 fraction digits
                "2026-11-24t10:00:00.123456z",
                "2026-11-24 10:00:00.123456Z",
                "2026-11-24T10:00Z",
                "2026-11-24",
                "2026-02-30T10:00:00.000000Z",
                "2026-11-24T24:00:00.000000Z",
                "2026-W47-2T10:00:00.12345Z",
                "20261124T100000.123456Z",
                "0000-01-01T00:00:00.000000Z",
                "2026-11-24T10:00:00,123456Z",
                "\u0662026-11-24T10:00:00.123456Z",
            ]
        ),
        st.integers(0, 2**40).map(str),
    ),
)
sources = mostly(
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"),
    st.sampled_from(["", "-pub", "pub 1", "p" * 65, "p\u00e9"]),
)
extras: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.sampled_from(["venue", "note", "id", "price", "symbol", "pr\\u0069ce", "x"]),
    st.one_of(
        st.text(max_size=8),
        st.sampled_from(['"price":1.5', '\\"', "\u00e9", "price"]),
        st.just({"price": 1.5}),
        st.integers(-(2**70), 2**70),
        st.lists(st.integers(0, 3), max_size=3),
    ),
    max_size=3,
)


@st.composite
def payloads(draw: st.DrawFn) -> tuple[bytes, str]:
    """A JSON text that may or may not be a tick, and the subject it was stored on."""
    symbol = draw(symbols)
    # Each value as JSON text; the price is JSON text already (its digits are the point).
    fields: list[tuple[str, str]] = [
        ("symbol", json.dumps(symbol) if draw(st.integers(0, 9)) else "1"),
        ("price", draw(prices)),
        ("timestamp", json.dumps(draw(timestamps))),
        ("source", json.dumps(draw(sources))),
    ]
    # Missing fields, another order, extras (which may repeat, shadow or nest a field;
    # a key may be written with an escape).
    fields = [field for field in fields if draw(st.integers(0, 9))]
    if draw(st.booleans()):
        fields = list(draw(st.permutations(fields)))
    for key, value in draw(mostly(st.just({}), extras)).items():
        fields.insert(draw(st.integers(0, len(fields))), (key, json.dumps(value)))
    colon, comma = draw(st.sampled_from([(":", ","), (": ", ", "), (" : ", " ,")]))
    text = "{" + comma.join(f'"{key}"{colon}{value}' for key, value in fields) + "}"
    stored_on = subject_token(symbol.upper()) if symbol else "AAPL"
    subject = draw(mostly(st.just(f"prices.{stored_on}"), st.just("prices.MSFT")))
    return text.encode(), subject


def contract_says_tick(payload: bytes, subject: str) -> bool:
    try:
        tick = PriceTick.decode(payload)
    except InvalidTickError:
        return False
    return subject_for(tick.symbol) == subject


@settings(max_examples=2000)
@given(case=payloads())
@example(case=(TICK, "prices.AAPL"))
@example(case=(TICK.replace(b"189.23", b"189.2300001"), "prices.AAPL"))
@example(case=(TICK.replace(b"189.23", b"189.23000000"), "prices.AAPL"))
@example(case=(TICK.replace(b"189.23", b"189.23000000000000001"), "prices.AAPL"))
@example(case=(TICK.replace(b"00.123456Z", b"00.1234567Z"), "prices.AAPL"))
@example(case=(TICK.replace(b"Z", b"+01:00"), "prices.AAPL"))
@example(case=(TICK.replace(b"AAPL", b"aapl"), "prices.AAPL"))
@example(case=(TICK.replace(b"189.23", b"true"), "prices.AAPL"))
@example(case=(TICK.replace(b"189.23", b"NaN"), "prices.AAPL"))
@example(case=(TICK[:-1] + b',"id":"1-2"}', "prices.AAPL"))
@example(case=(TICK.replace(b',"source":"pub-1"', b""), "prices.AAPL"))
@example(case=(TICK.replace(b"pub-1", b"-pub"), "prices.AAPL"))
@example(case=(TICK.replace(b'"price":', b'"price" :'), "prices.AAPL"))
@example(case=(TICK[:-1] + b',"x":"\\ud800"}', "prices.AAPL"))
@example(case=(TICK[:-1] + b',"x":123456789012345678901234567890}', "prices.AAPL"))
@example(case=(TICK[:-1] + b',"pr\\u0069ce":1.1234567}', "prices.AAPL"))
def test_the_hot_path_check_and_price_tick_agree(case: tuple[bytes, str]) -> None:
    payload, subject = case
    forwarded = inspect(payload, subject, MAX_TICK_BYTES) is None
    assert forwarded == contract_says_tick(payload, subject), payload


@given(st.integers(0, 10_000))
@settings(max_examples=50)
def test_the_publishers_ticks_never_need_price_tick_on_the_hot_path(seed: int) -> None:
    walk = PriceWalk(["AAPL", "BRK.B", "X-1"], "pub-1", seed=seed)
    for symbol in ("AAPL", "BRK.B", "X-1"):
        payload = walk.tick(symbol).encode()
        assert tick_verdict(orjson.loads(payload), payload) is True, payload


def test_the_tick_written_by_encode_is_taken_without_price_tick() -> None:
    tick = PriceTick.validate_object(
        {
            "symbol": "BRK.B",
            "price": 412.12,
            "timestamp": datetime(2026, 11, 24, tzinfo=UTC),
            "source": "pub-1",
        }
    )
    payload = tick.encode()
    assert tick_verdict(orjson.loads(payload), payload) is True


def by_the_pattern(text: str) -> datetime | None:
    """utc_timestamp without its shortcut for the written form."""
    if _RFC3339_UTC.fullmatch(text) is None:
        return None
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError:
        return None


# Strings shaped like the written form (its separators where they go), with anything
# that could fool a check of the separators alone in the other places.
written_like = (
    st.lists(st.sampled_from(list("0123456789 +-:.TZtz\u0662\uff11")), min_size=27, max_size=27)
    .map(lambda chars: "".join(chars))
    .map(
        lambda text: (
            text[:4]
            + "-"
            + text[5:7]
            + "-"
            + text[8:10]
            + "T"
            + text[11:13]
            + ":"
            + text[14:16]
            + ":"
            + text[17:19]
            + "."
            + text[20:26]
            + "Z"
        )
    )
)


@settings(max_examples=1000)
@given(text=st.one_of(written_like, timestamps))
@example(text="2026-11-24T10:00:00.12345 Z")
@example(text="2026-11-24T10:00:00.1234\uff11Z")
@example(text="2026-11-24T10:00:00.123456Z")
def test_the_shortcut_for_the_written_timestamp_agrees_with_the_pattern(text: str) -> None:
    assert utc_timestamp(text) == by_the_pattern(text)
