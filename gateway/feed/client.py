"""One client's events: from its own consumer until it has caught up, then from the live
feed, spliced by stream sequence so that nothing is skipped or repeated.

The client's outbox joins the live feed *before* its consumer is created, so everything
the feed hands over from then on is kept for it (one that starts from the feed's memory,
gateway.feed.recent, needs no consumer: its backlog goes into the outbox first). Once the
consumer has delivered up to where the outbox begins (gateway.feed.catch_up), it is
deleted and the client is live; events the feed hands over late that the client had are
skipped by sequence. A live client that overflows its outbox goes back to a consumer of
its own: JetStream holds the backlog, not the gateway. What the outbox lets through is
its policy's (gateway.feed.outbox; with conflation the consumer's events go too).

Which of these a client is in is gateway.feed.splice's table; this class reports events
to it and acts on the state it returns. Reading the outbox once live, the steady state,
is gateway.feed.reader's.
"""

from __future__ import annotations

import asyncio
import logging
import math

from gateway.errors import NatsUnavailableError, StreamEndedError
from gateway.feed.catch_up import CatchUp, CatchUps
from gateway.feed.live import LiveFeed
from gateway.feed.outbox import LiveEvent, Policy, keep
from gateway.feed.reader import OutboxReader
from gateway.feed.recent import Backlog
from gateway.feed.resume import Start
from gateway.feed.splice import CATCHING_UP, CAUGHT_UP, END, ENDED, LIVE, OVERFLOWED, WAIT
from gateway.feed.writes import IDLE, Frames
from gateway.metrics import Metrics

logger = logging.getLogger(__name__)


