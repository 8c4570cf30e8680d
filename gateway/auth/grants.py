"""What a token allows: the symbols of its `symbols` claim, until it expires.

An entry of the claim is a symbol (`AAPL`, `BRK.B`), a prefix pattern ending in `*`
(`BRK.*`, `US-*`), or `*` alone for every symbol. Entries are case-insensitive, like
the symbols of a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contracts.errors import ContractError
from contracts.symbols import SYMBOL_PATTERN, normalize_symbol
from gateway.delivery import CONFLATE, DELAY, EXACT, Delivery, whole

MAX_ENTRIES = 10_000


class InvalidGrantError(ValueError):
    """The `symbols` claim is not a list of symbols and patterns; the message says why."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One verified token: who, which symbols, and until when (epoch seconds)."""

    subject: str
    symbols: frozenset[str]
    prefixes: tuple[str, ...]  # "" matches every symbol
    expires_at: float
    floor: Delivery = EXACT  # the least conflation and delay its streams get

    @property
    def everything(self) -> bool:
        return "" in self.prefixes

    def allows(self, symbol: str) -> bool:
        """True when the (canonical) symbol is granted, exactly or by a pattern."""
        return symbol in self.symbols or symbol.startswith(self.prefixes)

    def denied(self, symbols: Iterable[str]) -> list[str]:
        """The symbols of a request this grant does not allow, in request order."""
        return [symbol for symbol in symbols if not self.allows(symbol)]

    def describe(self) -> str:
        """The grant as the claim would list it, for messages."""
        entries = sorted(self.symbols) + [prefix + "*" for prefix in self.prefixes]
        return ", ".join(entries) or "no symbol"


def parse_grant(subject: str, claim: object, expires_at: float) -> Grant:
    """A Grant from a token's `symbols` claim: a list of entries, or one string of entries
    separated by spaces or commas (the style of OAuth scopes)."""
    if isinstance(claim, str):
        entries: list[object] = list(claim.replace(",", " ").split())
    elif isinstance(claim, list):
        entries = claim
    else:
        raise InvalidGrantError("the symbols claim must be a list of symbols and patterns")
    if len(entries) > MAX_ENTRIES:
        raise InvalidGrantError(f"the symbols claim has more than {MAX_ENTRIES} entries")
    symbols: set[str] = set()
    prefixes: set[str] = set()
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidGrantError(f"symbols claim entry {entry!r} is not a string")
        if entry.endswith("*"):
            prefixes.add(_prefix(entry))
        else:
            try:
                symbols.add(normalize_symbol(entry))
            except ContractError:
                raise InvalidGrantError(
                    f"symbols claim entry {entry!r} is neither a symbol nor a pattern"
                ) from None
    return Grant(subject, frozenset(symbols), tuple(sorted(prefixes)), expires_at)


def parse_floor(claims: Mapping[str, object]) -> Delivery:
    """The `conflate` (ms) and `delay` (s) claims, floors for every stream of the token."""
    try:
        return Delivery(
            whole("conflate", claims.get("conflate", 0), CONFLATE),
            whole("delay", claims.get("delay", 0), DELAY),
        )
    except ValueError as exc:
        raise InvalidGrantError(f"claim {exc}") from None


def _prefix(entry: str) -> str:
    prefix = entry[:-1].upper()
    # A prefix is a symbol cut short: it must be able to start a valid symbol.
    if prefix and SYMBOL_PATTERN.fullmatch(prefix + "A") is None:
        raise InvalidGrantError(f"symbols claim pattern {entry!r} cannot match any symbol")
    return prefix
