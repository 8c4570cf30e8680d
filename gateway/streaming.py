"""The /stocks response: one client's SSE stream, from attach to a clean end.

Per-client resources live in `__call__` (not in a generator handed to StreamingResponse,
which is only closed whenever the garbage collector gets to it).
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.aio.msg import Msg
from starlette.types import Receive, Scope, Send

from contracts.errors import InvalidTickError
from contracts.messages import PriceTick
from gateway import sse
from gateway.consumers import stream_sequence
from gateway.errors import GatewayError, StreamEndedError, problem_for
from gateway.hub import ClientFeed, Hub
from gateway.query import StreamQuery

logger = logging.getLogger(__name__)

CLIENT_CLOSED = "client closed"
HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class PriceStreamResponse:
    """An ASGI response streaming prices for one validated query."""

    def __init__(self, hub: Hub, query: StreamQuery) -> None:
        self.hub = hub
        self.query = query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with self.hub.attach(self.query) as feed:
                await self._stream(feed, receive, send)
        except GatewayError as exc:
            # attach() raises only before the response has started.
            await problem_for(exc)(scope, receive, send)

    async def _stream(self, feed: ClientFeed, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        settings = self.hub.settings
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        head = sse.retry_frame(settings.retry)
        if feed.start.reset is not None:
            head += sse.reset_frame(feed.start.reset.reason, feed.start.reset.detail)
        await send({"type": "http.response.body", "body": head, "more_body": True})
        logger.info(
            "client attached",
            extra={
                "client": feed.client_id,
                "consumer": feed.consumer.spec.name,
                "symbols": self.query.symbols or "*",
                "position": str(self.query.position or ""),
                "reset": feed.start.reset and feed.start.reset.reason,
            },
        )
        sent = 0
        reason = CLIENT_CLOSED
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(_stop_on_disconnect(receive, feed))
            try:
                while True:
                    batch = await feed.consumer.next_batch(settings.heartbeat)
                    body = frames(feed.id_prefix, batch) if batch else sse.HEARTBEAT
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    sent += len(batch)
            except StreamEndedError as end:
                reason = str(end)
            if not watcher.done():
                # Still connected: say why, and end the chunked body cleanly, so the
                # browser reconnects and resumes from its last id.
                final = sse.comment_frame(f"stream ended: {reason}; reconnect to resume")
                await send({"type": "http.response.body", "body": final, "more_body": False})
                watcher.cancel()
        logger.info(
            "client detached",
            extra={
                "client": feed.client_id,
                "reason": reason,
                "sent": sent,
                "seconds": round(time.monotonic() - started, 3),
            },
        )


async def _stop_on_disconnect(receive: Receive, feed: ClientFeed) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    feed.consumer.stop(CLIENT_CLOSED)


def frames(id_prefix: bytes, batch: list[Msg]) -> bytes:
    """The SSE frames of a batch of deliveries, as one write."""
    return b"".join([_frame(id_prefix, msg) for msg in batch])


def _frame(id_prefix: bytes, msg: Msg) -> bytes:
    event_id = id_prefix + stream_sequence(msg.reply)
    payload = msg.data
    if not sse.is_spliceable(payload):
        # Not the compact one-line JSON publishers write: re-encode it if it is a tick.
        try:
            payload = PriceTick.decode(payload).encode()
        except InvalidTickError as exc:
            logger.warning("tick skipped", extra={"subject": msg.subject, "error": str(exc)})
            return sse.comment_frame(f"skipped invalid message {event_id.decode()}")
    return sse.price_frame(event_id, payload)
