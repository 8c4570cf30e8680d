"""The /stocks response: one client's SSE stream, from attach to a clean end.

Per-client resources live in `__call__` (not in a generator handed to StreamingResponse,
which is only closed whenever the garbage collector gets to it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from starlette.types import Message, Receive, Scope, Send

from gateway import sse
from gateway.client_feed import ClientFeed
from gateway.errors import GatewayError, StreamEndedError, problem_for
from gateway.grants import Grant
from gateway.hub import DRAINING, Hub
from gateway.metrics import CONSUMER_LOST
from gateway.query import StreamQuery

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


class PriceStreamResponse:
    """An ASGI response streaming prices for one validated query."""

    def __init__(
        self,
        hub: Hub,
        query: StreamQuery,
        grant: Grant | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.hub = hub
        self.query = query
        self.grant = grant
        self.extra_headers = list(headers)  # security and CORS, on every answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        address = client[0] if client else "unknown"
        try:
            async with self.hub.attach(self.query, address) as feed:
                await self._stream(feed, receive, send)
        except GatewayError as exc:
            # attach() raises only before the response has started.
            self.hub.metrics.errors.labels(exc.kind).inc()
            problem = problem_for(exc)
            problem.raw_headers.extend(self.extra_headers)
            await problem(scope, receive, send)

    async def _stream(self, feed: ClientFeed, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        settings = self.hub.settings
        metrics = self.hub.metrics
        head = sse.retry_frame(settings.retry)
        if (reset := feed.start.reset) is not None:
            head += sse.reset_frame(reset.reason, reset.detail)
            metrics.resets_sent.labels(reset.reason).inc()
        # Built in the call: a local would live as long as the stream.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*HEADERS, *self.extra_headers],
            }
        )
        await send(_body(head))
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
        sent = 0
        reason = CLIENT_CLOSED
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        feed.attach_writer(task, loop.time())
        expiry = self._end_at_expiry(feed, loop)
        try:
            async with asyncio.TaskGroup() as tg:
                watcher = tg.create_task(_stop_on_disconnect(receive, feed))
                try:
                    while True:
                        frames = await feed.next_frames(settings.heartbeat)
                        # A client that does not read blocks this write once the socket's
                        # buffers are full; the hub's sweep cancels a write stuck past
                        # --send-timeout: the client loses its stream, not events.
                        feed.writing(loop.time())
                        await send(_body(frames.body if frames else sse.HEARTBEAT))
                        feed.written(loop.time())
                        if frames:
                            sent += frames.events
                            metrics.events_sent.inc(frames.events)
                            if frames.published is not None:
                                lag = max(0.0, time.time() - frames.published)
                                metrics.publish_to_send_seconds.observe(lag)
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
                if not watcher.done():
                    await _end(send, reason)
                    watcher.cancel()
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
                    "sent": sent,
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


async def _end(send: Send, reason: str) -> None:
    """Say why, and end the chunked body cleanly, so the browser reconnects and resumes
    from its last id. A client that does not read gets its socket closed instead."""
    final = sse.comment_frame(f"stream ended: {reason}; reconnect to resume")
    try:
        async with asyncio.timeout(FINAL_WRITE_TIMEOUT):
            await send({"type": "http.response.body", "body": final, "more_body": False})
    except TimeoutError:
        logger.info("final write abandoned", extra={"reason": reason})


def _body(chunk: bytes) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": True}


async def _stop_on_disconnect(receive: Receive, feed: ClientFeed) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    feed.stop(CLIENT_CLOSED)
