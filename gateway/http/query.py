"""Parse a /stocks request into what to stream: which symbols, from which position, and
how (every tick, conflated, delayed)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers, QueryParams

from contracts.errors import ContractError
from contracts.event_ids import EventPosition, parse_event_id
from contracts.symbols import parse_symbols
from gateway.delivery import CONFLATE, DELAY, EXACT, Delivery, whole
from gateway.errors import BadRequestError

# Names under which clients commonly put a token in a URL: refused, not ignored.
TOKEN_PARAMETERS = frozenset({"access_token", "token", "jwt", "id_token"})


@dataclass(frozen=True, slots=True)
class StreamQuery:
    """A validated /stocks request. `symbols` is None for every symbol."""

    symbols: tuple[str, ...] | None
    position: EventPosition | None
    delivery: Delivery = EXACT


def refuse_token_parameters(query: QueryParams) -> None:
    """Raise BadRequestError for a token parameter, in any letter case. Checked before
    authentication: the token in the URL is already in a log, whether or not it is valid,
    and the client must learn that rather than what the token was worth."""
    if found := sorted(name for name in query if name.lower() in TOKEN_PARAMETERS):
        raise BadRequestError(
            f"query parameter {found[0]!r}: tokens are not accepted in the query string, where "
            "they end up in logs; send 'Authorization: Bearer' or the cookie"
        )


def parse_query(query: QueryParams, headers: Headers, max_symbols: int) -> StreamQuery:
    """Validate the whole request before the first byte; raise BadRequestError naming the value."""
    refuse_token_parameters(query)
    # Comma-separated, repeatable, case-insensitive; duplicates collapse; none means all.
    # An empty item is refused: in a URL it is more likely a bug than a trailing comma.
    values = query.getlist("symbols")
    try:
        symbols = parse_symbols(values, max_symbols=max_symbols) if values else None
    except ContractError as exc:
        raise BadRequestError(str(exc)) from None
    # The header wins: it is what EventSource sends on its own reconnects. (getlist: a
    # Starlette get() raises and catches a KeyError for a name not given; get() is the
    # first header of a name, and the last parameter.)
    header, parameter = headers.getlist("last-event-id"), query.getlist("lastEventId")
    raw_id = (header[0] if header else None) or (parameter[-1] if parameter else None)
    try:
        position = parse_event_id(raw_id) if raw_id else None
    except ContractError as exc:
        raise BadRequestError(str(exc)) from None
    return StreamQuery(symbols, position, _delivery(query))


def _delivery(query: QueryParams) -> Delivery:
    seconds = []
    for name, scale in (("conflate", CONFLATE), ("delay", DELAY)):
        values = query.getlist(name)
        if len(values) > 1:
            raise BadRequestError(f"{name} given {len(values)} times; give it once")
        try:
            seconds.append(whole(name, values[0], scale) if values else 0.0)
        except ValueError as exc:
            raise BadRequestError(str(exc)) from None
    # Most streams ask for every tick: one Delivery for them all (kept while they last).
    return Delivery(*seconds) if any(seconds) else EXACT