class ClientFeed(OutboxReader):
    """`async with ClientFeed(...)`: inside the block the client's outbox is on the live
    feed, and its consumer exists at most; both are released however the block exits."""

    __slots__ = ("_backlog", "_catch_up", "_catch_ups", "_live", "client_id", "start")

    def __init__(
        self,
        client_id: str,
        start: Start,
        catch_ups: CatchUps,
        live: LiveFeed | None,
        outbox: Policy | None,
        metrics: Metrics,
        *,
        catch_up: CatchUp | None = None,
        backlog: Backlog | None = None,
    ) -> None:
        """`catch_up`: the consumer it starts from (`live` None: that serves it for good);
        else `backlog`: the client starts from it. `catch_ups` makes it a consumer if it
        falls behind later."""
        super().__init__(outbox, metrics, start.after)
        self._backlog = backlog
        self.client_id = client_id
        self.start = start
        # Only while it catches up: a live client keeps none (~0.4 KB with its factory).
        self._catch_up = catch_up
        self._catch_ups = catch_ups
        self._live = live

    async def __aenter__(self) -> ClientFeed:
        if self._live is not None and self._outbox is not None:
            # Before the consumer exists: the outbox must cover everything it will not.
            self._join(self._live, self._outbox)
        try:
            if self._catch_up is not None:
                await self._catch_up.open()
        except BaseException:
            self._leave_live()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._leave_live()
        catch_up, self._catch_up = self._catch_up, None
        if catch_up is not None:
            await catch_up.close()

    def _join(self, live: LiveFeed, outbox: Policy) -> None:
        backlog, self._backlog = self._backlog, None
        if backlog is not None and backlog.through != live.position:
            # Taken and joined with no await between them; else events could fall between.
            raise NatsUnavailableError("the live feed moved on while the stream opened")
        outbox.reader = self
        live.subscribe(outbox)
        if backlog is not None:  # no consumer: the backlog, then the feed
            keep(outbox, backlog.events)
        elif (catch_up := self._catch_up) is not None:
            catch_up.live_from = live.position  # everything after is in the outbox
            catch_up.cut = bool(live.delay)

    def _leave_live(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._live is not None and self._outbox is not None:
            self._live.unsubscribe(self._outbox)
            self._outbox.reader = None  # it refers back to this feed

    @property
    def consumer_name(self) -> str | None:
        return None if self._catch_up is None else self._catch_up.consumer_name

    def stop(self, reason: str) -> None:
        """End the feed: the pending or next `next_frames` raises StreamEndedError."""
        self._splice.handle(END, reason)
        if self._catch_up is not None:
            self._catch_up.stop(reason)
        self._wake.set()

    def repull(self) -> None:
        if self._catch_up is not None:
            self._catch_up.repull()

    def opening(self) -> Frames | None:
        """A feed started from memory goes live at once, and its backlog is the first
        write: returned here, to go out with the response head in one write. None for a
        feed with a consumer to read, an ended one, or nothing to send yet: `next_frames`
        does the rest. What `next_frames` would do first, with no await in between."""
        if self._splice.state is not CATCHING_UP or self._catch_up is not None:
            return None
        outbox = self._outbox
        assert outbox is not None  # a feed with no consumer is served by the live feed
        self._splice.handle(CAUGHT_UP)
        outbox.live = True
        if outbox.overflowed:
            return None  # next_frames falls back to a consumer
        return self._release(asyncio.get_running_loop().time())

    async def next_frames(self, heartbeat: float) -> Frames | None:
        """The next write; None once `heartbeat` seconds have passed since the last one
        with nothing to send; IDLE while live with nothing to send (see `idle_wait`).
        Raises StreamEndedError once the stream has ended."""
        loop = asyncio.get_running_loop()
        while True:
            left = self.last_write + heartbeat - loop.time()
            state = self._splice.state
            if state is CATCHING_UP:
                frames = await self._from_consumer(left)
            elif state is LIVE:
                frames = await self._from_live(left)
            else:
                raise StreamEndedError(self._splice.reason)
            if frames is not None or loop.time() - self.last_write >= heartbeat:
                return frames

    async def _from_consumer(self, timeout: float) -> Frames | None:
        catch_up, outbox = self._catch_up, self._outbox
        if catch_up is None or catch_up.consumer is None:
            await self._go_live()  # nothing to catch up on: the backlog is the start
            return None
        pours = outbox is not None and outbox.takes_catch_up
        if self._timer is not None:  # the outbox releases more then
            timeout = min(timeout, self._timer.when() - asyncio.get_running_loop().time())
        try:
            events: list[LiveEvent] = []
            caught_up = await self._caught_up(catch_up, catch_up.pending)
            if not caught_up:
                events, pending = await catch_up.read(max(0.0, timeout), every_timestamp=pours)
                caught_up = await self._caught_up(catch_up, pending)
        except StreamEndedError as end:
            self._splice.handle(END, str(end))  # the consumer's own failure, or the stop
            raise StreamEndedError(self._splice.reason) from None
        frames = None
        if outbox is not None and pours:
            keep(outbox, events)
        elif events:
            self._last_sequence = events[-1].sequence
            frames = Frames.of(events)
        if caught_up:
            await self._go_live()
        if pours:
            through = math.inf if self._splice.state is LIVE else catch_up.consumed
            frames = self._release(asyncio.get_running_loop().time(), through)
        return frames

    async def _caught_up(self, catch_up: CatchUp, pending: int) -> bool:
        """Whether the client has caught up with its outbox, its consumer having reported
        `pending` more to deliver."""
        outbox = self._outbox
        if outbox is None or not catch_up.caught_up(pending, outbox):
            return False
        if catch_up.consumed >= catch_up.live_from:
            return True
        # Nothing pending, short of where the client joined the live feed. The consumer
        # reads its own replica's copy of the stream, which may not have the newest
        # messages yet: caught up only if none of the client's lies in between.
        return not await self._stored_in_between(catch_up, outbox.subjects)

    async def _stored_in_between(self, catch_up: CatchUp, subjects: tuple[str, ...] | None) -> bool:
        """Whether a message of `subjects` is stored after the consumer's last and up to
        where the client joined the live feed (True while that cannot be known)."""
        live = self._live
        assert live is not None  # an outbox is on a live feed
        after, through = catch_up.consumed, catch_up.live_from
        if live.recent.holds_after(after):
            held = live.recent.after(after, subjects, math.inf)
            if held is not None and (not held or held[0].sequence > through):
                return False  # the feed handed over none: none is stored
        try:  # the stream's leader knows (and what the feed holds may have been purged)
            return await live.stored_between(subjects, after, through)
        except NatsUnavailableError:
            return True  # asked again after the next read

    async def _go_live(self) -> None:
        outbox = self._outbox
        assert outbox is not None
        self._splice.handle(CAUGHT_UP)
        outbox.live = True
        catch_up, self._catch_up = self._catch_up, None
        if catch_up is not None:
            await catch_up.close()  # its job is done; the live feed carries the client

    async def _fall_back(self) -> None:
        """Back to a consumer of its own, from the event after the last one sent."""
        live, outbox = self._live, self._outbox
        assert live is not None
        assert outbox is not None
        self._splice.handle(OVERFLOWED)
        after = self._last_sequence
        catch_up = self._catch_up = self._catch_ups.new(
            self.client_id, outbox.subjects, self.start.incarnation, after
        )
        outbox.restart()  # buffering again, before the consumer exists
        self._join(live, outbox)
        try:
            await catch_up.restart(after)
        except NatsUnavailableError as exc:
            self.stop(str(exc))
        if self._splice.state is ENDED:  # also: stopped while the consumer was created
            self.stop(self._splice.reason or "")
            raise StreamEndedError(self._splice.reason)
        self._metrics.live_fallbacks.inc()
        logger.info("client fell behind the live feed", extra={"client": self.client_id})

    async def _from_live(self, timeout: float) -> Frames | None:
        outbox = self._outbox
        assert outbox is not None
        if outbox.overflowed:  # it refuses events now: back to a consumer, at once
            await self._fall_back()
            return None
        if (frames := self._release(asyncio.get_running_loop().time())) is not None:
            return frames
        if timeout <= 0:
            return None  # a heartbeat is due
        # No timer per wait: the live feed's flush wakes it (or writes for it) when
        # events are due, the hub's sweep when a heartbeat is due.
        self._wake.clear()
        self._splice.handle(WAIT)
        return IDLE
