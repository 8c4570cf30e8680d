"""The FastStream application: the NATS broker, the documented price channel, the tick loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

import nats
import nats.errors
from faststream import FastStream
from faststream.nats import JStream, NatsBroker
from faststream.specification import AsyncAPI
from nats.aio.client import Client

from contracts.errors import StreamConfigError
from contracts.messages import PriceTick
from contracts.nats_options import connect_options
from contracts.settings import redact_urls
from contracts.stream import ensure_stream, wait_for_stream
from contracts.symbols import all_subjects
from publisher.errors import NatsUnavailableError, StreamUnavailableError, describe
from publisher.last_prices import LastPrices, last_prices
from publisher.replay import Replayer, check_file
from publisher.settings import PublisherSettings
from publisher.ticker import TickPublisher
from publisher.ticks import PriceWalk
from publisher.waiting import wait_for_nats

logger = logging.getLogger(__name__)

# The version of the message contract this document describes (subjects and messages, docs/api.md).
CONTRACT_VERSION = "1.0.0"
# Seconds nats-py waits between connection attempts, at start and after a disconnect.
RECONNECT_WAIT = 1
APP_DESCRIPTION = (
    "Demo price feed: a random walk per symbol, published to NATS JetStream. Each tick is "
    "acknowledged by the stream; a publish whose ack is lost is retried with the same "
    "Nats-Msg-Id, so JetStream stores it once."
)
CHANNEL_DESCRIPTION = (
    "One PriceTick (compact JSON) per message on `{prefix}.<TOKEN>`, where TOKEN is the symbol "
    "with every '.' replaced by '_' (BRK.B is published on {prefix}.BRK_B). Headers: "
    "`Nats-Msg-Id: <source>:<counter>` (the counter increases per source, across symbols) and "
    "`Nats-Expected-Stream: <stream>`. Stored in the stream `{stream}` (subjects `{subjects}`)."
)


class _Broker(NatsBroker):
    """A NatsBroker that connects with contracts.nats_options, and whose stop() also works
    while NATS is unreachable.

    FastStream takes credentials and TLS only as one `security` object per mechanism;
    nats.connect() takes them as the keyword arguments the gateway passes too, so both
    programs connect alike from the same settings.

    nats-py refuses to drain a connection that is reconnecting; there is nothing to
    drain then (buffered publishes could not be acked anyway), so it is closed instead.
    """

    def __init__(self, *args: Any, connect_options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connect_options = connect_options

    async def _connect(self) -> Client:
        connection = await nats.connect(**(self._connection_kwargs | self._connect_options))
        self.config.connect(connection)
        return connection

    async def stop(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> None:
        connection = self._connection
        if connection is not None and not connection.is_connected:
            if not connection.is_closed:
                # nats-py flushes what it buffered while reconnecting into the lost
                # socket before closing it, and raises when that fails; closed it is.
                with contextlib.suppress(OSError):
                    await connection.close()
            self._connection = None
        await super().stop(exc_type, exc_val, exc_tb)


class PublisherService:
    """The broker, the documented publisher, and the tick loop between start and shutdown.

    `app` is the FastStream application. `open()` connects and ensures the stream within
    --connect-timeout; its after-startup hook starts the tick loop as one task, and its
    shutdown hook stops that task (the round in flight may finish) before the broker drains.
    """

    def __init__(self, settings: PublisherSettings) -> None:
        self.settings = settings
        self.crashed = False
        self.ticker: TickPublisher | None = None
        self.replayer: Replayer | None = None
        self.last_prices: LastPrices | None = None
        self._task: asyncio.Task[None] | None = None
        self._opened = False
        self._closing = False
        self._last_error: BaseException | None = None
        self.broker = _Broker(
            [url.strip() for url in settings.nats_url.split(",")],
            name=f"publisher-{settings.source}",
            # At start, open() bounds the attempts; afterwards, reconnect for as long as it
            # takes: ticks meanwhile fail after their retries, logged and counted.
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            logger=logger,
            description="NATS with JetStream",
            connect_options=connect_options(settings),
        )
        subjects = all_subjects(settings.subject_prefix)
        # declare=False: contracts.ensure_stream provisions the stream with the config the
        # gateway also expects; FastStream's own declaration would differ from it.
        self.stream = JStream(settings.stream, subjects=[subjects], declare=False)
        self.prices = self.broker.publisher(
            f"{settings.subject_prefix}.{{symbol}}",
            stream=self.stream,
            timeout=settings.publish_timeout,
            schema=PriceTick,
            title="PriceTicks",
            description=CHANNEL_DESCRIPTION.format(
                prefix=settings.subject_prefix, stream=settings.stream, subjects=subjects
            ),
        )
        self.app = FastStream(
            self.broker,
            logger=logger,
            on_startup=[self.open],
            after_startup=[self._start_ticking],
            on_shutdown=[self._stop_ticking],
            specification=AsyncAPI(
                title="Price publisher", version=CONTRACT_VERSION, description=APP_DESCRIPTION
            ),
        )

    async def open(self) -> None:
        """Connect to NATS and ensure the stream, each within --connect-timeout; idempotent.

        Raises NatsUnavailableError or StreamUnavailableError with a one-line message.
        """
        if self._opened:
            return
        if self.settings.replay:
            # Every row checked before connecting: a bad file publishes nothing.
            rows = check_file(Path(self.settings.replay), self.settings.source)
            logger.info("replay file checked", extra={"file": self.settings.replay, "ticks": rows})
        if self.settings.wait_for_nats:  # NATS may not be up yet (a first deployment)
            await wait_for_nats(self.settings.nats_url, self.settings.wait_for_nats)
        urls = redact_urls(self.settings.nats_url)
        limit = self.settings.connect_timeout
        try:
            async with asyncio.timeout(limit):
                await self.broker.connect()
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            # A timeout says only that time ran out; the last refusal says why.
            reason = describe(self._last_error or exc)
            raise NatsUnavailableError(
                f"cannot connect to NATS at {urls} within {limit:g}s: {reason}"
            ) from None
        try:
            async with asyncio.timeout(limit):
                js = self.broker.connection.jetstream(timeout=limit)
                if self.settings.manage_stream:
                    await ensure_stream(js, self.settings.stream_settings())
                else:
                    await wait_for_stream(js, self.settings.stream)
        except StreamConfigError as exc:
            raise StreamUnavailableError(f"{exc} (NATS at {urls})") from None
        except (TimeoutError, nats.errors.Error) as exc:
            raise StreamUnavailableError(
                f"cannot ensure stream {self.settings.stream!r} on {urls}: {describe(exc)}"
            ) from None
        self._opened = True

    async def close(self) -> None:
        """Stop the tick loop and drain the connection; safe to call more than once."""
        await self._stop_ticking()
        await self.broker.stop()

    async def _start_ticking(self) -> None:
        if self.settings.replay:
            self._start_replay()
            return
        settings = self.settings
        walk = PriceWalk(settings.symbol_list, settings.source)
        js = self.broker.connection.jetstream(timeout=settings.publish_timeout)
        self.last_prices = await last_prices(
            js, settings.stream, settings.subject_prefix, settings.symbol_list
        )
        walk.continue_from(self.last_prices.prices)
        self.ticker = TickPublisher(self.prices, settings, walk=walk)
        self._task = asyncio.create_task(self.ticker.run(), name="tick-loop")
        self._task.add_done_callback(self._on_loop_done)
        logger.info(
            "publishing",
            extra={
                "source": self.settings.source,
                "symbols": list(self.settings.symbol_list),
                "rate": self.settings.rate,
                "stream": self.settings.stream,
                "continued_from_stored": sorted(self.last_prices.prices),
                "stored_skipped": self.last_prices.skipped,
            },
        )

    def _start_replay(self) -> None:
        settings = self.settings
        self.ticker = TickPublisher(self.prices, settings)
        self.replayer = Replayer(
            Path(settings.replay), settings.source, self.ticker, settings.speed
        )
        self._task = asyncio.create_task(self.replayer.run(), name="replay")
        self._task.add_done_callback(self._on_loop_done)
        logger.info(
            "replaying",
            extra={"source": settings.source, "file": settings.replay, "speed": settings.speed},
        )

    def readiness(self) -> str | None:
        """None while connected and publishing, else why not (the probe's /readyz)."""
        if not self._opened:
            return "waiting for NATS and the stream"
        if not self.broker.connection.is_connected:
            return "NATS disconnected"
        if self._task is None or self._task.done():
            return "not publishing"
        return None

    @property
    def incomplete(self) -> bool:
        """A replay in which some tick could not be published."""
        return (
            self.replayer is not None and self.ticker is not None and self.ticker.stats.failed > 0
        )

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is None:
            if self.replayer is not None and not task.cancelled():
                self.app.exit()  # the file is done (or stopped): so is the process
            return  # stopped or cancelled by _stop_ticking
        # Publish failures are handled inside the loop, so this is a bug: say so, and end
        # the process rather than live on without publishing.
        self.crashed = True
        logger.error("tick loop crashed", exc_info=error)
        self.app.exit()

    async def _stop_ticking(self) -> None:
        self._closing = True  # the drain that follows is no disconnect to warn about
        task, ticker = self._task, self.ticker
        if task is None or ticker is None:
            return
        self._task = None
        ticker.stop()
        if self.replayer is not None:
            self.replayer.stop()
        try:
            # Let the round in flight collect its acks, but not sit out a whole series of
            # retries: a tick cut off here is simply not published.
            await asyncio.wait({task}, timeout=self.settings.publish_timeout)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        stats = dataclasses.asdict(ticker.stats)
        if self.replayer is not None:
            stats |= {"replayed": self.replayer.stats.ticks, "late": self.replayer.stats.late}
        logger.info("publishing stopped", extra=stats)

    async def _on_error(self, error: Exception) -> None:
        self._last_error = error

    async def _on_disconnected(self) -> None:
        if self._opened and not self._closing:
            logger.warning("NATS disconnected", extra={"error": repr(self._last_error)})

    async def _on_reconnected(self) -> None:
        logger.info("NATS reconnected", extra={"url": redact_urls(self.settings.nats_url)})


def build_app(settings: PublisherSettings) -> FastStream:
    """The FastStream application for `settings` (see PublisherService)."""
    return PublisherService(settings).app
