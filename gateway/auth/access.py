"""Authorization of a /stocks request: the symbols asked for against the token's grant."""

from __future__ import annotations

from gateway.auth.grants import Grant
from gateway.broker.symbols import StoredSymbols
from gateway.errors import ForbiddenError


async def allowed_symbols(
    symbols: tuple[str, ...] | None, grant: Grant, stored: StoredSymbols
) -> tuple[str, ...] | None:
    """The symbols to stream as the grant allows them (None: every symbol); raises
    ForbiddenError naming a symbol it does not allow.

    A request for every symbol means every symbol the token allows: all of them for `*`,
    else its symbols plus the stored symbols its patterns match (a symbol first published
    later joins on the next connection).
    """
    if symbols is not None:
        if denied := grant.denied(symbols):
            raise ForbiddenError(
                f"your token does not allow {', '.join(map(repr, denied))}", denied
            )
        return symbols
    if grant.everything:
        return None
    allowed = set(grant.symbols)
    if grant.prefixes:
        allowed.update(s for s in await stored.get() if s.startswith(grant.prefixes))
    if not allowed:
        raise ForbiddenError(
            f"your token allows no symbol that has a price yet (it allows {grant.describe()})",
            [],
        )
    return tuple(sorted(allowed))
