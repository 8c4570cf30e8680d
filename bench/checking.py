"""Exactly-once checks: what each connection received against what was published.

The publisher reports every stored tick as (key, symbol), where the key is what the
event id carries: the stream sequence for the gateway, the publisher's counter for the
naive baseline. A connection must get, for each of its symbols, every published key of
that symbol from the first one it received (the snapshot of the latest price, or the
first live one) onwards, once, and nothing of other symbols. Events of one connection
must also come in key order (the contract: a connection's events come in stream order).

A conflated connection (`?conflate=<ms>`) is judged by `ConflatedCheck` instead: every
event is a stored tick of its symbols, ids strictly increase along the connection, a
symbol's consecutive events go out at least the interval apart, less a stated tolerance
(judged from the loader's receive times and the ticks' publish times), and once publishing
stops the last published tick of each of its symbols arrives. The ticks it skipped are
counted as `conflated_away`, not lost.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, fields


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
    # Conflated connections only:
    conflated_away: int = 0  # ticks of its symbols replaced by a later one before being sent
    too_soon: int = 0  # a symbol's events surely sent closer than the interval less tolerance
    gaps_under: int = 0  # ... received closer than that (also when the loader read late)
    min_gap_ms: float | None = None  # the closest two events of one symbol came (receive time)

    def add(self, other: Tally) -> None:
        for field in fields(self):
            name = field.name
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "min_gap_ms":
                gaps = [g for g in (mine, theirs) if g is not None]
                setattr(self, name, min(gaps) if gaps else None)
            else:
                setattr(self, name, mine + theirs)


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

    def advance(
        self,
        keys: array[int],
        log: PublishedLog,
        times: array[float] | None = None,
        stamps: array[float] | None = None,
    ) -> None:
        """Judge the keys received since the last call (`times`, `stamps`: unused, as the
        exact check has no timing rule)."""
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


class ConflatedCheck:
    """One conflated connection's check: `interval` and `tolerance` in seconds.

    `times[i]` is the loader's receive time of `keys[i]` (epoch seconds, one per socket
    read), `stamps[i]` its tick's publish time (the `timestamp` field; same host, same
    clock). For consecutive events A, B of a symbol the gateway sent B at most
    `times[B] - stamps[A]` after A (it cannot have sent A before A was published, nor B
    after it arrived), so `times[B] - stamps[A] < interval - tolerance` proves B went too
    soon: `too_soon`, whatever the loader's lag. The plain receive-time gap
    `times[B] - times[A]` below `interval - tolerance` is `gaps_under`: the same rule
    judged by receive time alone, which a loader reading late (two events of a symbol in
    one read) also produces. The closest receive-time gap is kept as `min_gap_ms`.
    """

    __slots__ = (
        "checked",
        "conflated_away",
        "duplicated",
        "first",
        "gaps_under",
        "interval",
        "last",
        "last_key_of",
        "last_time_of",
        "lost",
        "min_gap",
        "out_of_order",
        "published_at_of",
        "symbols",
        "tolerance",
        "too_soon",
        "unexpected",
    )

    def __init__(self, symbols: frozenset[int], interval: float, tolerance: float) -> None:
        self.symbols = symbols
        self.interval = interval
        self.tolerance = tolerance
        self.last_key_of: dict[int, int] = {}  # per symbol: the last key received
        self.last_time_of: dict[int, float] = {}  # per symbol: when it was received
        self.published_at_of: dict[int, float] = {}  # per symbol: when that was published
        self.checked = 0
        self.first: int | None = None
        self.last = 0
        self.min_gap = math.inf
        self.lost = self.duplicated = self.out_of_order = self.unexpected = 0
        self.conflated_away = self.too_soon = self.gaps_under = 0

    def advance(
        self,
        keys: array[int],
        log: PublishedLog,
        times: array[float] | None = None,
        stamps: array[float] | None = None,
    ) -> None:
        """Judge the keys received since the last call; `times` and `stamps` are required."""
        assert times is not None
        assert stamps is not None
        symbol_of = log.symbol_of
        checked = self.checked
        new = zip(keys[checked:], times[checked:], stamps[checked:], strict=True)
        for key, at, stamp in new:
            symbol = symbol_of.get(key)
            if symbol is None and key > log.last_key:
                break  # published after the log was sent: judged at the next check
            checked += 1
            if symbol is None or symbol not in self.symbols:
                self.unexpected += 1
            elif self._in_order(key):
                self._judge_symbol(symbol, key, (at, stamp), log.by_symbol[symbol])
        self.checked = checked

    def _in_order(self, key: int) -> bool:
        """Ids strictly increase along the connection: a repeat is a duplicate, a smaller
        one out of order (neither is judged further)."""
        if self.first is None:
            self.first = key
        if key == self.last:
            self.duplicated += 1
            return False
        if key < self.last:
            self.out_of_order += 1
            return False
        self.last = key
        return True

    def _judge_symbol(
        self, symbol: int, key: int, when: tuple[float, float], published: list[int]
    ) -> None:
        """`when`: this event's receive time and its tick's publish time."""
        at, stamp = when
        previous = self.last_key_of.get(symbol)
        if previous is not None:
            # Ticks of the symbol strictly between the previous event and this one.
            self.conflated_away += bisect_left(published, key) - bisect_right(published, previous)
            least = self.interval - self.tolerance
            gap = at - self.last_time_of[symbol]
            self.min_gap = min(self.min_gap, gap)
            self.gaps_under += gap < least
            self.too_soon += at - self.published_at_of[symbol] < least
        self.last_key_of[symbol] = key
        self.last_time_of[symbol] = at
        self.published_at_of[symbol] = stamp

    def tally(self, log: PublishedLog, end: int, *, final: bool, closed: bool) -> Tally:
        """Totals; an open connection is due the last published tick of each of its symbols
        (`end` is unused: the log holds every tick up to its last key). Pending until
        `final`, then undelivered. A closed connection is due nothing more."""
        missing = 0
        if not closed:
            for symbol in self.symbols:
                published = log.by_symbol.get(symbol)
                if published and self.last_key_of.get(symbol, 0) < published[-1]:
                    missing += 1
        return Tally(
            connections=1,
            silent=int(self.first is None),
            received=self.checked,
            lost=self.lost,
            pending=0 if final else missing,
            undelivered=missing if final else 0,
            duplicated=self.duplicated,
            out_of_order=self.out_of_order,
            unexpected=self.unexpected,
            conflated_away=self.conflated_away,
            too_soon=self.too_soon,
            gaps_under=self.gaps_under,
            min_gap_ms=None if math.isinf(self.min_gap) else round(self.min_gap * 1000, 1),
        )
