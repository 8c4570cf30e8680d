"""When the live feed tells the readers of due outboxes that their events are due: all of
them at once, in a flush, the next flush FLUSH_SPACING times the last one's cost after
it, at most `--coalesce`. A light load is written at once; a heavy one gathers more
events per write (docs/architecture.md, "A live tick, from NATS to the socket")."""

from __future__ import annotations

import asyncio

from gateway.feed.outbox import Policy

FLUSH_SPACING = 4.0


class Flusher:
    """The due outboxes of one live feed, and its next flush."""

    def __init__(self, coalesce: float) -> None:
        """`coalesce`: the longest spacing between flushes (0: every dispatch at once)."""
        self.due: list[Policy] = []  # the outboxes the next flush tells
        self._coalesce = coalesce
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
        # The next waits FLUSH_SPACING times this one's cost, at most --coalesce: a light
        # load is written at once, a heavy one gathers more events per write.
        self._spacing = min(self._coalesce, (loop.time() - started) * FLUSH_SPACING)

    def _wake_due(self) -> None:
        due, self.due = self.due, []
        now = asyncio.get_running_loop().time()
        for outbox in due:
            outbox.due = False
            if (reader := outbox.reader) is not None:
                reader.on_due(now)
