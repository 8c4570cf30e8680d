"""The price tick: the body of every message on a price subject."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import simplejson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)

from contracts.errors import InvalidSymbolError, InvalidTickError
from contracts.symbols import SYMBOL_PATTERN, normalize_symbol

# RFC 3339 in UTC: a 'Z' or a zero offset, seconds, and at most microseconds.
_RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]00:00)", re.IGNORECASE)
# The price as written in a payload that `tick_verdict` takes without asking PriceTick:
# plain digits, at most 12 before the point and 6 after it, then the end of the value.
_PLAIN_PRICE = re.compile(rb'"price":(?:[1-9][0-9]{0,11}|0)(?:\.[0-9]{1,6})?(?=[,}])')
_PRICE_KEY = b'"price"'
MAX_TICK_BYTES = 64 * 1024
# Extra fields may hold structure, but no tick needs more than this; deeper is an attack
# on parsers (recursion) downstream, browsers included.
MAX_NESTING = 32
# The gateway puts the event id first in each event's data; a tick must not carry its own.
RESERVED_FIELD = "id"
SOURCE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Every publish carries it; JetStream stores a repeated id once within the duplicate window.
MSG_ID_HEADER = "Nats-Msg-Id"


def message_id(source: str, counter: int) -> str:
    """The Nats-Msg-Id of a source's `counter`-th tick; counters never repeat for a source."""
    return f"{source}:{counter}"


def utc_timestamp(text: str) -> datetime | None:
    """`text` as a UTC datetime when it is RFC 3339 UTC (seconds, at most microseconds)."""
    # The form PriceTick.encode writes is told by its separators, at a third of the cost
    # of the pattern on the gateway's hot path; fromisoformat then checks every digit.
    if not (len(text) == 27 and text[4:20:3] == "--T::." and text[26] == "Z"):
        if _RFC3339_UTC.fullmatch(text) is None:
            return None
        text = text.upper()  # fromisoformat takes neither 't' nor 'z'
    try:  # the pattern lets through days and hours that do not exist
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _parse_utc_timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        if value.utcoffset() is None or value.utcoffset().total_seconds() != 0:  # type: ignore[union-attr]
            raise ValueError("timestamp must be in UTC")
        return value.astimezone(UTC)
    if not isinstance(value, str) or (parsed := utc_timestamp(value)) is None:
        raise ValueError(
            f"timestamp {value!r} is not RFC 3339 UTC like 2026-11-24T10:00:00.123456Z"
        )
    return parsed.astimezone(UTC)


def _check_symbol(value: str) -> str:
    # Canonical as it is: the gateway forwards the publisher's bytes, so a tick of `aapl`
    # would reach browsers that know the symbol as AAPL.
    try:
        symbol = normalize_symbol(value)
    except InvalidSymbolError as exc:
        raise ValueError(str(exc)) from None
    if symbol != value:
        raise ValueError(f"symbol {value!r} must be written {symbol!r}")
    return symbol


def _json_number(value: object) -> object:
    # Lax pydantic would take "12" or true for a Decimal; the contract says JSON number.
    if isinstance(value, str | bool):
        raise ValueError(f"price must be a JSON number, not {type(value).__name__}")
    return value


Symbol = Annotated[str, AfterValidator(_check_symbol)]
# Exact decimal: at most 12 integer and 6 fraction digits, never through a binary float.
Price = Annotated[
    Decimal,
    Field(gt=0, max_digits=18, decimal_places=6, allow_inf_nan=False),
    BeforeValidator(_json_number),
    # On the wire a JSON number (never a string), whatever pydantic says of Decimal.
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 999999999999.999999}),
]
Timestamp = Annotated[datetime, BeforeValidator(_parse_utc_timestamp)]
Source = Annotated[str, Field(pattern=f"^{SOURCE_PATTERN.pattern}$")]


