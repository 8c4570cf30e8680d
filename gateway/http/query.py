"""Parse a /stocks request into what to stream: which symbols, from which position."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers, QueryParams

from contracts.errors import ContractError
from contracts.event_ids import EventPosition, parse_event_id
from contracts.symbols import normalize_symbol
from gateway.errors import BadRequestError

# Names under which clients commonly put a token in a URL: refused, not ignored.
TOKEN_PARAMETERS = frozenset({"access_token", "token", "jwt", "id_token"})


@dataclass(frozen=True, slots=True)
class StreamQuery:
    """A validated /stocks request. `symbols` is None for every symbol."""

    symbols: tuple[str, ...] | None
    position: EventPosition | None


def parse_symbols(values: list[str], max_symbols: int) -> tuple[str, ...] | None:
    """Comma-separated, repeatable, case-insensitive; duplicates collapse; none means all."""
    if not values:
        return None
    symbols: dict[str, None] = {}
    for value in values:
        for raw in value.split(","):
            try:
                symbols[normalize_symbol(raw.strip())] = None
            except ContractError as exc:
                raise BadRequestError(str(exc)) from None
            if len(symbols) > max_symbols:
                raise BadRequestError(
                    f"too many symbols: at most {max_symbols} per request, got more "
                    f"(the {max_symbols + 1}th is {raw.strip()!r})"
                )
    return tuple(symbols)


def parse_query(query: QueryParams, headers: Headers, max_symbols: int) -> StreamQuery:
    """Validate the whole request before the first byte; raise BadRequestError naming the value."""
    if found := sorted(TOKEN_PARAMETERS.intersection(query)):
        raise BadRequestError(
            f"query parameter {found[0]!r}: tokens are not accepted in the query string, where "
            "they end up in logs; send 'Authorization: Bearer' or the cookie"
        )
    symbols = parse_symbols(query.getlist("symbols"), max_symbols)
    # The header wins: it is what EventSource sends on its own reconnects.
    raw_id = headers.get("last-event-id") or query.get("lastEventId")
    try:
        position = parse_event_id(raw_id) if raw_id else None
    except ContractError as exc:
        raise BadRequestError(str(exc)) from None
    return StreamQuery(symbols, position)
