"""Every client's received history against what JetStream stored.

The truth is the stream itself, read back in full after the run (an ordered consumer
from sequence 1): a publisher killed mid-publish cannot tell what was stored, the stream
can. A client's history is the ids it received, in order, across all its reconnects: as
each reconnect carries Last-Event-ID, the whole history must be exact as if it had been
one connection (bench.checking.DeliveryCheck: for each of its symbols every stored
sequence from its first event on, once, in order, nothing of other symbols). An
`event: reset` starts a new segment, judged on its own; it is justified only when the
stream really lost the data asked for (its first sequence is past the client's last id
plus one), else it counts as a failure. Ids the stream no longer holds at the end (aged
out during a long run) are not judged.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field

from nats.js.api import DeliverPolicy
from nats.js.client import JetStreamContext

from bench.checking import DeliveryCheck, PublishedLog, Tally
from contracts.symbols import symbol_for

READ_TIMEOUT = 10.0
TRACED = 5  # clients that missed events whose connections the report lists


@dataclass
class History:
    """What one client received: segments of ids (a reset starts a new one)."""

    symbols: frozenset[str]
    segments: list[array[int]] = field(default_factory=lambda: [array("q")])
    resets: list[int] = field(default_factory=list)  # the last id received before each
    ended_early: bool = False  # the client left before the end (its due ends at its last id)
    # Per connection: the gateway's port, the sequence it resumed after (0: none), and
    # where its first event went (segment, index): for the report of a client that missed.
    connections: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def last(self) -> int | None:
        for segment in reversed(self.segments):
            if segment:
                return segment[-1]
        return None

    def received(self, key: int) -> None:
        self.segments[-1].append(key)

    def reset(self) -> None:
        self.resets.append(self.last or 0)
        self.segments.append(array("q"))

    def connected(self, port: int, after: int) -> None:
        """A connection to the gateway on `port`, resuming after sequence `after` (0: none)."""
        self.connections.append((port, after, len(self.segments) - 1, len(self.segments[-1])))

    def trace(self, most: int = 12) -> str:
        """Its last `most` connections: port, the sequence resumed after, the first event."""
        parts = []
        for port, after, segment, index in self.connections[-most:]:
            events = self.segments[segment]
            first = events[index] if index < len(events) else "nothing"
            parts.append(f":{port} {f'after {after}' if after else 'fresh'} -> {first}")
        return ", ".join(parts)

    def fresh(self) -> None:
        """A reconnect without Last-Event-ID (nothing received yet): a new segment."""
        if self.segments[-1]:
            self.segments.append(array("q"))


@dataclass
class Stored:
    """The stream's messages: sequence -> symbol index, and its first and last sequence."""

    log: PublishedLog
    index: dict[str, int]  # symbol -> the int the log uses
    first_seq: int
    last_seq: int


async def read_stored(js: JetStreamContext, stream: str, subjects: str) -> Stored:
    """Every message of the stream, read with an ordered consumer (headers only)."""
    info = await js.stream_info(stream)
    first, last = info.state.first_seq, info.state.last_seq
    index: dict[str, int] = {}
    ticks: list[tuple[int, int]] = []
    if info.state.messages:
        sub = await js.subscribe(
            subjects,
            stream=stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            headers_only=True,
        )
        try:
            while True:
                msg = await sub.next_msg(timeout=READ_TIMEOUT)
                symbol = symbol_for(msg.subject)
                number = index.setdefault(symbol, len(index))
                sequence = msg.metadata.sequence.stream
                ticks.append((sequence, number))
                if sequence >= last:
                    break
        finally:
            await sub.unsubscribe()
    log = PublishedLog()
    log.extend(ticks)
    return Stored(log, index, first, last)


