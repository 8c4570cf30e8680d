"""The process's live feeds: the live one, and a delayed one per distinct delay asked for,
started on first use and stopped when nobody has read it for DELAYED_FEED_LINGER."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sized

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from gateway.errors import AtCapacityError, NatsUnavailableError
from gateway.feed.framer import TickFramer
from gateway.feed.live import LiveFeed
from gateway.metrics import Metrics
from gateway.settings import Settings

logger = logging.getLogger(__name__)

DELAYED_FEED_LINGER = 60.0  # seconds a delayed feed nobody reads keeps following


class LiveFeeds:
    """`serve_in(tasks, ...)` keeps the feeds, each a task of `tasks`, until cancelled."""

    def __init__(
        self, settings: Settings, metrics: Metrics, framer: TickFramer, waiting: Sized = ()
    ) -> None:
        """`waiting`: the connections waiting for their answer (their flushes yield to
        them: gateway.feed.flushing)."""
        self._settings = settings
        self._metrics = metrics
        self._framer = framer
        self._waiting = waiting
        self.live: LiveFeed | None = None
        self._delayed: dict[float, tuple[LiveFeed, asyncio.Task[None]]] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._connection: tuple[NATS, JetStreamContext] | None = None

    def serve_in(
        self, tasks: asyncio.TaskGroup, nc: NATS, js: JetStreamContext, *, follow: bool
    ) -> None:
        """Run the feeds in `tasks`: the live one from now on with `follow`, else from the
        first stream that needs it (a conflated or delayed one, with --shared-feed=false:
        a consumer of a client's own would send it every tick at once)."""
        self._tasks, self._connection = tasks, (nc, js)
        if follow:
            self._start_live()

    def _start_live(self) -> LiveFeed | None:
        if self.live is None and self._tasks is not None and self._connection is not None:
            self.live = self._feed(*self._connection, 0.0)
            self._tasks.create_task(self.live.run())
        return self.live

    def _feed(self, nc: NATS, js: JetStreamContext, delay: float) -> LiveFeed:
        return LiveFeed(nc, js, self._settings, self._metrics, self._framer, delay, self._waiting)

    @property
    def following(self) -> bool:
        return self.live is not None and self.live.running.is_set()

    async def following_stream(self, incarnation: str | None, delay: float) -> LiveFeed:
        """The feed of `delay` once it follows the stream of `incarnation` (None: the
        stream it finds); raises NatsUnavailableError when it does not within
        --nats-timeout."""
        feed = self._delayed_feed(delay) if delay else self._start_live()
        if feed is None:
            raise NatsUnavailableError("the live feed is starting")
        if feed.running.is_set() and incarnation in (None, feed.incarnation):
            return feed  # following already: no timeout to arm and disarm per stream
        try:
            async with asyncio.timeout(self._settings.nats_timeout):
                await feed.wait_following(incarnation)
        except TimeoutError:
            raise NatsUnavailableError("the live feed is not following the stream") from None
        return feed

    def _delayed_feed(self, delay: float) -> LiveFeed:
        if (known := self._delayed.get(delay)) is not None:
            return known[0]
        tasks, connection = self._tasks, self._connection
        if tasks is None or connection is None:
            raise NatsUnavailableError("the live feed is starting")
        if len(self._delayed) >= self._settings.max_delays:
            raise AtCapacityError(
                f"this gateway serves {self._settings.max_delays} distinct delays already"
            )
        feed = self._feed(*connection, delay)
        self._delayed[delay] = feed, tasks.create_task(feed.run())
        logger.info("delayed feed started", extra={"delay": delay})
        return feed

    def stop_idle(self, now: float) -> None:
        """Stop the delayed feeds nobody has read for DELAYED_FEED_LINGER seconds."""
        for delay, (feed, task) in list(self._delayed.items()):
            if feed.idle_since(now) > DELAYED_FEED_LINGER:
                del self._delayed[delay]
                task.cancel()  # stopping it: nobody reads it
                logger.info("delayed feed stopped", extra={"delay": delay})

    def repull(self) -> None:
        """After a reconnect: pull requests in flight were lost."""
        for feed in [self.live, *(feed for feed, _ in self._delayed.values())]:
            if feed is not None:
                feed.repull()
