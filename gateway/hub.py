"""The hub: the gateway's NATS side. Opens one consumer per client and ends them all on drain."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from nats.js.errors import NotFoundError

from contracts.stream import StreamSettings
from contracts.symbols import all_subjects, subject_for
from gateway.consumers import ClientConsumer, ConsumerSpec
from gateway.errors import AtCapacityError, NatsUnavailableError
from gateway.query import StreamQuery
from gateway.resume import Start, resolve_start
from gateway.settings import Settings

logger = logging.getLogger(__name__)

DRAINING = "gateway draining"


@dataclass(frozen=True, slots=True)
class ClientFeed:
    """An attached client: its consumer, where it started, and the id prefix of its events."""

    client_id: str
    consumer: ClientConsumer
    start: Start
    id_prefix: bytes  # b"<incarnation>-": the stream sequence completes an event id


class Hub:
    """Owns every client consumer this process creates; `drain()` ends all their streams."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stream: StreamSettings = settings.stream_settings()
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self._feeds: dict[str, ClientFeed] = {}
        self._attached = 0  # feeds plus clients still being attached
        self._client_numbers = itertools.count(1)
        self.draining = asyncio.Event()

    @property
    def open_streams(self) -> int:
        return self._attached

    def connect(self, nc: NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=self.settings.nats_timeout)

    def drain(self) -> None:
        """Refuse new streams and end the open ones (they resume elsewhere by Last-Event-ID)."""
        self.draining.set()
        for feed in list(self._feeds.values()):
            feed.consumer.stop(DRAINING)

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

    @asynccontextmanager
    async def attach(self, query: StreamQuery) -> AsyncIterator[ClientFeed]:
        """A feed for one client; its consumer is deleted however the block exits.

        Raises AtCapacityError, NatsUnavailableError or BadRequestError before anything
        has been sent, so the caller can still answer with a problem.
        """
        if self.draining.is_set():
            raise NatsUnavailableError("gateway is shutting down; reconnect to another replica")
        if self._attached >= self.settings.max_connections:
            raise AtCapacityError(
                f"this gateway holds its limit of {self.settings.max_connections} streams"
            )
        # Count the client before the first await, so concurrent attaches respect the limit.
        self._attached += 1
        try:
            info = await self._stream_info()
            assert self.js is not None
            assert self.nc is not None
            subjects = self._subjects(query)
            start = await resolve_start(
                self.js, info, query.position, None if query.symbols is None else subjects
            )
            client_id = f"{next(self._client_numbers)}"
            spec = ConsumerSpec(
                stream=self.stream.name,
                name=f"sse-{self.settings.gateway_id}-{client_id}",
                filter_subjects=subjects,
                deliver_policy=start.deliver_policy,
                start_sequence=start.sequence,
                inactive_threshold=self.settings.inactive_threshold,
            )
            consumer = ClientConsumer(
                self.nc,
                self.js,
                spec,
                batch=self.settings.pull_batch,
                api_timeout=self.settings.nats_timeout,
            )
            async with consumer:
                feed = ClientFeed(client_id, consumer, start, f"{start.incarnation}-".encode())
                self._feeds[client_id] = feed
                try:
                    if self.draining.is_set():
                        consumer.stop(DRAINING)
                    yield feed
                finally:
                    del self._feeds[client_id]
        finally:
            self._attached -= 1
