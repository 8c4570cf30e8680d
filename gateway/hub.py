"""The hub: the gateway's NATS side. Admits clients, opens their feeds, drains them.

`async with hub.running()` (the app's lifespan) owns every process-wide task: the
connection, then the live feed and the heartbeat sweep, in one task group; each client's
consumer belongs to that client's `attach` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from contracts.nats_options import connect_options
from contracts.stream import StreamSettings
from gateway.broker.connection import close, connect, ensure_stream_until_done, wait_for_stream
from gateway.broker.streams import stream_info
from gateway.errors import AtCapacityError, NatsUnavailableError, TooManyStreamsError
from gateway.feed.client import ClientFeed
from gateway.feed.feeds import LiveFeeds
from gateway.feed.framer import TickFramer
from gateway.feed.splice import DRAINING, FEED_LOST
from gateway.http.limits import HeaderLimit
from gateway.http.query import StreamQuery
from gateway.metrics import Metrics
from gateway.opening import FeedOpener
from gateway.settings import Settings

logger = logging.getLogger(__name__)


class Hub:
    """Serves once `running()` is entered: connects in the background, drains on demand."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.framer = TickFramer(settings.max_message_bytes, self.metrics)
        self.stream: StreamSettings = settings.stream_settings()
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        # The main port's connections still sending their headers (gateway.http.limits
        # keeps them): while many wait, the live feeds' flushes yield to them.
        self.waiting: dict[HeaderLimit, float] = {}
        self.feeds = LiveFeeds(settings, self.metrics, self.framer, self.waiting)
        self.opener = FeedOpener(settings, self.metrics, self.framer, self.feeds, self.stream)
        self.draining = asyncio.Event()
        self._forced = asyncio.Event()  # a second signal: end everything now
        self._clients: dict[str, ClientFeed] = {}  # open streams by client id
        self._per_address: Counter[str] = Counter()  # streams by client address
        self._per_user: Counter[str] = Counter()  # streams by token subject
        self._open_streams = 0  # attached or attaching
        # Set while there is no stream left for a drain to wait for (or it must not wait).
        self._quiet = asyncio.Event()
        self._quiet.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Hub]:
        """The hub's tasks run inside the block; on exit they stop and NATS is drained."""
        try:
            async with asyncio.TaskGroup() as tasks:
                service = tasks.create_task(self._serve())
                try:
                    yield self
                finally:
                    service.cancel()  # the process is stopping: so is the service
        finally:
            if self.nc is not None:
                await close(self.nc)

    async def _serve(self) -> None:
        """Connect (retrying until NATS answers), then keep the sweep and the live feed."""
        self.nc = nc = await connect(
            self.settings.nats_url.split(","),
            f"gateway-{self.settings.gateway_id}",
            self._on_disconnected,
            self._on_reconnected,
            # Pings reveal a link that went silent (no RST): nats-py then reconnects.
            connect_options(self.settings)
            | {
                "ping_interval": self.settings.nats_ping_interval,
                "max_outstanding_pings": self.settings.nats_max_outstanding_pings,
            },
        )
        self.js = nc.jetstream(timeout=self.settings.nats_timeout)
        if self.settings.ensure_stream:
            await ensure_stream_until_done(nc, self.stream)
        else:
            await wait_for_stream(self.js, self.stream.name)
        logger.info("gateway connected", extra={"gateway": self.settings.gateway_id})
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._sweep())
            self.feeds.serve_in(tasks, nc, self.js, follow=self.settings.shared_feed)
            self.opener.serve_in(tasks)
            if not self.settings.shared_feed:
                tasks.create_task(self._watch_jetstream())

    async def _sweep(self) -> None:
        """Wake the live clients due a heartbeat, once a second (or per half heartbeat)."""
        loop = asyncio.get_running_loop()
        interval = min(1.0, self.settings.heartbeat / 2)
        # A sweep late by up to one interval must still keep heartbeats within --heartbeat.
        heartbeat = self.settings.heartbeat - interval
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for feed in list(self._clients.values()):
                feed.heartbeat_due(now, heartbeat)
            self.feeds.stop_idle(now)

    async def _watch_jetstream(self) -> None:
        """Without the live feed (--shared-feed=false) nothing notices JetStream gone while
        clients' own consumers wait: one on a node cut off from its cluster still sends
        heartbeats. So, while streams are open, ask every --nats-ping-interval; after
        2 x --nats-timeout without an answer, end them (clients resume elsewhere)."""
        loop = asyncio.get_running_loop()
        down_since: float | None = None
        while True:
            await asyncio.sleep(self.settings.nats_ping_interval)
            if not self._clients:
                down_since = None
                continue
            try:
                await self.stream_info(timeout=self.settings.nats_timeout)
                down_since = None
            except NatsUnavailableError as exc:
                now = loop.time()
                if down_since is None:
                    logger.warning("JetStream not answering", extra={"error": str(exc)})
                    down_since = now
                elif now - down_since > 2 * self.settings.nats_timeout:
                    for feed in list(self._clients.values()):
                        feed.stop(FEED_LOST)
                    down_since = None

    async def _on_disconnected(self) -> None:
        if not self.draining.is_set():  # else it is our own drain's
            logger.warning("NATS disconnected")

    async def _on_reconnected(self) -> None:
        logger.info("NATS reconnected")
        # Pull requests do not survive a reconnect; ask again at once rather than waiting
        # for the silence to show. A consumer lost with a restarted server then answers 503.
        self.feeds.repull()
        for feed in list(self._clients.values()):
            feed.repull()

    @property
    def open_streams(self) -> int:
        return self._open_streams

    async def drain(self) -> None:
        """Refuse new streams at once, and end the open ones in waves over the drain period,
        so their reconnects (by Last-Event-ID, to other replicas) do not arrive all at once.
        `force()` ends it early."""
        self.draining.set()
        feeds = list(self._clients.values())
        random.shuffle(feeds)
        loop = asyncio.get_running_loop()
        started = loop.time()
        period = self.settings.drain_period
        logger.info("draining", extra={"streams": len(feeds), "period": period})
        for i, feed in enumerate(feeds):
            if (delay := started + period * i / len(feeds) - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._forced.wait()
            feed.stop(DRAINING)
        self._end_all()  # and any stream that was still attaching
        await self._quiet.wait()  # each stream's last write and consumer delete
        logger.info(
            "drained", extra={"streams": len(feeds), "seconds": round(loop.time() - started, 3)}
        )

    def force(self) -> None:
        """A second signal: end every stream now, and let the drain finish without
        waiting for their last writes."""
        self.draining.set()
        self._forced.set()
        self._quiet.set()
        self._end_all()

    def _end_all(self) -> None:
        for feed in list(self._clients.values()):
            feed.stop(DRAINING)

    async def stream_info(self, *, timeout: float | None = None) -> StreamInfo:
        """The stream's info; NatsUnavailableError (503) when it cannot be had."""
        return await stream_info(self.js, self.nc, self.stream.name, timeout=timeout)

    def _admit(self, address: str, user: str | None) -> None:
        settings = self.settings
        if self.draining.is_set():
            raise NatsUnavailableError("gateway is shutting down; reconnect to another replica")
        if self.open_streams >= settings.max_connections:
            raise AtCapacityError(
                f"this gateway holds its limit of {settings.max_connections} streams"
            )
        per_client = settings.max_connections_per_client
        if per_client and self._per_address[address] >= per_client:
            raise AtCapacityError(f"{address} holds its limit of {per_client} streams")
        per_user = settings.max_connections_per_user
        if per_user and user is not None and self._per_user[user] >= per_user:
            raise TooManyStreamsError(f"this token's user holds its limit of {per_user} streams")

    def attach(self, query: StreamQuery, address: str, user: str | None = None) -> Attachment:
        """`async with hub.attach(...) as feed`: a feed for one client (of `user`, the
        token's subject, with auth on); its consumer is deleted however the block exits.

        Entering raises AtCapacityError, TooManyStreamsError, NatsUnavailableError or
        BadRequestError before anything has been sent, so the caller can still answer
        with a problem.
        """
        return Attachment(self, query, address, user)

    def _count_in(self, address: str, user: str | None) -> None:
        self._admit(address, user)
        # Counted before the first await, so concurrent attaches respect the limits.
        self._per_address[address] += 1
        if user is not None:
            self._per_user[user] += 1
        self._open_streams += 1
        self._quiet.clear()  # no attach passes _admit once draining, so never forced here

    def _count_out(self, address: str, user: str | None) -> None:
        self._open_streams -= 1
        _release(self._per_address, address)
        if user is not None:
            _release(self._per_user, user)
        if not self._open_streams:
            self._quiet.set()


class Attachment:
    """`Hub.attach`'s block. A class, not a generator-based context manager: it lasts as
    long as the stream, and a generator and its frame cost ~0.4 KB more per stream."""

    __slots__ = ("_address", "_feed", "_hub", "_query", "_user")

    def __init__(self, hub: Hub, query: StreamQuery, address: str, user: str | None) -> None:
        self._hub = hub
        self._query = query
        self._address = address
        self._user = user
        self._feed: ClientFeed | None = None

    async def __aenter__(self) -> ClientFeed:
        hub = self._hub
        hub._count_in(self._address, self._user)
        try:
            feed = await hub.opener.open(self._query, hub.nc, hub.js)
            await feed.__aenter__()
        except BaseException:
            hub._count_out(self._address, self._user)
            raise
        self._feed = feed
        hub._clients[feed.client_id] = feed
        if hub.draining.is_set():
            feed.stop(DRAINING)
        return feed

    async def __aexit__(self, *exc_info: object) -> None:
        hub, feed = self._hub, self._feed
        assert feed is not None
        try:
            del hub._clients[feed.client_id]
            await feed.__aexit__(*exc_info)
        finally:
            hub._count_out(self._address, self._user)


def _release(counter: Counter[str], key: str) -> None:
    """One stream fewer for `key`; a key with none left goes (addresses and users come
    and go, the counters must not keep them all)."""
    counter[key] -= 1
    if not counter[key]:
        del counter[key]
