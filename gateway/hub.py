"""The hub: the gateway's NATS side. Connects, opens one consumer per client, and drains.

It owns a task group for process-wide work (the connection, the drain waves) and every
client consumer this process creates.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StreamInfo
from nats.js.errors import NotFoundError

from contracts.nats_options import connect_options
from contracts.stream import StreamSettings
from contracts.symbols import all_subjects, subject_for
from gateway.broker.connection import connect, ensure_stream_until_done, wait_for_stream
from gateway.broker.consumer import ConsumerSpec, PullConsumer
from gateway.errors import AtCapacityError, NatsUnavailableError
from gateway.feed.client import ClientFeed
from gateway.feed.framer import TickFramer
from gateway.feed.live import LiveFeed, Subscriber
from gateway.feed.resume import resolve_start
from gateway.http.query import StreamQuery
from gateway.metrics import Metrics
from gateway.settings import Settings

logger = logging.getLogger(__name__)

DRAINING = "gateway draining"


async def _close(nc: NATS) -> None:
    """Drain the connection (it flushes consumer deletes still in flight), or, when NATS is
    away and a drain cannot be, just close it: the server removes what is left of this
    gateway's consumers by their inactive threshold."""
    if nc.is_connected:
        try:
            await nc.drain()
            return
        except (NatsError, TimeoutError) as exc:
            logger.warning("NATS connection not drained", extra={"error": repr(exc)})
    try:
        await nc.close()
    except Exception as exc:  # nats-py may write to the socket it has lost (uvloop raises)
        logger.warning("NATS connection closed uncleanly", extra={"error": repr(exc)})


