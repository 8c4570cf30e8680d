"""A client's outbox: its share of the live feed, between the feed and the client's writer.

This is where a delivery policy sits. The live feed offers every event of a client's
subjects to its outbox and, once per flush, tells the outbox's reader that events are
due; the reader releases them in one write. `Outbox` is the exact policy: every event,
in order, bounded in bytes. `ConflatingOutbox` (gateway.feed.conflation) sends less: one
slot per symbol, the latest value wins. Both answer the same `Policy` protocol, and the
splice does not know which one it drives.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import ClassVar, NamedTuple, Protocol


class LiveEvent(NamedTuple):
    """One stored tick, framed once; the same object goes to every outbox of its subject."""

    sequence: int
    frame: bytes
    published: float | None  # the tick's timestamp, for the lag histogram
    subject: str


class Reader(Protocol):
    """Who reads an outbox: told when its events are due, or when the feed ends it."""

    def on_due(self, now: float) -> None: ...

    def stop(self, reason: str) -> None: ...


class Policy(Protocol):
    """What the live feed and a client's feed need of an outbox, whatever its policy."""

    subjects: tuple[str, ...] | None
    reader: Reader | None
    due: bool
    live: bool
    overflowed: bool

    # True: the client's consumer offers its events here too, and `release` holds back
    # what is past `through` (its consumer's position) while it catches up.
    takes_catch_up: ClassVar[bool]

    def offer(self, event: LiveEvent) -> bool:
        """Keep `event`; True when the outbox must join the next flush's list."""

    def release(
        self, after: int, now: float, through: float = math.inf
    ) -> tuple[Sequence[LiveEvent], float | None]:
        """The events to write now, all after sequence `after` and none past `through`,
        oldest first; and the loop time at which more will be due (None: once more is
        offered)."""

    def covers_after(self, sequence: int) -> bool:
        """Whether every event after `sequence` is here or still to come (none dropped)."""

    def restart(self) -> None:
        """Keep afresh, for a client going back to catching up."""


def keep(outbox: Policy, events: Sequence[LiveEvent]) -> None:
    """Offer events a client's feed releases itself (a snapshot, its consumer's), so they
    must not leave the outbox marked for a flush whose list it is not on."""
    for event in events:
        if outbox.offer(event):
            outbox.due = False


class Outbox:
    """Every event for `subjects` (None: all), bounded by `max_bytes` of frames.

    While its client catches up (`live` False) the oldest events make room for new ones
    and `dropped_through` remembers how far: the client's own consumer still has them.
    Once live, going over the bound marks it `overflowed`: the client has fallen behind
    and goes back to a consumer of its own (the splice's OVERFLOWED).
    """

    # A catching-up client writes its consumer's events itself.
    takes_catch_up: ClassVar[bool] = False

    # One per open stream: slots, and no deque while empty (~760 B per idle client).
    __slots__ = (
        "dropped_through",
        "due",
        "events",
        "live",
        "max_bytes",
        "overflowed",
        "pending_bytes",
        "reader",
        "subjects",
    )

    def __init__(self, subjects: tuple[str, ...] | None, max_bytes: int) -> None:
        self.subjects = subjects
        self.max_bytes = max_bytes
        self.events: deque[LiveEvent] | None = None
        self.pending_bytes = 0
        self.dropped_through = 0
        self.live = False  # set by the reader as its splice goes live or falls back
        self.overflowed = False
        self.due = False  # in the live feed's list for its next flush
        self.reader: Reader | None = None

    def offer(self, event: LiveEvent) -> bool:
        """Buffer `event`; True when the outbox must join the next flush's list."""
        if self.overflowed:
            return False
        events = self.events
        if events is None:
            events = self.events = deque()
        events.append(event)
        self.pending_bytes += len(event.frame)
        if self.pending_bytes > self.max_bytes:
            if self.live:
                self.overflowed = True
            else:
                while self.pending_bytes > self.max_bytes:
                    dropped = events.popleft()
                    self.pending_bytes -= len(dropped.frame)
                    self.dropped_through = dropped.sequence
        if self.due:
            return False
        self.due = True
        return True

    def release(
        self, after: int, now: float, through: float = math.inf
    ) -> tuple[Sequence[LiveEvent], None]:
        """Everything buffered after `after`, oldest first; the outbox is empty after.
        (Only a live client releases from it: nothing is past `through` then.)"""
        # The live feed may lag behind the consumer a client caught up with: events it
        # hands over late may already have been sent.
        events = self.events
        if not events:
            self.events = None  # no deque kept while empty
            return (), None
        if events[0].sequence <= after:
            self.discard_through(after)
        self.events = None
        self.pending_bytes = 0
        return events, None

    def discard_through(self, sequence: int) -> None:
        """Forget the events the client was already sent (by its consumer)."""
        events = self.events
        while events and events[0].sequence <= sequence:
            self.pending_bytes -= len(events.popleft().frame)

    def covers_after(self, sequence: int) -> bool:
        """Whether every event after `sequence` is here or still to come (none dropped)."""
        return self.dropped_through <= sequence

    def restart(self) -> None:
        """Buffer afresh, for a client going back to catching up."""
        self.events = None
        self.pending_bytes = 0
        self.live = False
        self.overflowed = False
        self.dropped_through = 0
