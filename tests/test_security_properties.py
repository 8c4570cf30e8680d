"""Property tests of the pure parsers that hostile input reaches first.

Each parser either returns a value that satisfies the contract or raises its documented
error naming the offending value; never anything else (no RecursionError, MemoryError,
ValueError from int(), or a hang).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ParamSpec, TypeVar

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers, QueryParams

from contracts.errors import InvalidEventIdError, InvalidSymbolError, InvalidTickError
from contracts.event_ids import (
    MAX_EVENT_ID_LENGTH,
    EventPosition,
    incarnation_of,
    parse_event_id,
)
from contracts.messages import MAX_TICK_BYTES, PriceTick
from contracts.symbols import (
    SYMBOL_PATTERN,
    normalize_symbol,
    parse_symbols,
    subject_for,
    symbol_for,
)
from gateway.errors import BadRequestError
from gateway.feed import sse
from gateway.feed.framer import inspect
from gateway.http.query import parse_query

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound=Exception)
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Text that stresses case folding and the grammar's edges, besides any text at all.
# \u0131 dotless i, \u017f long s, \ufb00 ff ligature, \u212a Kelvin sign: all upper-case to ASCII.
symbolish = st.text(alphabet="AZaz09.-_*> ,\t\x00\u0131\u017f\ufb00\u212a\xdf\u0130", max_size=20)
texts = st.one_of(st.text(), symbolish)
symbols = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9.-]{0,15}\Z")
prefixes = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,15}\Z")
incarnations = st.text(alphabet=BASE36, min_size=1, max_size=20)


def attempt(error: type[E], call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | E:
    """The result, or the documented `error`; any other exception fails the property."""
    try:
        return call(*args, **kwargs)
    except error as exc:
        return exc


# contracts.symbols


@given(raw=texts)
def test_normalize_accepts_exactly_the_grammar_after_upper_casing(raw: str) -> None:
    symbol = attempt(InvalidSymbolError, normalize_symbol, raw)
    if isinstance(symbol, InvalidSymbolError):
        assert SYMBOL_PATTERN.fullmatch(raw.upper()) is None
        assert repr(raw) in str(symbol)
        return
    assert symbol == raw.upper()
    assert SYMBOL_PATTERN.fullmatch(symbol)
    assert symbol.isascii()  # whatever Unicode went in


@given(raw=symbols, prefix=prefixes)
def test_a_symbol_and_its_subject_map_both_ways(raw: str, prefix: str) -> None:
    symbol = normalize_symbol(raw)
    subject = subject_for(symbol, prefix)
    assert subject.count(".") == 1  # one token after the prefix: no wildcard reach
    assert not set(subject) & {"*", ">", " ", "\t"}
    assert symbol_for(subject, prefix) == symbol


@given(subject=st.one_of(texts, st.builds("{}.{}".format, prefixes, texts)), prefix=prefixes)
def test_only_the_subject_of_a_symbol_maps_to_that_symbol(subject: str, prefix: str) -> None:
    symbol = attempt(InvalidSymbolError, symbol_for, subject, prefix)
    if isinstance(symbol, InvalidSymbolError):
        return
    # Otherwise /symbols would list a symbol whose own subject holds no price.
    assert subject_for(symbol, prefix) == subject


# contracts.event_ids


@given(
    created=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
    ),
    sequence=st.integers(1, 10**40),
)
def test_event_ids_round_trip(created: datetime, sequence: int) -> None:
    incarnation = incarnation_of(created)
    assert set(incarnation) <= set(BASE36)
    assert int(incarnation, 36) == (created - EPOCH) // timedelta(microseconds=1)
    position = EventPosition(incarnation, sequence)
    assert parse_event_id(str(position)) == position


@given(created=st.datetimes(max_value=datetime(1969, 12, 31), timezones=st.just(UTC)))
@settings(max_examples=20)
def test_an_incarnation_before_1970_is_still_a_token(created: datetime) -> None:
    # A server's zero time (0001-01-01) once looped forever on negative numbers.
    assert set(incarnation_of(created)) <= set(BASE36)


@given(
    raw=st.one_of(
        texts,
        st.builds("{}-{}".format, incarnations, st.integers(-5, 10**30)),
        st.integers(1, 10_000).map(lambda n: "1-" + "9" * n),
        st.builds(
            "{}-{}".format,
            incarnations,
            st.text(alphabet="0123456789\u0660\u0661\xb2\xb9 -+_", max_size=8),
        ),
    )
)
def test_parse_event_id_returns_a_position_or_names_the_text(raw: str) -> None:
    position = attempt(InvalidEventIdError, parse_event_id, raw)
    if isinstance(position, InvalidEventIdError):
        assert repr(raw[:MAX_EVENT_ID_LENGTH]) in str(position)
        return
    assert len(raw) <= MAX_EVENT_ID_LENGTH
    assert position.sequence >= 1
    assert set(position.incarnation) <= set(BASE36)
    assert parse_event_id(str(position)) == position


# contracts.symbols: lists of symbols (the /stocks query, the publisher's --symbols)


@given(
    values=st.lists(
        st.one_of(texts, st.lists(symbols, min_size=1, max_size=8).map(",".join)), max_size=6
    ),
    max_symbols=st.integers(1, 10),
    skip_blank=st.booleans(),
)
def test_parse_symbols_returns_canonical_symbols_or_names_the_bad_one(
    values: list[str], max_symbols: int, skip_blank: bool
) -> None:
    pieces = [piece.strip() for value in values for piece in value.split(",")]
    if skip_blank:
        pieces = [piece for piece in pieces if piece]
    result = attempt(
        InvalidSymbolError, parse_symbols, values, max_symbols=max_symbols, skip_blank=skip_blank
    )
    if isinstance(result, InvalidSymbolError):
        assert any(repr(piece) in str(result) for piece in pieces), (str(result), pieces)
        return
    assert result == tuple(dict.fromkeys(piece.upper() for piece in pieces))
    assert len(result) <= max_symbols
    assert all(SYMBOL_PATTERN.fullmatch(symbol) for symbol in result)


# gateway.http.query


_LATIN1 = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)


@given(
    query=st.one_of(
        st.text(max_size=200),
        st.lists(
            st.tuples(
                st.sampled_from(["symbols", "lastEventId", "token", "x", "symbols%00"]),
                st.one_of(texts, st.sampled_from(["%", "%G1", "%FF%FE", "%00", "%E2%82"])),
            ),
            max_size=5,
        ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
    ),
    header=st.one_of(st.none(), _LATIN1, st.builds("{}-{}".format, incarnations, st.integers(1))),
)
def test_parse_query_accepts_or_raises_a_bad_request(query: str, header: str | None) -> None:
    raw = [] if header is None else [(b"last-event-id", header.encode("latin-1"))]
    parsed = attempt(BadRequestError, parse_query, QueryParams(query), Headers(raw=raw), 100)
    if isinstance(parsed, BadRequestError):
        assert str(parsed)
        return
    if header:  # the header wins over the query parameter
        assert parsed.position == parse_event_id(header)


@given(
    parameters=st.lists(st.sampled_from(["", "abc-1", "abc-2"]), max_size=3),
    headers=st.lists(st.sampled_from(["", "abc-3", "abc-4"]), max_size=2),
)
def test_the_position_is_the_first_last_event_id_header_else_the_last_parameter(
    parameters: list[str], headers: list[str]
) -> None:
    query = QueryParams([("lastEventId", value) for value in parameters])
    raw = Headers(raw=[(b"last-event-id", value.encode()) for value in headers])
    given_id = raw.get("last-event-id") or query.get("lastEventId")  # Starlette's get()
    expected = parse_event_id(given_id) if given_id else None
    assert parse_query(query, raw, 100).position == expected


# gateway.feed.sse


event_ids = st.builds(lambda i, n: f"{i}-{n}".encode(), incarnations, st.integers(1, 10**20))
_EXTRA_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["\n", "\r", "\r\n", "\u2028", "\u0085", "data: x\n\nid: 1", "\n\nevent: reset\n"]
)


@st.composite
def ticks(draw: st.DrawFn) -> PriceTick:
    # "id" is reserved (the gateway sets it): a tick carrying one is refused.
    extra = draw(st.dictionaries(st.sampled_from(["note", "venue", "x"]), _EXTRA_TEXT))
    return PriceTick.validate_object(
        {
            "symbol": draw(symbols).upper(),  # as written on the wire: canonical
            "price": Decimal(draw(st.integers(1, 10**12))) / 10**6,
            "timestamp": draw(st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC))),
            "source": "pub-1",
        }
        | extra
    )


payloads = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=60).map(lambda body: b'{"' + body + b"}"),  # looks spliceable
    ticks().map(PriceTick.encode),
    ticks().map(lambda tick: json.dumps(json.loads(tick.encode()), indent=2).encode()),
    st.dictionaries(st.text(max_size=5), _EXTRA_TEXT, max_size=4).map(
        lambda obj: json.dumps(obj).encode()
    ),
)


def read_events(stream: bytes) -> list[dict[str, str]]:
    """Events as a browser's EventSource dispatches them (WHATWG HTML, 9.2.6)."""
    text = stream.decode("utf-8", errors="replace")
    events: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in re.split(r"\r\n|\r|\n", text):
        if line == "":
            if data:
                events.append(fields | {"data": "\n".join(data)})
            fields, data = {}, []
            continue
        name, colon, value = line.partition(":")
        value = value.removeprefix(" ") if colon else ""
        if name == "data":
            data.append(value)
        elif name in ("id", "event") and "\x00" not in value:
            fields[name] = value
    return events


