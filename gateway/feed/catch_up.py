"""A client's own consumer, read until the client reaches its live feed.

It starts at the client's position (or the latest tick of each subject), frames what the
consumer delivers with the client's id prefix, and knows when the client may have caught
up: when the consumer has nothing pending, or has delivered up to where the live feed was
when the client joined it (everything after is in the client's outbox). "Nothing
pending" is the view of the consumer's replica, which may be behind: gateway.feed.client
checks that nothing of the client's is stored in between. Behind a delayed
feed nothing past that point is due yet: it is cut off, and comes through the feed.

A catch-up lasts only while its client catches up: one live client keeps none, only the
process's `CatchUps`, which makes it another if it falls behind its outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from nats.js.api import DeliverPolicy

from gateway.broker.consumer import PullConsumer
from gateway.broker.deliveries import delivery
from gateway.errors import StreamEndedError
from gateway.feed import sse
from gateway.feed.framer import TickFramer
from gateway.feed.outbox import LiveEvent, Policy
from gateway.feed.splice import FELL_BEHIND

# (deliver policy, start sequence) -> a consumer of the client's subjects, not yet created.
ConsumerFactory = Callable[[DeliverPolicy, int | None], PullConsumer]
# (client id, its subjects, deliver policy, start sequence) -> that client's consumer.
ConsumerMaker = Callable[[str, tuple[str, ...], DeliverPolicy, int | None], PullConsumer]


class CatchUps:
    """Makes clients' catch-ups: one for every client of a NATS connection."""

    __slots__ = ("_everything", "_framer", "_open")

    def __init__(
        self, open_consumer: ConsumerMaker, framer: TickFramer, everything: tuple[str, ...]
    ) -> None:
        self._open = open_consumer
        self._framer = framer
        self._everything = everything  # the subjects of a client of every symbol

    def new(
        self, client_id: str, subjects: tuple[str, ...] | None, incarnation: str, consumed: int
    ) -> CatchUp:
        """The catch-up of a client of `subjects` (None: all) on the stream of
        `incarnation`, its consumer not made yet; `consumed`: its position."""
        factory = partial(self._open, client_id, self._everything if subjects is None else subjects)
        return CatchUp(factory, self._framer, f"{incarnation}-".encode(), consumed)


class CatchUp:
    """The consumer of one client while it catches up; `consumed` is the last sequence
    it delivered (or the client's position before the first)."""

    __slots__ = (
        "_framer",
        "_open",
        "_prefix",
        "consumed",
        "consumer",
        "cut",
        "live_from",
        "pending",
    )

    def __init__(
        self, open_consumer: ConsumerFactory, framer: TickFramer, prefix: bytes, consumed: int
    ) -> None:
        self._open = open_consumer
        self._framer = framer
        self._prefix = prefix
        self.consumed = consumed
        self.consumer: PullConsumer | None = None
        self.pending = -1  # what the consumer had left to deliver after its last batch
        self.live_from = 0  # the live feed's position when the client (re)joined it
        self.cut = False  # stop at live_from: the live feed is a delayed one

    def prepare(self, policy: DeliverPolicy, sequence: int | None) -> PullConsumer:
        """The consumer to read, made (not yet created in JetStream)."""
        self.consumer = self._open(policy, sequence)
        return self.consumer

    async def open(self) -> None:
        """Create the prepared consumer in JetStream."""
        if self.consumer is not None:
            await self.consumer.__aenter__()
            self.pending = self.consumer.initial_pending

    @property
    def consumer_name(self) -> str | None:
        return self.consumer.spec.name if self.consumer else None

    async def restart(self, after: int) -> None:
        """A new consumer from the sequence after `after` (the client fell behind its
        outbox); raises NatsUnavailableError when it cannot be created."""
        self.consumed = after
        consumer = self._open(DeliverPolicy.BY_START_SEQUENCE, after + 1)
        await consumer.__aenter__()
        self.consumer = consumer
        self.pending = consumer.initial_pending

    def stop(self, reason: str) -> None:
        if self.consumer is not None:
            self.consumer.stop(reason)

    def repull(self) -> None:
        if self.consumer is not None:
            self.consumer.repull()

    async def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await consumer.close()

    def caught_up(self, pending: int, outbox: Policy) -> bool:
        """Nothing left for the consumer, and `outbox` holds everything after it. Behind
        a delayed feed, an outbox that dropped events ends the stream (FELL_BEHIND): what
        it dropped is not due on the consumer yet, and the client resumes by its id."""
        if not (pending == 0 or self.consumed >= self.live_from) or pending < 0:
            return False
        if outbox.covers_after(self.consumed):
            return True
        if self.cut:
            raise StreamEndedError(FELL_BEHIND)
        return False

    async def read(self, timeout: float, every_timestamp: bool) -> tuple[list[LiveEvent], int]:
        """The next events (waiting up to `timeout`; [] when none came), and how many the
        consumer still has pending. The first event's timestamp is always read, the
        others' only with `every_timestamp` (a parse per message)."""
        assert self.consumer is not None
        batch = await self.consumer.next_batch(timeout)
        events: list[LiveEvent] = []
        pending = 1
        for msg in batch:
            digits, pending = delivery(msg.reply)
            sequence = int(digits)
            if self.cut and sequence > self.live_from:
                pending = 0  # the rest comes through the (delayed) live feed
                break
            frame = self._framer.frame(self._prefix + digits, msg.data, msg.subject)
            published = sse.published_at(msg.data) if every_timestamp or not events else None
            events.append(LiveEvent(sequence, frame, published, msg.subject))
            self.consumed = sequence
        if batch:
            self.pending = pending
        return events, pending
