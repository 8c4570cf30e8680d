"""Authorization of a /stocks request: the symbols asked for against the token's grant."""

from __future__ import annotations

from gateway.auth.grants import Grant
from gateway.errors import ForbiddenError
from gateway.http.page import StoredSymbols
from gateway.http.query import StreamQuery


async def authorize(query: StreamQuery, grant: Grant, stored: StoredSymbols) -> StreamQuery:
    """The query as the grant allows it; raises ForbiddenError naming a symbol it does not.

    A request for every symbol means every symbol the token allows: all of them for `*`,
    else its symbols plus the stored symbols its patterns match (a symbol first published
    later joins on the next connection).
    """
    if query.symbols is not None:
        if denied := grant.denied(query.symbols):
            raise ForbiddenError(
                f"your token does not allow {', '.join(map(repr, denied))}", denied
            )
        return query
    if grant.everything:
        return query
    allowed = set(grant.symbols)
    if grant.prefixes:
        allowed.update(s for s in await stored.get() if s.startswith(grant.prefixes))
    if not allowed:
        raise ForbiddenError(
            f"your token allows no symbol that has a price yet (it allows {grant.describe()})",
            [],
        )
    return StreamQuery(tuple(sorted(allowed)), query.position)
