"""When the live feed tells the readers of due outboxes that their events are due: all of
them at once, in a flush, the next flush FLUSH_SPACING times the last one's cost after
it, at most `--coalesce`. A light load is written at once; a heavy one gathers more
events per write (docs/architecture.md, "A live tick, from NATS to the socket").

While many connections wait for their answer (a reconnect storm, a market's open), the
flushes yield to them: the next waits 1/STORM_SHARE times the last one's cost, whatever
`--coalesce` says, up to STORM_MOST_SPACING. The streams already open get more events
per write a little later, and the process opens the others sooner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sized

from gateway.feed.outbox import Policy

FLUSH_SPACING = 4.0
STORM_WAITING = 64  # connections waiting for their answer that make a storm
STORM_SHARE = 0.2  # of the loop, the most a storm's flushes take
STORM_MOST_SPACING = 1.0  # seconds between a storm's flushes, at most


class Flusher:
    """The due outboxes of one live feed, and its next flush."""

    def __init__(self, coalesce: float, waiting: Sized = ()) -> None:
        """`coalesce`: the longest spacing between flushes (0: every dispatch at once);
        `waiting`: the connections waiting for their answer, counted by len()."""
        self.due: list[Policy] = []  # the outboxes the next flush tells
        self._coalesce = coalesce
        self._waiting = waiting
        self._flush: asyncio.TimerHandle | None = None  # the next flush, while any is due
        self._flushed_at = 0.0  # loop time of the last flush
        self._spacing = 0.0  # seconds from one flush to the next, at least

    def schedule(self) -> None:
        """Outboxes are due: tell them now (no coalescing), or when the spacing after the
        last flush is over."""
        if not self._coalesce:
            self._wake_due()
        elif self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_at(self._flushed_at + self._spacing, self._flush_due)

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

    def _flush_due(self) -> None:
        self._flush = None
        loop = asyncio.get_running_loop()
        self._flushed_at = started = loop.time()
        self._wake_due()
        cost = loop.time() - started
        if len(self._waiting) > STORM_WAITING:
            self._spacing = min(STORM_MOST_SPACING, cost / STORM_SHARE)
        else:
            # FLUSH_SPACING times this one's cost, at most --coalesce: a light load is
            # written at once, a heavy one gathers more events per write.
            self._spacing = min(self._coalesce, cost * FLUSH_SPACING)

    def _wake_due(self) -> None:
        due, self.due = self.due, []
        now = asyncio.get_running_loop().time()
        for outbox in due:
            outbox.due = False
            if (reader := outbox.reader) is not None:
                reader.on_due(now)
