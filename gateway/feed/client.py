"""One client's events: from its own consumer until it has caught up, then from the live
feed, spliced by stream sequence so that nothing is skipped or repeated.

The splice: the client subscribes to the live feed *before* its consumer is created, so
every message the live feed hands over from then on is buffered. Its consumer delivers
from the client's start position, and reports after each message how many it still has
pending. When that reaches 0 at sequence S, every message of the client's subjects up to
S came through the consumer, and every later one is (or will be) in the buffer: the
client deletes its consumer and goes live, skipping buffered events up to S (the live
feed may hand some of those over only later, as it can lag behind the consumer). If the buffer
had to drop events past S (a long catch-up), it keeps reading its consumer instead.

A live client that falls behind its buffer's bound goes back to a consumer of its own,
from the sequence after its last event: JetStream holds the backlog, not the gateway.

A live client whose task is waiting, on a connection that can take bytes now, is written
to by the live feed's flush itself (`deliver_now`): no task switch per client and write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from gateway.broker.consumer import PullConsumer, delivery
from gateway.errors import StreamEndedError
from gateway.feed import sse
from gateway.feed.framer import TickFramer
from gateway.feed.live import Subscriber
from gateway.feed.resume import Start
from gateway.metrics import Metrics

logger = logging.getLogger(__name__)

# (deliver policy, start sequence) -> a consumer of the client's subjects, not yet created.
ConsumerFactory = Callable[[DeliverPolicy, int | None], PullConsumer]


class DirectSink(Protocol):
    """A sink that can take a write at once, without waiting (the connection itself)."""

    @property
    def ready(self) -> bool:
        """True when a write now would not have to wait (open, buffer under its mark)."""

    def write_now(self, body: bytes) -> None: ...


@dataclass(slots=True)
class Frames:
    """What one write carries."""

    body: bytes
    events: int
    published: float | None  # timestamp of the oldest tick in it


class ClientFeed:
    """`async with ClientFeed(...)`: the client's consumer exists inside the block at most."""

    # One per open stream, for as long as it is open.
    __slots__ = (
        "_catching_up",
        "_direct",
        "_framer",
        "_id_prefix",
        "_last_sequence",
        "_last_write",
        "_metrics",
        "_open_consumer",
        "_parked",
        "_stopped",
        "_subscriber",
        "_writer",
        "_writing_since",
        "client_id",
        "consumer",
        "sent",
        "start",
        "too_slow",
    )

    def __init__(
        self,
        client_id: str,
        start: Start,
        open_consumer: ConsumerFactory,
        subscriber: Subscriber | None,
        metrics: Metrics,
        framer: TickFramer,
    ) -> None:
        self.client_id = client_id
        self.start = start
        self._open_consumer = open_consumer
        # None while live: a closed consumer and its spec would stay for the whole stream.
        self.consumer: PullConsumer | None = open_consumer(start.deliver_policy, start.sequence)
        self._subscriber = subscriber  # None: served by its own consumer for good
        self._metrics = metrics
        self._framer = framer
        self._id_prefix = f"{start.incarnation}-".encode()
        self._last_sequence = 0 if start.sequence is None else start.sequence - 1
        self._catching_up = True
        self._stopped: str | None = None  # why, as text (see PullConsumer._failure)
        self._writer: asyncio.Task[object] | None = None
        self._writing_since: float | None = None
        self._last_write = 0.0
        self.too_slow = False  # set by the sweep when it cancels a stuck write
        self.sent = 0  # events written
        self._direct: DirectSink | None = None
        self._parked = False  # the writer task waits for live events

    async def __aenter__(self) -> ClientFeed:
        assert self.consumer is not None
        await self.consumer.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._subscriber is not None:
            self._subscriber.deliver = None  # it refers back to this feed
        if self.consumer is not None:
            await self.consumer.close()

    def write_directly(self, sink: DirectSink) -> None:
        """Let the live feed write due events to `sink` itself while the writer waits."""
        self._direct = sink
        if self._subscriber is not None:
            self._subscriber.deliver = self.deliver_now

    @property
    def live(self) -> bool:
        return not self._catching_up

    def stop(self, reason: str) -> None:
        """End the feed: the pending or next `next_frames` raises StreamEndedError(reason)."""
        if self._stopped is None:
            self._stopped = reason
        if self.consumer is not None:
            self.consumer.stop(reason)
        if self._subscriber is not None:
            self._subscriber.wake.set()

    def repull(self) -> None:
        if self._catching_up and self.consumer is not None:
            self.consumer.repull()

    async def next_frames(self, timeout: float) -> Frames | None:
        """The next write, waiting up to `timeout`; None when nothing came in time."""
        if self._stopped is not None:
            raise StreamEndedError(self._stopped)
        if self._catching_up:
            assert self.consumer is not None  # there is one while catching up
            if self._can_go_live(self.consumer.initial_pending):
                await self._go_live()  # nothing to catch up on
            else:
                return await self._from_consumer(timeout)
        return await self._from_live(timeout)

    async def _from_consumer(self, timeout: float) -> Frames | None:
        assert self.consumer is not None
        batch = await self.consumer.next_batch(timeout)
        if not batch:
            return None
        body, pending = self._frame(batch)
        published = sse.published_at(batch[0].data)
        if self._can_go_live(pending):
            await self._go_live()
        return Frames(body, len(batch), published)

    def _can_go_live(self, pending: int) -> bool:
        """Nothing left for the consumer, and the buffer holds everything after it."""
        subscriber = self._subscriber
        return (
            pending == 0
            and subscriber is not None
            and subscriber.dropped_through <= self._last_sequence
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
        subscriber = self._subscriber
        assert subscriber is not None
        subscriber.discard_through(self._last_sequence)
        subscriber.live = True
        self._catching_up = False
        consumer, self.consumer = self.consumer, None
        assert consumer is not None
        await consumer.close()  # its job is done; the live feed carries the client

    async def _fall_back(self) -> None:
        """Back to a consumer of its own, from the event after the last one sent."""
        subscriber = self._subscriber
        assert subscriber is not None
        subscriber.reset()  # buffering again, before the consumer exists
        self.consumer = consumer = self._open_consumer(
            DeliverPolicy.BY_START_SEQUENCE, self._last_sequence + 1
        )
        await consumer.__aenter__()
        self._catching_up = True
        self._metrics.live_fallbacks.inc()
        logger.info("client fell behind the live feed", extra={"client": self.client_id})

    async def _from_live(self, timeout: float) -> Frames | None:
        subscriber = self._subscriber
        assert subscriber is not None
        if not subscriber.events:
            # No timer per wait: the live feed's flush wakes it (or writes for it)
            # when events are due, the hub's sweep when a heartbeat is due.
            subscriber.wake.clear()
            self._parked = True
            try:
                await subscriber.wake.wait()
            finally:
                self._parked = False
        if self._stopped is not None:
            raise StreamEndedError(self._stopped)
        if subscriber.ended is not None:
            raise StreamEndedError(subscriber.ended)
        if subscriber.overflowed:
            await self._fall_back()
            return await self._from_consumer(timeout)
        return self._take_live(subscriber)

    def _take_live(self, subscriber: Subscriber) -> Frames | None:
        """The buffered events after the last one sent, as one write; None if none."""
        # The live feed may lag behind the consumer the client caught up with: events it
        # hands over late may already have been sent.
        subscriber.discard_through(self._last_sequence)
        if not subscriber.events:
            return None
        events = subscriber.take()
        self._last_sequence = events[-1].sequence
        return Frames(b"".join([event.frame for event in events]), len(events), events[0].published)

    def count_sent(self, frames: Frames) -> None:
        """Account for a write: the stream's count, the events metric and the lag."""
        self.sent += frames.events
        self._metrics.events_sent.inc(frames.events)
        if frames.published is not None:
            lag = max(0.0, time.time() - frames.published)
            self._metrics.publish_to_send_seconds.observe(lag)

    def deliver_now(self, now: float) -> bool:
        """Write the subscriber's due events to the sink here and now, in the live feed's
        flush; False when the writer task must do it (it is busy, the feed is ending or
        falling back, or the connection cannot take bytes now): the flush wakes it."""
        subscriber = self._subscriber
        direct = self._direct
        if (
            not self._parked
            or self._stopped is not None
            or subscriber is None
            or subscriber.ended is not None
            or subscriber.overflowed
            or direct is None
            or not direct.ready
        ):
            return False
        if (frames := self._take_live(subscriber)) is not None:
            direct.write_now(frames.body)
            self._last_write = now
            self.count_sent(frames)
        return True

    # The write watch. Writes are timed by a once-a-second sweep of all feeds rather than
    # by a timer per write (timers were a quarter of the gateway's CPU under load).

    def writing(self, now: float) -> None:
        self._writing_since = now

    def written(self, now: float) -> None:
        self._writing_since = None
        self._last_write = now

    def sweep(self, now: float, heartbeat: float, send_timeout: float) -> None:
        """Cut off a write stuck for `send_timeout`; wake a live client due a heartbeat."""
        if self._writing_since is not None:
            if now - self._writing_since > send_timeout and self._writer is not None:
                self.too_slow = True
                self._writer.cancel()
        elif self.live and now - self._last_write >= heartbeat and self._subscriber:
            self._subscriber.wake.set()

    def attach_writer(self, task: asyncio.Task[object] | None, now: float) -> None:
        self._writer = task
        self._last_write = now