@dataclass
class Verdict:
    """All histories together: `tally` must show nothing lost, duplicated, unexpected,
    out of order or undelivered, and no reset may be unjustified."""

    tally: Tally
    clients: int
    resets: int
    unjustified_resets: int
    missed: Counter[int] = field(default_factory=Counter)  # sequence -> clients missing it
    traces: list[str] = field(default_factory=list)  # the connections of the first few

    @property
    def exact(self) -> bool:
        t = self.tally
        faults = t.lost + t.duplicated + t.out_of_order + t.unexpected + t.undelivered
        return not faults and not self.unjustified_resets

    def describe(self) -> str:
        t = self.tally
        return (
            f"histories {self.clients}: {t.received} events, lost {t.lost}, duplicated "
            f"{t.duplicated}, out of order {t.out_of_order}, unexpected {t.unexpected}, "
            f"undelivered {t.undelivered}, resets {self.resets} "
            f"({self.unjustified_resets} unjustified) -> {'EXACT' if self.exact else 'NOT EXACT'}"
            + (f"; missed: {self.missed_ranges()}" if self.missed else "")
        )

    def missed_ranges(self, most: int = 8) -> str:
        """Runs of consecutive missed sequences, each with how many clients missed it."""
        runs: list[list[int]] = []
        for seq in sorted(self.missed):
            if runs and seq == runs[-1][-1] + 1:
                runs[-1].append(seq)
            else:
                runs.append([seq])
        shown = [
            (f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
            + f" ({max(self.missed[s] for s in run)} clients)"
            for run in runs[:most]
        ]
        return ", ".join(shown) + (f" and {len(runs) - most} more runs" if len(runs) > most else "")


def judge(histories: list[History], stored: Stored) -> Verdict:
    total = Tally()
    resets = unjustified = 0
    missed: Counter[int] = Counter()
    traces: list[str] = []
    for history in histories:
        tally = judge_one(history, stored)
        total.add(tally)
        if tally.lost or tally.undelivered:
            absent = missing(history, stored)
            missed.update(absent)
            if len(traces) < TRACED:
                symbols = ",".join(sorted(history.symbols))
                gone = sorted(absent)[:8]
                traces.append(f"a client of {symbols} missed {gone}: {history.trace()}")
        resets += len(history.resets)
        unjustified += sum(last + 1 >= stored.first_seq for last in history.resets)
    return Verdict(total, len(histories), resets, unjustified, missed, traces)


def missing(history: History, stored: Stored) -> set[int]:
    """The stored sequences of its symbols a client should have had and did not: for the
    report, to see where a fault lost what (the tally counts them)."""
    numbers = {stored.index[s] for s in history.symbols if s in stored.index}
    absent: set[int] = set()
    for number, segment in enumerate(history.segments):
        if not segment:
            continue
        ended = history.ended_early or number < len(history.segments) - 1
        end = max(segment) if ended else stored.log.last_key
        got = set(segment)
        first: dict[int, int] = {}  # per symbol its first event (a snapshot starts there)
        for key in segment:
            first.setdefault(stored.log.symbol_of.get(key, -1), key)
        for symbol in numbers:
            published = stored.log.by_symbol.get(symbol, [])
            start = first.get(symbol, segment[0])
            due = published[bisect_left(published, start) : bisect_right(published, end)]
            absent.update(seq for seq in due if seq not in got)
    return absent


def judge_one(history: History, stored: Stored) -> Tally:
    """One client's tally; its last segment is due everything stored up to the end unless
    it left early, earlier segments (cut by a reset) up to their own last id."""
    symbols = frozenset(stored.index.setdefault(s, len(stored.index)) for s in history.symbols)
    total = Tally(connections=0)
    for number, segment in enumerate(history.segments):
        keys = segment
        if stored.first_seq > 1:  # ids the stream no longer holds cannot be judged
            keys = array("q", (key for key in segment if key >= stored.first_seq))
        check = DeliveryCheck(symbols)
        check.advance(keys, stored.log)
        ended = history.ended_early or number < len(history.segments) - 1
        end = check.last if ended else stored.log.last_key
        total.add(check.tally(stored.log, end, final=True, closed=ended))
    total.connections = 1
    return total