@given(event_id=event_ids, payload=payloads)
def test_a_framed_message_is_one_event_with_its_id(event_id: bytes, payload: bytes) -> None:
    frame = sse.event_frame(event_id, payload)
    if frame is None:
        return  # not a tick: nothing is sent
    assert frame.endswith(b"\n\n")
    assert frame.count(b"\n\n") == 1
    assert b"\r" not in frame
    data_lines = [line for line in frame.split(b"\n") if line.startswith(b"data:")]
    assert len(data_lines) == 1
    (event,) = read_events(frame)
    assert event["id"] == event_id.decode()
    assert event["event"] == "stockUpdate"
    assert event["data"].startswith('{"id":"' + event_id.decode() + '",')


@given(event_id=event_ids, payload=payloads, symbol=symbols)
def test_what_reaches_a_browser_is_a_json_tick_with_its_id(
    event_id: bytes, payload: bytes, symbol: str
) -> None:
    subject = subject_for(normalize_symbol(symbol))
    if inspect(payload, subject, MAX_TICK_BYTES) is not None:
        return  # skipped as poison, a comment goes out instead
    frame = sse.event_frame(event_id, payload)
    if frame is None:
        return
    (event,) = read_events(frame)
    data = json.loads(event["data"])  # the last of duplicate keys wins, as in JSON.parse
    assert isinstance(data, dict)
    assert data["id"] == event_id.decode()
    assert subject_for(data["symbol"]) == subject


