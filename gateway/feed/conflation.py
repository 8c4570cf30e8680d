"""Conflation: at most one event per symbol per interval, the latest value winning.

A `ConflatingOutbox` keeps one slot per subject, so a client that reads slowly costs
the same memory at 10 ticks/s as at 10,000: it never overflows and never falls back to
a consumer of its own. A slot is released when its subject's interval since its last
release has passed; a tick after a quiet spell therefore goes at once, and the latest
tick of every subject within one interval of its arrival.

Ids must still increase along the connection (a client resumes from its last one), so a
due slot is held back while an earlier slot of another subject is not due yet: it goes
with that one, at most one interval after it arrived.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from gateway.feed.outbox import LiveEvent, Reader
from gateway.metrics import Metrics


class ConflatingOutbox:
    """The conflating policy (gateway.feed.outbox.Policy) for `subjects` (None: all)."""

    # What the client's consumer delivers goes through it too.
    takes_catch_up: ClassVar[bool] = True

    __slots__ = (
        "_interval",
        "_metrics",
        "_replaced",
        "_sent_at",
        "_slots",
        "due",
        "live",
        "overflowed",
        "reader",
        "subjects",
    )

    def __init__(self, subjects: tuple[str, ...] | None, interval: float, metrics: Metrics) -> None:
        self.subjects = subjects
        self._interval = interval
        self._metrics = metrics
        self._replaced = 0  # counted here per event, into the metric per release (cheaper)
        self._slots: dict[str, LiveEvent] = {}  # subject -> its latest event not sent yet
        self._sent_at: dict[str, float] = {}  # subject -> loop time of its last release
        self.due = False
        self.live = False  # (conflation treats catching up and live alike)
        self.overflowed = False  # never: one slot per subject is its bound
        self.reader: Reader | None = None

    def offer(self, event: LiveEvent) -> bool:
        slots = self._slots
        held = slots.get(event.subject)
        if held is not None:
            if held.sequence >= event.sequence:
                return False  # an older one, from the other source of a splice
            self._replaced += 1
        slots[event.subject] = event
        if self.due:
            return False
        self.due = True
        return True

    def release(
        self, after: int, now: float, through: float = math.inf
    ) -> tuple[Sequence[LiveEvent], float | None]:
        slots = self._slots
        if self._replaced:
            self._metrics.events_conflated.inc(self._replaced)
            self._replaced = 0
        if not slots:
            return (), None
        interval = self._interval
        sent_at = self._sent_at
        ready: list[LiveEvent] = []
        first_held = math.inf  # the earliest sequence that must wait
        next_at: float | None = None
        for subject, event in list(slots.items()):
            if event.sequence <= after:
                del slots[subject]  # the client was sent it (or a later one) already
                continue
            if event.sequence > through:
                # While catching up, its consumer may still deliver an earlier event.
                first_held = min(first_held, event.sequence)
                continue
            at = sent_at.get(subject, -math.inf) + interval
            if at <= now:
                ready.append(event)
            else:
                first_held = min(first_held, event.sequence)
                next_at = at if next_at is None else min(next_at, at)
        ready = sorted((e for e in ready if e.sequence < first_held), key=_sequence)
        for event in ready:
            del slots[event.subject]
            sent_at[event.subject] = now
        return ready, next_at

    def covers_after(self, sequence: int) -> bool:
        return True  # it drops nothing it would need later: the latest of each subject stays

    def restart(self) -> None:
        pass  # never asked to: it does not overflow


def _sequence(event: LiveEvent) -> int:
    return event.sequence
