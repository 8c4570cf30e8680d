"""Exactly-once checks: what each connection received against what was published.

The publisher reports every stored tick as (key, symbol), where the key is what the
event id carries: the stream sequence for the gateway, the publisher's counter for the
naive baseline. A connection must get, for each of its symbols, every published key of
that symbol from the first one it received (the snapshot of the latest price, or the
first live one) onwards, once, and nothing of other symbols. Events of one connection
must also come in key order (the contract: a connection's events come in stream order).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass


class PublishedLog:
    """Every key published so far, by symbol, in key order."""

    def __init__(self) -> None:
        self.symbol_of: dict[int, int] = {}
        self.by_symbol: dict[int, list[int]] = {}
        self.last_key = 0

    def extend(self, ticks: Iterable[tuple[int, int]]) -> None:
        for key, symbol in sorted(ticks):
            self.symbol_of[key] = symbol
            keys = self.by_symbol.setdefault(symbol, [])
            if keys and keys[-1] > key:
                keys.insert(bisect_left(keys, key), key)
            else:
                keys.append(key)
            self.last_key = max(self.last_key, key)


@dataclass
class Tally:
    """Totals over connections; `lost`, `duplicated` and `unexpected` must be 0."""

    connections: int = 0
    silent: int = 0  # connections that received no event at all
    received: int = 0
    lost: int = 0  # keys skipped: a later key of the symbol came, or the client left after it
    pending: int = 0  # keys not received yet by an open connection
    undelivered: int = 0  # keys an open connection still had not received when we stopped waiting
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0  # keys of another symbol, or never published

    def add(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class DeliveryCheck:
    """One connection's check, advanced incrementally over its received keys."""

    __slots__ = (
        "checked",
        "duplicated",
        "first",
        "last",
        "lost",
        "next_index",
        "out_of_order",
        "symbols",
        "unexpected",
    )

    def __init__(self, symbols: frozenset[int]) -> None:
        self.symbols = symbols
        self.next_index: dict[int, int] = {}  # per symbol: index of the next expected key
        self.checked = 0  # keys examined so far
        self.first: int | None = None
        self.last = 0
        self.lost = self.duplicated = self.out_of_order = self.unexpected = 0

    def advance(self, keys: array[int], log: PublishedLog) -> None:
        symbol_of = log.symbol_of
        by_symbol = log.by_symbol
        checked = self.checked
        for key in keys[checked:]:
            symbol = symbol_of.get(key)
            if symbol is None and key > log.last_key:
                break  # published after the log was sent: judged at the next check
            checked += 1
            if symbol is None or symbol not in self.symbols:
                self.unexpected += 1
                continue
            if self.first is None:
                self.first = key
            if key <= self.last:
                self.out_of_order += 1
            else:
                self.last = key
            published = by_symbol[symbol]
            index = self.next_index.get(symbol)
            if index is None:  # its first event of this symbol
                self.next_index[symbol] = bisect_left(published, key) + 1
            elif index < len(published) and published[index] == key:
                self.next_index[symbol] = index + 1
            elif key > published[index - 1]:  # keys were skipped
                skipped_to = bisect_left(published, key)
                self.lost += skipped_to - index
                self.next_index[symbol] = skipped_to + 1
            else:
                self.duplicated += 1
        self.checked = checked

    def tally(self, log: PublishedLog, end: int, *, final: bool, closed: bool) -> Tally:
        """Totals up to key `end`. Keys missing up to `end` are lost for a closed connection
        (it received `end`, which came after them), else pending, or undelivered if `final`."""
        missing = 0
        if self.first is not None:
            for symbol in self.symbols:
                published = log.by_symbol.get(symbol, [])
                index = self.next_index.get(symbol)
                if index is None:  # none received: everything after the first event is due
                    index = bisect_left(published, self.first)
                missing += max(0, bisect_right(published, end) - index)
        return Tally(
            connections=1,
            silent=int(self.first is None),
            received=self.checked,
            lost=self.lost + (missing if closed else 0),
            pending=0 if final or closed else missing,
            undelivered=missing if final and not closed else 0,
            duplicated=self.duplicated,
            out_of_order=self.out_of_order,
            unexpected=self.unexpected,
        )