class Hub:
    """`async with Hub(settings) as hub`: connected in the background, drained on exit."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.framer = TickFramer(settings.max_message_bytes, self.metrics)
        self.stream: StreamSettings = settings.stream_settings()
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.draining = asyncio.Event()
        self._feeds: dict[str, ClientFeed] = {}
        self._per_address: Counter[str] = Counter()  # streams by client address
        self._open_streams = 0  # attached or attaching
        self._client_numbers = itertools.count(1)
        self._no_streams = asyncio.Event()
        self._no_streams.set()
        self.live: LiveFeed | None = None
        # Process-wide work: the connection, then the live feed.
        self._tasks = asyncio.TaskGroup()
        self._background: list[asyncio.Task[None]] = []  # cancelled when the hub closes
        self._closing = False

    async def __aenter__(self) -> Hub:
        await self._tasks.__aenter__()
        self._background.append(self._tasks.create_task(self._establish()))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        for task in self._background:
            task.cancel()
        await self._tasks.__aexit__(exc_type, exc, tb)
        if self.nc is not None:
            await _close(self.nc)

    async def _establish(self) -> None:
        nc = await connect(
            self.settings.nats_url.split(","),
            f"gateway-{self.settings.gateway_id}",
            self._on_disconnected,
            self._on_reconnected,
            connect_options(self.settings),
        )
        self.nc = nc
        self.js = nc.jetstream(timeout=self.settings.nats_timeout)
        if self.settings.ensure_stream:
            await ensure_stream_until_done(nc, self.stream)
        else:
            await wait_for_stream(self.js, self.stream.name)
        logger.info("gateway connected", extra={"gateway": self.settings.gateway_id})
        self._background.append(self._tasks.create_task(self._sweep()))
        if self.settings.shared_feed:
            self.live = LiveFeed(nc, self.js, self.settings, self.metrics, self.framer)
            await self.live.run()  # until the hub closes

    async def _sweep(self) -> None:
        """Once a second (or per half heartbeat): stuck writes and due heartbeats."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        interval = min(1.0, settings.heartbeat / 2, settings.send_timeout / 2)
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for feed in list(self._feeds.values()):
                # A sweep late by up to one interval must still keep heartbeats within
                # --heartbeat of each other.
                feed.sweep(now, settings.heartbeat - interval, settings.send_timeout)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            logger.warning("NATS disconnected")

    async def _on_reconnected(self) -> None:
        logger.info("NATS reconnected")
        # Pull requests do not survive a reconnect; ask again at once rather than waiting
        # for the silence to show. A consumer lost with a restarted server then answers 503.
        if self.live is not None:
            self.live.repull()
        for feed in list(self._feeds.values()):
            feed.repull()

    @property
    def open_streams(self) -> int:
        return self._open_streams

    async def drain(self) -> None:
        """Refuse new streams at once, and end the open ones in waves over the drain period,
        so their reconnects (by Last-Event-ID, to other replicas) do not arrive all at once."""
        self.draining.set()
        feeds = list(self._feeds.values())
        random.shuffle(feeds)
        loop = asyncio.get_running_loop()
        started = loop.time()
        period = self.settings.drain_period
        logger.info("draining", extra={"streams": len(feeds), "period": period})
        for i, feed in enumerate(feeds):
            if (delay := started + period * i / len(feeds) - loop.time()) > 0:
                await asyncio.sleep(delay)
            feed.stop(DRAINING)
        self.end_all()  # and any stream that was still attaching
        await self._no_streams.wait()  # each stream's last write and consumer delete
        logger.info(
            "drained", extra={"streams": len(feeds), "seconds": round(loop.time() - started, 3)}
        )

    def end_all(self) -> None:
        """End every open stream now."""
        self.draining.set()
        for feed in list(self._feeds.values()):
            feed.stop(DRAINING)

    def _subjects(self, query: StreamQuery) -> tuple[str, ...]:
        prefix = self.stream.subject_prefix
        if query.symbols is None:
            return (all_subjects(prefix),)
        return tuple(subject_for(symbol, prefix) for symbol in query.symbols)

    async def _stream_info(self) -> StreamInfo:
        if self.js is None or self.nc is None or not self.nc.is_connected:
            raise NatsUnavailableError("not connected to NATS")
        try:
            return await self.js.stream_info(self.stream.name)
        except NotFoundError:
            raise NatsUnavailableError(f"stream {self.stream.name} does not exist") from None
        except (NatsError, TimeoutError) as exc:
            raise NatsUnavailableError(f"NATS did not answer: {exc!r}") from None

    def _admit(self, address: str) -> None:
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

    async def _live_feed(self, incarnation: str) -> LiveFeed | None:
        """The live feed once it follows the stream the client starts in; None without one."""
        if not self.settings.shared_feed:
            return None
        if self.live is None:
            raise NatsUnavailableError("the live feed is starting")
        try:
            async with asyncio.timeout(self.settings.nats_timeout):
                await self.live.wait_following(incarnation)
        except TimeoutError:
            raise NatsUnavailableError("the live feed is not following the stream") from None
        return self.live

    @asynccontextmanager
    async def attach(self, query: StreamQuery, address: str) -> AsyncIterator[ClientFeed]:
        """A feed for one client; its consumer is deleted however the block exits.

        Raises AtCapacityError, NatsUnavailableError or BadRequestError before anything
        has been sent, so the caller can still answer with a problem.
        """
        self._admit(address)
        # Counted before the first await, so concurrent attaches respect the limits.
        self._per_address[address] += 1
        self._open_streams += 1
        self._no_streams.clear()
        subscriber: Subscriber | None = None
        live: LiveFeed | None = None
        try:
            info = await self._stream_info()
            assert self.js is not None
            assert self.nc is not None
            subjects = self._subjects(query)
            start = await resolve_start(
                self.js, info, query.position, None if query.symbols is None else subjects
            )
            # This frame lives as long as the stream: a StreamInfo is ~3 KB per client.
            del info
            if (live := await self._live_feed(start.incarnation)) is not None:
                # Before the consumer exists: the live feed's buffer must cover everything
                # the consumer will not (see client_feed).
                subscriber = Subscriber(
                    None if query.symbols is None else subjects, self.settings.max_pending_bytes
                )
                live.subscribe(subscriber)
            client_id = f"{next(self._client_numbers)}"

            def open_consumer(policy: DeliverPolicy, sequence: int | None) -> PullConsumer:
                assert self.nc is not None
                assert self.js is not None
                spec = ConsumerSpec(
                    stream=self.stream.name,
                    name=f"sse-{self.settings.gateway_id}-{client_id}",
                    filter_subjects=subjects,
                    deliver_policy=policy,
                    start_sequence=sequence,
                    inactive_threshold=self.settings.inactive_threshold,
                )
                return PullConsumer(
                    self.nc,
                    self.js,
                    spec,
                    self.metrics,
                    batch=self.settings.pull_batch,
                    api_timeout=self.settings.nats_timeout,
                )

            async with ClientFeed(
                client_id, start, open_consumer, subscriber, self.metrics, self.framer
            ) as feed:
                self._feeds[client_id] = feed
                try:
                    if self.draining.is_set():
                        feed.stop(DRAINING)
                    yield feed
                finally:
                    del self._feeds[client_id]
        finally:
            if live is not None and subscriber is not None:
                live.unsubscribe(subscriber)
            self._open_streams -= 1
            self._per_address[address] -= 1
            if not self._per_address[address]:
                del self._per_address[address]
            if not self._open_streams:
                self._no_streams.set()
