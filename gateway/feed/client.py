"""One client's events: from its own consumer until it has caught up, then from the live
feed, spliced by stream sequence so that nothing is skipped or repeated.

The splice: the client's outbox joins the live feed *before* its consumer is created, so
every message the live feed hands over from then on is buffered. The consumer delivers
from the client's start position and reports, with each message, how many it still has
pending. When that reaches 0 at sequence S, every message of the client's subjects up to
S came through the consumer, and every later one is (or will be) in the outbox: the
consumer is deleted and the client goes live, skipping buffered events up to S (the live
feed may hand some of those over only later, as it can lag behind the consumer). If the
outbox had to drop events past S (a long catch-up), the client keeps reading its consumer.

A live client that falls behind its outbox's bound goes back to a consumer of its own,
from the sequence after its last event: JetStream holds the backlog, not the gateway.

Which of these a client is in is gateway.feed.splice's table; this class reports events
to it and acts on the state it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType

from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from gateway.broker.consumer import PullConsumer, delivery
from gateway.errors import NatsUnavailableError, StreamEndedError
from gateway.feed import sse
from gateway.feed.framer import TickFramer
from gateway.feed.live import LiveFeed
from gateway.feed.outbox import Outbox
from gateway.feed.resume import Start
from gateway.feed.splice import (
    CATCHING_UP,
    CAUGHT_UP,
    END,
    ENDED,
    LIVE,
    OVERFLOWED,
    WAIT,
    WAITING,
    WOKEN,
    Splice,
    State,
)
from gateway.feed.writes import DirectSink, Frames
from gateway.metrics import Metrics
from gateway.wakeup import Wakeup

logger = logging.getLogger(__name__)

# (deliver policy, start sequence) -> a consumer of the client's subjects, not yet created.
ConsumerFactory = Callable[[DeliverPolicy, int | None], PullConsumer]


class ClientFeed:
    """`async with ClientFeed(...)`: inside the block the client's outbox is on the live
    feed, and its consumer exists at most; both are released however the block exits."""

    # One per open stream, for as long as it is open.
    __slots__ = (
        "_direct",
        "_framer",
        "_id_prefix",
        "_last_sequence",
        "_live",
        "_metrics",
        "_open_consumer",
        "_outbox",
        "_splice",
        "_wake",
        "client_id",
        "consumer",
        "last_write",
        "sent",
        "start",
    )

    def __init__(
        self,
        client_id: str,
        start: Start,
        open_consumer: ConsumerFactory,
        live: LiveFeed | None,
        outbox: Outbox | None,
        metrics: Metrics,
        framer: TickFramer,
    ) -> None:
        self.client_id = client_id
        self.start = start
        self._open_consumer = open_consumer
        # None while live: a closed consumer and its spec would stay for the whole stream.
        self.consumer: PullConsumer | None = open_consumer(start.deliver_policy, start.sequence)
        self._live = live  # None (with its outbox): served by its own consumer for good
        self._outbox = outbox
        self._metrics = metrics
        self._framer = framer
        self._id_prefix = f"{start.incarnation}-".encode()
        self._last_sequence = 0 if start.sequence is None else start.sequence - 1
        self._splice = Splice()
        self._wake = Wakeup()  # only the writer task waits on it
        self._direct: DirectSink | None = None
        self.last_write = 0.0  # loop time, for the heartbeat
        self.sent = 0  # events written

    async def __aenter__(self) -> ClientFeed:
        live, outbox, consumer = self._live, self._outbox, self.consumer
        assert consumer is not None
        if live is not None and outbox is not None:
            # Before the consumer exists: the outbox must cover everything it will not.
            outbox.reader = self
            live.subscribe(outbox)
        try:
            await consumer.__aenter__()
        except BaseException:
            self._leave_live()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave_live()
        if self.consumer is not None:
            await self.consumer.close()

    def _leave_live(self) -> None:
        if self._live is not None and self._outbox is not None:
            self._live.unsubscribe(self._outbox)
            self._outbox.reader = None  # it refers back to this feed

    @property
    def state(self) -> State:
        return self._splice.state

    def write_directly(self, sink: DirectSink) -> None:
        """Let the live feed's flush write due events to `sink` while the writer waits."""
        self._direct = sink

    def stop(self, reason: str) -> None:
        """End the feed: the pending or next `next_frames` raises StreamEndedError."""
        self._splice.handle(END, reason)
        if self.consumer is not None:
            self.consumer.stop(reason)
        self._wake.set()

    def repull(self) -> None:
        if self.consumer is not None:
            self.consumer.repull()

    async def next_frames(self, timeout: float) -> Frames | None:
        """The next write, waiting up to `timeout` while catching up; None when a
        heartbeat is due instead. Raises StreamEndedError once the stream has ended."""
        if self._splice.state is CATCHING_UP:
            assert self.consumer is not None  # there is one while catching up
            if not self._caught_up(self.consumer.initial_pending):
                return await self._from_consumer(timeout)
            await self._go_live()  # nothing to catch up on
        if self._splice.state is LIVE:
            return await self._from_live(timeout)
        raise StreamEndedError(self._splice.reason)

    async def _from_consumer(self, timeout: float) -> Frames | None:
        consumer = self.consumer
        if consumer is None or self._splice.state is ENDED:
            raise StreamEndedError(self._splice.reason)
        try:
            batch = await consumer.next_batch(timeout)
        except StreamEndedError as end:
            self._splice.handle(END, str(end))  # the consumer's own failure, or the stop
            raise StreamEndedError(self._splice.reason) from None
        if not batch:
            return None
        body, pending = self._frame(batch)
        published = sse.published_at(batch[0].data)
        if self._caught_up(pending):
            await self._go_live()
        return Frames(body, len(batch), published)

    def _caught_up(self, pending: int) -> bool:
        """Nothing left for the consumer, and the outbox holds everything after it."""
        outbox = self._outbox
        return (
            pending == 0
            and outbox is not None
            and self._live is not None
            and outbox.covers_after(self._last_sequence)
        )

    def _frame(self, batch: list[Msg]) -> tuple[bytes, int]:
        frames = []
        digits, pending = b"0", 0
        for msg in batch:
            digits, pending = delivery(msg.reply)
            frames.append(self._framer.frame(self._id_prefix + digits, msg.data, msg.subject))
        self._last_sequence = int(digits)
        return b"".join(frames), pending

    async def _go_live(self) -> None:
        outbox = self._outbox
        assert outbox is not None
        self._splice.handle(CAUGHT_UP)
        outbox.discard_through(self._last_sequence)
        outbox.live = True
        consumer, self.consumer = self.consumer, None
        assert consumer is not None
        await consumer.close()  # its job is done; the live feed carries the client

    async def _fall_back(self) -> None:
        """Back to a consumer of its own, from the event after the last one sent."""
        outbox = self._outbox
        assert outbox is not None
        self._splice.handle(OVERFLOWED)
        outbox.restart()  # buffering again, before the consumer exists
        consumer = self._open_consumer(DeliverPolicy.BY_START_SEQUENCE, self._last_sequence + 1)
        try:
            await consumer.__aenter__()
        except NatsUnavailableError as exc:
            self._splice.handle(END, str(exc))
            raise StreamEndedError(self._splice.reason) from None
        self.consumer = consumer
        if self._splice.state is ENDED:  # stopped while the consumer was being created
            consumer.stop(self._splice.reason or "")
        self._metrics.live_fallbacks.inc()
        logger.info("client fell behind the live feed", extra={"client": self.client_id})

    async def _from_live(self, timeout: float) -> Frames | None:
        outbox = self._outbox
        assert outbox is not None
        if not outbox.events:
            # No timer per wait: the live feed's flush wakes it (or writes for it) when
            # events are due, the hub's sweep when a heartbeat is due.
            self._wake.clear()
            self._splice.handle(WAIT)
            try:
                await self._wake.wait()
            finally:
                self._splice.handle(WOKEN)
        if self._splice.state is ENDED:
            raise StreamEndedError(self._splice.reason)
        if outbox.overflowed:
            await self._fall_back()
            return await self._from_consumer(timeout)
        return self._take_live(outbox)

    def _take_live(self, outbox: Outbox) -> Frames | None:
        """The buffered events after the last one sent, as one write; None if none."""
        # The live feed may lag behind the consumer the client caught up with: events it
        # hands over late may already have been sent.
        outbox.discard_through(self._last_sequence)
        if not outbox.events:
            return None
        events = outbox.take()
        self._last_sequence = events[-1].sequence
        return Frames(b"".join([event.frame for event in events]), len(events), events[0].published)

    def count_sent(self, frames: Frames) -> None:
        """Account for a write: the stream's count, the events metric and the lag."""
        self.sent += frames.events
        self._metrics.events_sent.inc(frames.events)
        if frames.published is not None:
            lag = max(0.0, time.time() - frames.published)
            self._metrics.publish_to_send_seconds.observe(lag)

    # outbox.Reader: called by the live feed.

    def on_due(self, now: float) -> None:
        """Events are due: written here and now while the writer waits and the connection
        can take bytes; otherwise the writer is woken to do it."""
        direct = self._direct
        outbox = self._outbox
        if (
            self._splice.state is WAITING
            and direct is not None
            and direct.ready
            and outbox is not None
            and not outbox.overflowed
        ):
            if (frames := self._take_live(outbox)) is not None:
                direct.write_now(frames.body)
                self.last_write = now
                self.count_sent(frames)
            return
        self._wake.set()

    def heartbeat_due(self, now: float, heartbeat: float) -> None:
        """The hub's sweep: wake a waiting writer that has written nothing for `heartbeat`
        (a catching-up writer times its own waits)."""
        if self._splice.state is WAITING and now - self.last_write >= heartbeat:
            self._wake.set()