# contracts.messages


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def with_extra(value: bytes) -> bytes:
    return (
        b'{"symbol":"AAPL","price":1.5,"timestamp":"2026-11-24T10:00:00Z","source":"p","x":'
        + value
        + b"}"
    )


tick_bodies = st.one_of(
    st.binary(max_size=500),
    st.builds(nested, st.integers(10, 100_000), st.sampled_from(["array", "object"])),
    st.builds(nested, st.integers(10, 40), st.sampled_from(["array", "object"])).map(with_extra),
    st.integers(MAX_TICK_BYTES - 10, 4 * MAX_TICK_BYTES).map(
        lambda n: with_extra(b'"' + b"a" * n + b'"')
    ),
    st.sampled_from([b"1" * 5000, b"[" + b"1" * 5000 + b"]", with_extra(b"9" * 5000)]),
    st.sampled_from([b"1e999999999", b"-0", b"NaN", b"Infinity", b"1E+400", b"0.0000001"]).map(
        lambda price: with_extra(b"1").replace(b'"price":1.5', b'"price":' + price)
    ),
    ticks().map(PriceTick.encode),
)


@settings(max_examples=300)
@given(body=tick_bodies)
@example(body=nested(MAX_TICK_BYTES // 2, "array"))  # as deep as the size limit allows
@example(body=nested(MAX_TICK_BYTES // 6, "object"))
@example(body=nested(100_000, "array"))
def test_decode_accepts_a_tick_or_raises_invalid_tick(body: bytes) -> None:
    tick = attempt(InvalidTickError, PriceTick.decode, body)
    if isinstance(tick, InvalidTickError):
        assert str(tick)
        return
    assert PriceTick.decode(tick.encode()) == tick


@given(tick=ticks())
def test_encode_decode_round_trip(tick: PriceTick) -> None:
    assume(len(tick.encode()) <= MAX_TICK_BYTES)
    assert PriceTick.decode(tick.encode()) == tick


def test_a_year_before_1000_round_trips() -> None:
    body = b'{"symbol":"A","price":1,"timestamp":"0999-01-01T00:00:00Z","source":"p"}'
    tick = PriceTick.decode(body)
    assert PriceTick.decode(tick.encode()) == tick