def nesting_depth(value: object) -> int:
    """How deeply JSON arrays and objects nest in a decoded value (a scalar is 0)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def tick_verdict(tick: dict[str, Any], payload: bytes) -> bool | None:
    """Whether `tick`, decoded from the JSON object `payload`, is a PriceTick, without
    building one: the check for every stored message on the gateway's hot path.

    True or False when certain; None when only `PriceTick.decode(payload)` can tell (a
    price with an exponent or trailing zeros, an escape anywhere in the text). The price's
    digits are read in `payload`: a float has lost them. Nesting and size are the caller's.
    """
    symbol, price, timestamp, source = (
        tick.get("symbol"),
        tick.get("price"),
        tick.get("timestamp"),
        tick.get("source"),
    )
    if not (
        isinstance(symbol, str)
        and SYMBOL_PATTERN.fullmatch(symbol) is not None
        and (type(price) is float or type(price) is int)  # not bool, which is an int
        and 0 < price < math.inf  # False for NaN too
        and isinstance(timestamp, str)
        and utc_timestamp(timestamp) is not None
        and isinstance(source, str)
        and SOURCE_PATTERN.fullmatch(source) is not None
        and RESERVED_FIELD not in tick
    ):
        return False
    # Without escapes, a lone '"price"' in the text is the top-level key (a nested key or
    # a string value would make two), so its digits follow the colon.
    if (
        0x5C in payload  # a backslash (as an int: `b"\\" in` takes ten times as long)
        or payload.count(_PRICE_KEY) != 1
        or _PLAIN_PRICE.search(payload) is None
    ):
        return None
    return True


class PriceTick(BaseModel):
    """One price of one symbol. Unknown extra fields are kept and forwarded as they came."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=False)

    symbol: Symbol = Field(description="Instrument symbol, upper case, e.g. AAPL or BRK.B")
    price: Price = Field(description="Price as a JSON number, > 0, at most 6 fraction digits")
    timestamp: Timestamp = Field(description="Tick time, RFC 3339 UTC with microseconds")
    source: Source = Field(description="Id of the publisher that produced the tick")

    @classmethod
    def validate_object(cls, obj: Any) -> PriceTick:
        """Validate a decoded JSON value; raise InvalidTickError naming what is wrong."""
        if not isinstance(obj, dict):
            raise InvalidTickError(f"a tick must be a JSON object, got {type(obj).__name__}")
        if RESERVED_FIELD in obj:
            raise InvalidTickError(f"{RESERVED_FIELD!r} is reserved: the gateway sets the event id")
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'tick'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidTickError(f"invalid tick: {problems}") from None

    @classmethod
    def decode(cls, data: bytes) -> PriceTick:
        """Parse and validate a message body; raise InvalidTickError if it is not a tick."""
        if len(data) > MAX_TICK_BYTES:
            raise InvalidTickError(f"tick of {len(data)} bytes exceeds {MAX_TICK_BYTES}")
        try:
            obj = simplejson.loads(data, use_decimal=True)
        except (ValueError, RecursionError) as exc:
            raise InvalidTickError(f"tick is not valid JSON: {str(exc)[:200]}") from None
        if (depth := nesting_depth(obj)) > MAX_NESTING:
            raise InvalidTickError(f"tick nests {depth} levels deep, more than {MAX_NESTING}")
        return cls.validate_object(obj)

    def encode(self) -> bytes:
        """Compact one-line JSON: symbol, price, timestamp, source, then the extra fields.

        The price is written with the exact digits it holds (189.230000 stays so).
        """
        fields: dict[str, Any] = {
            "symbol": self.symbol,
            "price": self.price,
            # isoformat pads the year to 4 digits, which strftime's %Y does not.
            "timestamp": self.timestamp.replace(tzinfo=None).isoformat(timespec="microseconds")
            + "Z",
            "source": self.source,
        }
        fields.update(self.model_extra or {})
        text: str = simplejson.dumps(fields, use_decimal=True, separators=(",", ":"))
        return text.encode()
