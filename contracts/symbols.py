"""Symbol grammar and the symbol <-> subject mapping."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

from contracts.errors import InvalidSymbolError, TooManySymbolsError

SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9.-]{0,15}")
DEFAULT_SUBJECT_PREFIX = "prices"


def normalize_symbol(raw: str) -> str:
    """Return the canonical (upper-case) symbol, or raise InvalidSymbolError naming `raw`."""
    symbol = raw.upper()
    if SYMBOL_PATTERN.fullmatch(symbol) is None:
        raise InvalidSymbolError(
            f"invalid symbol {raw!r}: expected 1-16 characters of A-Z, 0-9, '.' and '-', "
            "starting with a letter or digit"
        )
    return symbol


def parse_symbols(
    lists: Iterable[str], *, max_symbols: int | None = None, skip_blank: bool = False
) -> tuple[str, ...]:
    """Canonical symbols of comma-separated lists, in order, without repeats.

    Raises InvalidSymbolError naming the first invalid item (a blank one too, unless
    `skip_blank`), or TooManySymbolsError naming the first beyond `max_symbols`.
    """
    symbols: dict[str, None] = {}
    for text in lists:
        for raw in text.split(","):
            item = raw.strip()
            if skip_blank and not item:
                continue
            # Interned, as subjects are: a gateway keeps them per client for as long as
            # its stream is open, and every client of a symbol then shares one string.
            symbols[sys.intern(normalize_symbol(item))] = None
            if max_symbols is not None and len(symbols) > max_symbols:
                raise TooManySymbolsError(
                    f"too many symbols: at most {max_symbols}, got more "
                    f"(the {max_symbols + 1}th is {item!r})"
                )
    return tuple(symbols)


def subject_token(symbol: str) -> str:
    """The subject token of a canonical symbol: `BRK_B` for `BRK.B`."""
    # '.' separates NATS subject tokens, and '_' is outside the symbol grammar, so the
    # mapping is reversible.
    return symbol.replace(".", "_")


def subject_for(symbol: str, prefix: str = DEFAULT_SUBJECT_PREFIX) -> str:
    """The subject a valid, normalised symbol is published on: `prices.BRK_B` for `BRK.B`."""
    return sys.intern(f"{prefix}.{subject_token(symbol)}")


def symbol_for(subject: str, prefix: str = DEFAULT_SUBJECT_PREFIX) -> str:
    """The symbol of a price subject; raises InvalidSymbolError for any other subject."""
    head, dot, token = subject.partition(".")
    if head != prefix or not dot or "." in token:
        raise InvalidSymbolError(f"subject {subject!r} is not a price subject under {prefix!r}")
    symbol = normalize_symbol(token.replace("_", "."))
    if subject_token(symbol) != token:  # `prices.aapl` is not where AAPL's prices are
        raise InvalidSymbolError(f"subject {subject!r} is not the subject of {symbol!r}")
    return symbol


def all_subjects(prefix: str = DEFAULT_SUBJECT_PREFIX) -> str:
    """The wildcard covering every symbol's subject."""
    return f"{prefix}.>"
