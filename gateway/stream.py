"""One client's SSE stream, from attach to a clean end, written to a `Sink`.

Per-client resources live in `run` (not in a generator handed to StreamingResponse,
which is only closed whenever the garbage collector gets to it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from prometheus_client import Gauge
from starlette.responses import Response

from gateway.auth.grants import Grant
from gateway.delivery import Delivery
from gateway.errors import GatewayError, StreamEndedError
from gateway.feed import sse
from gateway.feed.client import ClientFeed
from gateway.feed.splice import CLIENT_CLOSED, ORDERLY_ENDS, SLOW_CLIENT, TOKEN_EXPIRED
from gateway.feed.writes import IDLE
from gateway.http.encoding import UNCODED, Coding
from gateway.http.problems import problem_for
from gateway.http.query import StreamQuery
from gateway.http.sink import Headers, Sink
from gateway.hub import Hub
from gateway.metrics import CONSUMER_LOST, Metrics

logger = logging.getLogger(__name__)

HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class PriceStream:
    """The stream of prices for one validated query."""

    __slots__ = ("address", "coding", "extra_headers", "grant", "hub", "query")

    def __init__(
        self,
        hub: Hub,
        query: StreamQuery,
        address: str,
        grant: Grant | None = None,
        headers: Headers = (),
        coding: Coding = UNCODED,
    ) -> None:
        self.hub = hub
        self.query = query
        self.address = address
        self.grant = grant
        self.extra_headers = headers  # security and CORS, on every answer
        self.coding = coding  # of the 200 answer only: problems go uncompressed

    @property
    def _user(self) -> str | None:
        return self.grant.subject if self.grant is not None else None

    async def run(self, sink: Sink) -> None:
        try:
            async with (
                self.hub.attach(self.query, self.address, self._user) as feed,
                sink.watching(feed),
            ):
                # The stream in this one frame: an idle one keeps no other coroutine frame.
                started = time.monotonic()
                by_delivery = self._opened(feed)
                reason = CLIENT_CLOSED
                expiry = self._end_at_expiry(feed)
                try:
                    await self._begin(feed, sink)
                    heartbeat, timeout = self.hub.settings.heartbeat, self.hub.settings.send_timeout
                    loop = asyncio.get_running_loop()
                    while True:
                        frames = await feed.next_frames(heartbeat)
                        if frames is IDLE:
                            try:
                                await feed.idle_wait()
                            finally:
                                feed.woken()
                            continue
                        await sink.write(frames.body if frames else sse.HEARTBEAT, timeout)
                        feed.last_write = loop.time()
                        if frames:
                            feed.count_sent(frames)
                except StreamEndedError as end:
                    reason = str(end)
                    await self._ended(reason, sink)
                finally:
                    if expiry is not None:
                        expiry.cancel()
                    self._closed(feed, by_delivery, reason, started)
        except GatewayError as exc:
            # attach() raises only before the response has started.
            self.hub.metrics.errors.labels(exc.kind).inc()
            problem = problem_for(exc)
            problem.raw_headers.extend(self.extra_headers)
            await sink.answer(problem)

    def _opened(self, feed: ClientFeed) -> Gauge:
        """Count the stream open; its streams-by-delivery child, to count it closed."""
        metrics = self.hub.metrics
        delivery = self.query.delivery
        by_delivery = _by_delivery(metrics, bool(delivery.conflate), bool(delivery.delay))
        metrics.open_streams.inc()
        by_delivery.inc()
        self._log_open(feed)
        return by_delivery

    async def _begin(self, feed: ClientFeed, sink: Sink) -> None:
        settings = self.hub.settings
        head = sse.retry_frame(settings.retry)
        if (reset := feed.start.reset) is not None:
            head += sse.reset_frame(reason=reset.reason, detail=reset.detail)
            self.hub.metrics.resets_sent.labels(reset.reason).inc()
        first = feed.opening()  # the snapshot or backlog, when it is in memory
        await sink.begin(
            [*stream_headers(self.query.delivery, self.coding), *self.extra_headers],
            head,
            settings.send_timeout,
            self.coding.compressor(),  # allocated now that the stream begins
            first.body if first else b"",
        )
        self.extra_headers = ()  # sent; not kept for the life of the stream
        feed.last_write = asyncio.get_running_loop().time()
        if first:
            feed.count_sent(first)
        if (direct := sink.direct) is not None:
            feed.write_directly(direct)

    async def _ended(self, reason: str, sink: Sink) -> None:
        metrics = self.hub.metrics
        if reason == SLOW_CLIENT:
            metrics.slow_client_disconnects.inc()
        elif reason not in ORDERLY_ENDS:
            metrics.errors.labels(CONSUMER_LOST).inc()
        if sink.connected:
            # Say why, so the browser reconnects and resumes from its last id.
            await sink.end(sse.comment_frame(f"stream ended: {reason}; reconnect to resume"))

    def _closed(self, feed: ClientFeed, by_delivery: Gauge, reason: str, started: float) -> None:
        metrics = self.hub.metrics
        metrics.open_streams.dec()
        by_delivery.dec()
        metrics.streams_ended.labels(reason).inc()
        if not logger.isEnabledFor(logging.INFO):
            return  # no line, and none of its fields made (most gateways log warnings)
        logger.info(
            "stream closed",
            extra={
                "client": feed.client_id,
                "symbols": self.query.symbols or "*",
                "position": str(self.query.position or ""),
                "reason": reason,
                "sent": feed.sent,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def _log_open(self, feed: ClientFeed) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        logger.info(
            "stream opened",
            extra={
                "client": feed.client_id,
                "consumer": feed.consumer_name,
                "conflate": self.query.delivery.conflate,
                "delay": self.query.delivery.delay,
                "symbols": self.query.symbols or "*",
                "position": str(self.query.position or ""),
                "encoding": "gzip" if self.coding.gzip else "identity",
                "reset": feed.start.reset and feed.start.reset.reason,
                "user": self.grant and self.grant.subject,
            },
        )

    def _end_at_expiry(self, feed: ClientFeed) -> asyncio.TimerHandle | None:
        """End the stream when its token expires (with the same leeway as at connect), so
        a revoked user's access lasts no longer than the token that granted it."""
        if self.grant is None:
            return None
        leeway = self.hub.settings.auth_leeway
        delay = max(0.0, self.grant.expires_at + leeway - time.time())
        return asyncio.get_running_loop().call_later(delay, feed.stop, TOKEN_EXPIRED)


@functools.lru_cache(maxsize=16)
def _by_delivery(metrics: Metrics, conflated: bool, delayed: bool) -> Gauge:
    """The streams-by-delivery child: labels() takes a lock and builds its key per call."""
    return metrics.streams_by_delivery.labels(str(conflated).lower(), str(delayed).lower())


def stream_headers(delivery: Delivery, coding: Coding) -> list[tuple[bytes, bytes]]:
    """The 200 answer's own headers (a GET's and a HEAD's)."""
    return [*HEADERS, *coding.headers, *delivery.headers()]


def stream_head(delivery: Delivery, coding: Coding) -> Response:
    """The answer to a HEAD: a GET's headers, without a body length (the stream has none)."""
    headers = stream_headers(delivery, coding)
    response = Response(headers={name.decode(): value.decode() for name, value in headers})
    del response.headers["content-length"]
    return response
