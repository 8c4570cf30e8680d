"""What a live feed handed over lately, kept for the clients that come back.

Two things, both from memory and without a JetStream call:
- the latest event of each subject (whatever its age): the start of a client with no id;
- every event of the last `seconds` (at most `max_bytes` of frames), in stream order: the
  catch-up of a client whose id falls inside it (a reconnect storm after a replica died).

The events are the feed's own `LiveEvent`s, framed once and shared: keeping them costs an
append per event, and trimming runs once per batch. Held events are contiguous: every
event the feed handed over after `since` is here.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Iterable
from operator import attrgetter
from typing import NamedTuple

from gateway.feed.outbox import LiveEvent

_SEQUENCE = attrgetter("sequence")


class Backlog(NamedTuple):
    """Where a client starts without a consumer: events from its live feed's memory (the
    latest of each symbol, or all after its id), taken when the feed was at `through`."""

    events: list[LiveEvent]
    through: int


class RecentEvents:
    """Kept by one live feed; `add` per event handed over, `trim` per batch."""

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds = seconds  # 0: the latest of each subject only
        self.max_bytes = max_bytes
        self.latest: dict[str, LiveEvent] = {}
        self.since = 0  # every event after this sequence is held, up to `position`
        self.position = 0  # the last sequence handed over
        self._reached: list[tuple[int, asyncio.Future[None]]] = []  # (sequence, waiter)
        self._events: deque[LiveEvent] = deque()
        self._by_subject: dict[str, deque[LiveEvent]] = {}
        self._marks: deque[tuple[float, int]] = deque()  # (loop time, last sequence) per batch
        self._bytes = 0

    def reset(self, position: int, latest: Iterable[LiveEvent] | None = None) -> None:
        """Hold what comes after `position` (a new stream, or a gap in the feed), with
        `latest` as the last event of their subjects (None: those known still are)."""
        if latest is not None:
            self.latest = {event.subject: event for event in latest}
        self.since = self.position = position
        self._events.clear()
        self._by_subject.clear()
        self._marks.clear()
        self._bytes = 0

    def add(self, event: LiveEvent) -> None:
        self.latest[event.subject] = event
        if not self.seconds:
            return
        self._events.append(event)
        self._bytes += len(event.frame)
        if (of_subject := self._by_subject.get(event.subject)) is None:
            of_subject = self._by_subject[event.subject] = deque()
        of_subject.append(event)

    def trim(self, now: float, position: int) -> None:
        """After a batch handed over up to `position` at loop time `now`: forget what is
        older than `seconds`, or past `max_bytes`."""
        self.position = position
        if self._reached:
            self._wake_reached()
        if not self.seconds:
            self.since = position
            return
        marks = self._marks
        marks.append((now, position))
        while marks and marks[0][0] < now - self.seconds:
            self._forget_through(marks.popleft()[1])
        events = self._events
        while self._bytes > self.max_bytes and events:
            self._forget_through(events[0].sequence)

    def _forget_through(self, sequence: int) -> None:
        events, by_subject = self._events, self._by_subject
        while events and events[0].sequence <= sequence:
            event = events.popleft()
            self._bytes -= len(event.frame)
            of_subject = by_subject[event.subject]
            of_subject.popleft()  # the oldest of its subject, too: both are in order
            if not of_subject:
                del by_subject[event.subject]
        self.since = max(self.since, sequence)

    async def reached(self, sequence: int, timeout: float) -> bool:
        """Whether the feed has handed over `sequence` within `timeout` seconds (a client
        that comes from a replica a little ahead of this one)."""
        if sequence <= self.position:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._reached.append((sequence, waiter))
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            # Rare (a storm's waiters are woken in bulk); a wake may have dropped it already.
            self._reached = [(s, w) for s, w in self._reached if w is not waiter]
            return False
        return True

    def _wake_reached(self) -> None:
        waiting = []
        for sequence, waiter in self._reached:
            if waiter.done():
                continue  # its client went away
            if sequence <= self.position:
                waiter.set_result(None)
            else:
                waiting.append((sequence, waiter))
        self._reached = waiting

    def holds_after(self, sequence: int) -> bool:
        """Whether every event after `sequence` (up to the feed's position) is here."""
        return sequence >= self.since

    def after(
        self, sequence: int, subjects: tuple[str, ...] | None, budget: float
    ) -> list[LiveEvent] | None:
        """The events of `subjects` (None: all) after `sequence`, oldest first; None when
        they are not all held, or their frames come to more than `budget` bytes."""
        if sequence < self.since:
            return None
        if subjects is None:
            found = _tail(self._events, sequence)
        else:
            tails = [_tail(self._by_subject.get(subject), sequence) for subject in subjects]
            found = tails[0] if len(tails) == 1 else list(heapq.merge(*tails, key=_SEQUENCE))
        return found if _fits(found, budget) else None

    def latest_of(
        self, subjects: tuple[str, ...] | None, budget: float, first: int = 0
    ) -> list[LiveEvent] | None:
        """The latest event of each of `subjects` (None: all) still stored (from sequence
        `first` on: not purged or aged out), oldest first; None when they come to more than
        `budget` bytes."""
        latest = self.latest
        wanted = latest.values() if subjects is None else filter(None, map(latest.get, subjects))
        found = sorted((e for e in wanted if e.sequence >= first), key=_SEQUENCE)
        return found if _fits(found, budget) else None


def _tail(events: deque[LiveEvent] | None, sequence: int) -> list[LiveEvent]:
    """The events after `sequence`, walked from the newest: a resume is usually recent."""
    found: list[LiveEvent] = []
    for event in reversed(events or ()):
        if event.sequence <= sequence:
            break
        found.append(event)
    found.reverse()
    return found


def _fits(events: list[LiveEvent], budget: float) -> bool:
    total = 0
    for event in events:
        total += len(event.frame)
        if total > budget:
            return False
    return True
