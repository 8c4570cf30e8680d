"""One client's SSE stream, from attach to a clean end, written to a `Sink`.

Two sinks carry it: the connection itself (gateway.http.connection, the way GET /stocks
normally takes: no ASGI in between) and an ASGI server's `send` (`AsgiSink`, for a GET
that keeps uvicorn's way: one pipelined behind another request).

Per-client resources live in `run` (not in a generator handed to StreamingResponse,
which is only closed whenever the garbage collector gets to it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.auth.grants import Grant
from gateway.errors import GatewayError, StreamEndedError, problem_for
from gateway.feed import sse
from gateway.feed.client import ClientFeed, DirectSink
from gateway.http.query import StreamQuery
from gateway.hub import DRAINING, Hub
from gateway.metrics import CONSUMER_LOST

logger = logging.getLogger(__name__)

CLIENT_CLOSED = "client closed"
SLOW_CLIENT = "client too slow"
TOKEN_EXPIRED = "token expired"
FINAL_WRITE_TIMEOUT = 1.0
HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

Headers = Sequence[tuple[bytes, bytes]]


class Sink(Protocol):
    """Where a stream's bytes go."""

    @property
    def connected(self) -> bool:
        """False once the client has gone."""

    @property
    def direct(self) -> DirectSink | None:
        """The sink as one the live feed may write to itself, if it is one."""

    def watching(self, feed: ClientFeed) -> AbstractAsyncContextManager[object]:
        """Inside it, the client going away stops `feed` (CLIENT_CLOSED)."""

    async def answer(self, response: Response) -> None:
        """A whole answer instead of a stream (a problem), then the end of the exchange."""

    async def begin(self, headers: Headers, body: bytes) -> None:
        """The 200 answer with `headers`, and the first bytes of its endless body."""

    async def write(self, body: bytes) -> None:
        """More of the body; waits while the client is not reading."""

    async def end(self, final: bytes) -> None:
        """The last bytes, within FINAL_WRITE_TIMEOUT; a client that does not read them
        loses its connection instead."""


class PriceStream:
    """The stream of prices for one validated query."""

    __slots__ = ("address", "extra_headers", "grant", "hub", "query")

    def __init__(
        self,
        hub: Hub,
        query: StreamQuery,
        address: str,
        grant: Grant | None = None,
        headers: Headers = (),
    ) -> None:
        self.hub = hub
        self.query = query
        self.address = address
        self.grant = grant
        self.extra_headers = headers  # security and CORS, on every answer

    async def run(self, sink: Sink) -> None:
        try:
            async with (
                self.hub.attach(self.query, self.address) as feed,
                sink.watching(feed),
            ):
                await self._stream(feed, sink)
        except GatewayError as exc:
            # attach() raises only before the response has started.
            self.hub.metrics.errors.labels(exc.kind).inc()
            problem = problem_for(exc)
            problem.raw_headers.extend(self.extra_headers)
            await sink.answer(problem)

    async def _stream(self, feed: ClientFeed, sink: Sink) -> None:
        started = time.monotonic()
        settings = self.hub.settings
        metrics = self.hub.metrics
        head = sse.retry_frame(settings.retry)
        if (reset := feed.start.reset) is not None:
            head += sse.reset_frame(reason=reset.reason, detail=reset.detail)
            metrics.resets_sent.labels(reset.reason).inc()
        await sink.begin([*HEADERS, *self.extra_headers], head)
        self.extra_headers = ()  # sent; not kept for the life of the stream
        logger.info(
            "stream opened",
            extra={
                "client": feed.client_id,
                "consumer": feed.consumer and feed.consumer.spec.name,
                "symbols": self.query.symbols or "*",
                "position": str(self.query.position or ""),
                "reset": reset and reset.reason,
                "user": self.grant and self.grant.subject,
            },
        )
        metrics.open_streams.inc()
        reason = CLIENT_CLOSED
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        feed.attach_writer(task, loop.time())
        if (direct := sink.direct) is not None:
            feed.write_directly(direct)
            del direct
        expiry = self._end_at_expiry(feed, loop)
        try:
            try:
                while True:
                    frames = await feed.next_frames(settings.heartbeat)
                    # A client that does not read blocks this write once the socket's
                    # buffers are full; the hub's sweep cancels a write stuck past
                    # --send-timeout: the client loses its stream, not events.
                    feed.writing(loop.time())
                    await sink.write(frames.body if frames else sse.HEARTBEAT)
                    feed.written(loop.time())
                    if frames:
                        feed.count_sent(frames)
            except StreamEndedError as end:
                reason = str(end)
                if reason not in {CLIENT_CLOSED, DRAINING, TOKEN_EXPIRED}:
                    metrics.errors.labels(CONSUMER_LOST).inc()
            except asyncio.CancelledError:
                if not feed.too_slow or task is None:
                    raise
                task.uncancel()  # the sweep's cancel, not the server's
                reason = SLOW_CLIENT
                metrics.slow_client_disconnects.inc()
            if sink.connected:
                # Say why, so the browser reconnects and resumes from its last id.
                await sink.end(sse.comment_frame(f"stream ended: {reason}; reconnect to resume"))
        finally:
            if expiry is not None:
                expiry.cancel()
            metrics.open_streams.dec()
            metrics.streams_ended.labels(reason).inc()
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

    def _end_at_expiry(
        self, feed: ClientFeed, loop: asyncio.AbstractEventLoop
    ) -> asyncio.TimerHandle | None:
        """End the stream when its token expires (with the same leeway as at connect), so
        a revoked user's access lasts no longer than the token that granted it."""
        if self.grant is None:
            return None
        leeway = self.hub.settings.auth_leeway
        delay = max(0.0, self.grant.expires_at + leeway - time.time())
        return loop.call_later(delay, feed.stop, TOKEN_EXPIRED)


def stream_head() -> Response:
    """The answer to a HEAD: a GET's headers, without a body length (the stream has none)."""
    response = Response(headers={name.decode(): value.decode() for name, value in HEADERS})
    del response.headers["content-length"]
    return response


class AsgiSink:
    """A stream written through an ASGI server's `send`."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._watcher: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._watcher is None or not self._watcher.done()

    @property
    def direct(self) -> None:
        return None  # every write goes through the server's send()

    @asynccontextmanager
    async def watching(self, feed: ClientFeed) -> AsyncIterator[object]:
        # ASGI tells of a disconnect only through receive(): one task waits on it.
        async with asyncio.TaskGroup() as tg:
            self._watcher = tg.create_task(_stop_on_disconnect(self._receive, feed))
            try:
                yield self
            finally:
                self._watcher.cancel()

    async def answer(self, response: Response) -> None:
        await response(self._scope, self._receive, self._send)

    async def begin(self, headers: Headers, body: bytes) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self.write(body)

    async def write(self, body: bytes) -> None:
        await self._send(_body(body))

    async def end(self, final: bytes) -> None:
        try:
            async with asyncio.timeout(FINAL_WRITE_TIMEOUT):
                await self._send({"type": "http.response.body", "body": final, "more_body": False})
        except TimeoutError:
            logger.info("final write abandoned")


def _body(chunk: bytes) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": True}


async def _stop_on_disconnect(receive: Receive, feed: ClientFeed) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    feed.stop(CLIENT_CLOSED)
