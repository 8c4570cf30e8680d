"""A client's feed wired as Hub._feed_for wires it (a real LiveFeed, real PullConsumers),
without HTTP, for the tests of gateway.feed.client; and reading it as the stream's writer
does."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from contracts.event_ids import EventPosition, incarnation_of
from contracts.symbols import all_subjects, subject_for
from gateway.broker.consumer import PullConsumer
from gateway.broker.spec import ConsumerSpec
from gateway.feed.catch_up import CatchUps
from gateway.feed.client import ClientFeed
from gateway.feed.framer import TickFramer
from gateway.feed.live import LiveFeed
from gateway.feed.outbox import Outbox
from gateway.feed.resume import resolve_start
from gateway.feed.writes import IDLE, Frames
from gateway.metrics import Metrics
from gateway.settings import Settings
from tests.feeds import STREAM, feed_settings, running_live_feed, sequences

_client_ids = itertools.count(1)


class AfterCreate(PullConsumer):
    """A client's consumer that runs `then` as soon as it exists, inside its feed's entry."""

    then: Callable[[], Awaitable[None]] | None = None

    async def __aenter__(self) -> AfterCreate:
        await super().__aenter__()
        if self.then is not None:
            await self.then()
        return self


@dataclass
class Client:
    feed: ClientFeed
    outbox: Outbox | None
    consumer: str  # its consumer's name


@dataclass
class Rig:
    """What Hub._feed_for uses: a connection, a live feed that follows the stream."""

    nc: NATS
    js: JetStreamContext
    settings: Settings
    live: LiveFeed
    metrics: Metrics  # the clients' (the live feed counts its own consumer apart)

    async def client(
        self,
        *symbols: str,
        after: int | None = None,
        shared: bool = True,
        then: Callable[[], Awaitable[None]] | None = None,
        consumer_stream: str = STREAM,
    ) -> Client:
        """A client's feed, not entered yet: of `symbols` (none: all), fresh or resuming
        after sequence `after`; `shared` False: its own consumer for good."""
        nc, js, settings = self.nc, self.js, self.settings
        info = await js.stream_info(STREAM)
        assert info.created is not None
        subjects = tuple(subject_for(s) for s in symbols) or (all_subjects(),)
        wanted = subjects if symbols else None
        position = None if after is None else EventPosition(incarnation_of(info.created), after)
        start = await resolve_start(js, info, position, wanted)
        live = self.live if shared else None
        if live is not None:
            async with asyncio.timeout(5):
                await live.wait_following(start.incarnation)
        outbox = None if live is None else Outbox(wanted, settings.max_pending_bytes)
        client_id = f"{next(_client_ids)}"
        name = f"sse-{settings.gateway_id}-{client_id}"

        def open_consumer(
            client_id: str, subjects: tuple[str, ...], policy: DeliverPolicy, sequence: int | None
        ) -> PullConsumer:
            spec = ConsumerSpec(
                stream=consumer_stream,
                name=name,
                filter_subjects=subjects,
                deliver_policy=policy,
                start_sequence=sequence,
                inactive_threshold=settings.inactive_threshold,
            )
            consumer = AfterCreate(
                nc,
                js,
                spec,
                self.metrics,
                batch=settings.pull_batch,
                api_timeout=settings.nats_timeout,
            )
            consumer.then = then
            return consumer

        framer = TickFramer(settings.max_message_bytes, self.metrics)
        catch_ups = CatchUps(open_consumer, framer, (all_subjects(),))
        catch_up = catch_ups.new(client_id, subjects, start.incarnation, start.after)
        catch_up.prepare(start.deliver_policy, start.sequence)
        feed = ClientFeed(
            client_id, start, catch_ups, live, outbox, self.metrics, catch_up=catch_up
        )
        return Client(feed, outbox, name)


@asynccontextmanager
async def rig(
    nats_url: str, nc: NATS, js: JetStreamContext, **overrides: Any
) -> AsyncIterator[Rig]:
    settings = feed_settings(nats_url, **overrides)
    async with running_live_feed(nc, js, settings, Metrics()) as live:
        yield Rig(nc, js, settings, live, Metrics())


async def read(feed: ClientFeed, count: int, within: float = 10.0) -> list[int]:
    """The sequences of the next `count` events (or more, if a write carries more), read as
    the stream's writer reads them."""
    got: list[int] = []
    try:
        async with asyncio.timeout(within):
            while len(got) < count:
                frames = await next_write(feed, 1.0)
                if frames is not None:
                    written = sequences(frames.body)
                    assert frames.events == len(written)
                    feed.count_sent(frames)
                    got += written
    except TimeoutError:
        raise AssertionError(f"{len(got)} of {count} events within {within}s: {got}") from None
    return got


async def next_write(feed: ClientFeed, heartbeat: float) -> Frames | None:
    """`next_frames` as the writer calls it, which keeps `last_write` (gateway.stream)."""
    loop = asyncio.get_running_loop()
    if not feed.last_write:
        feed.last_write = loop.time()  # the stream's head went out
    while (frames := await feed.next_frames(heartbeat)) is IDLE:
        try:
            await feed.idle_wait()
        finally:
            feed.woken()
    feed.last_write = loop.time()
    return frames
