"""The /stocks response: one client's SSE stream, from attach to a clean end.

Per-client resources live in `__call__` (not in a generator handed to StreamingResponse,
which is only closed whenever the garbage collector gets to it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from nats.aio.msg import Msg
from starlette.types import Message, Receive, Scope, Send

from contracts.errors import InvalidTickError
from contracts.messages import PriceTick
from gateway import sse
from gateway.consumers import stream_sequence
from gateway.errors import GatewayError, StreamEndedError, problem_for
from gateway.hub import DRAINING, ClientFeed, Hub
from gateway.metrics import CONSUMER_LOST, INVALID_MESSAGE, Metrics
from gateway.query import StreamQuery

logger = logging.getLogger(__name__)

CLIENT_CLOSED = "client closed"
SLOW_CLIENT = "client too slow"
FINAL_WRITE_TIMEOUT = 1.0
HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_TIMESTAMP = b'"timestamp":"'


class PriceStreamResponse:
    """An ASGI response streaming prices for one validated query."""

    def __init__(self, hub: Hub, query: StreamQuery) -> None:
        self.hub = hub
        self.query = query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        address = client[0] if client else "unknown"
        try:
            async with self.hub.attach(self.query, address) as feed:
                await self._stream(feed, receive, send)
        except GatewayError as exc:
            # attach() raises only before the response has started.
            self.hub.metrics.errors.labels(exc.kind).inc()
            await problem_for(exc)(scope, receive, send)

    async def _stream(self, feed: ClientFeed, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        settings = self.hub.settings
        metrics = self.hub.metrics
        head = sse.retry_frame(settings.retry)
        if (reset := feed.start.reset) is not None:
            head += sse.reset_frame(reset.reason, reset.detail)
            metrics.resets_sent.labels(reset.reason).inc()
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send(_body(head))
        logger.info(
            "stream opened",
            extra={
                "client": feed.client_id,
                "consumer": feed.consumer.spec.name,
                "symbols": self.query.symbols or "*",
                "position": str(self.query.position or ""),
                "reset": reset and reset.reason,
            },
        )
        metrics.open_streams.inc()
        sent = 0
        reason = CLIENT_CLOSED
        try:
            async with asyncio.TaskGroup() as tg:
                watcher = tg.create_task(_stop_on_disconnect(receive, feed))
                try:
                    while True:
                        batch = await feed.consumer.next_batch(settings.heartbeat)
                        body = frames(feed.id_prefix, batch, metrics) if batch else sse.HEARTBEAT
                        # A client that does not read blocks this write once the socket's
                        # buffers are full; past the timeout it loses its stream, not
                        # events: it resumes from its last id.
                        async with asyncio.timeout(settings.send_timeout):
                            await send(_body(body))
                        if batch:
                            sent += len(batch)
                            metrics.events_sent.inc(len(batch))
                            _observe_lag(batch[0], metrics)
                except StreamEndedError as end:
                    reason = str(end)
                    if reason not in {CLIENT_CLOSED, DRAINING}:
                        metrics.errors.labels(CONSUMER_LOST).inc()
                except TimeoutError:
                    reason = SLOW_CLIENT
                    metrics.slow_client_disconnects.inc()
                if not watcher.done():
                    await _end(send, reason)
                    watcher.cancel()
        finally:
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
    feed.consumer.stop(CLIENT_CLOSED)


def frames(id_prefix: bytes, batch: list[Msg], metrics: Metrics) -> bytes:
    """The SSE frames of a batch of deliveries, as one write."""
    return b"".join([_frame(id_prefix, msg, metrics) for msg in batch])


def _frame(id_prefix: bytes, msg: Msg, metrics: Metrics) -> bytes:
    event_id = id_prefix + stream_sequence(msg.reply)
    payload = msg.data
    if not sse.is_spliceable(payload):
        # Not the compact one-line JSON publishers write: re-encode it if it is a tick.
        try:
            payload = PriceTick.decode(payload).encode()
        except InvalidTickError as exc:
            metrics.errors.labels(INVALID_MESSAGE).inc()
            logger.warning("message skipped", extra={"subject": msg.subject, "error": str(exc)})
            return sse.comment_frame(f"skipped invalid message {event_id.decode()}")
    return sse.price_frame(event_id, payload)


def _observe_lag(msg: Msg, metrics: Metrics) -> None:
    """Tick timestamp to now, for one event per write (a parse per event would cost more
    than the framing itself)."""
    data = msg.data
    at = data.find(_TIMESTAMP)
    if at < 0:
        return
    start = at + len(_TIMESTAMP)
    try:
        stamp = datetime.fromisoformat(data[start : data.index(b'"', start)].decode())
    except ValueError:
        return
    metrics.publish_to_send_seconds.observe(max(0.0, time.time() - stamp.timestamp()))
