"""A /stocks connection once its request has been read: the stream writes to the socket.

uvicorn's protocol hands the transport over to an `SseConnection` (gateway.http.handover),
so an open stream holds this object instead of uvicorn's parser, request cycle, ASGI task,
flow-control events and the ASGI messages of each write: a few hundred bytes instead of
~10 KB per connection, and one `transport.write` per coalesced write.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Sequence

from starlette.responses import Response
from uvicorn.server import ServerState

from gateway.errors import StreamEndedError
from gateway.feed.client import ClientFeed
from gateway.feed.outbox import LiveEvent
from gateway.feed.splice import CLIENT_CLOSED, DRAINING, SLOW_CLIENT
from gateway.http.encoding import Gzip
from gateway.http.sink import FINAL_WRITE_TIMEOUT, Headers

STREAM_HEAD = b"HTTP/1.1 200 OK\r\n"

logger = logging.getLogger(__name__)


class SseConnection(asyncio.Protocol):
    """The protocol of a streaming connection, and the stream's sink (gateway.http.sink).

    The client has nothing more to say once it has asked for the stream: what it sends is
    dropped, and its end (or a reset) ends the stream. The connection closes when the
    stream ends, so a browser reconnects afresh, possibly to another replica.
    """

    __slots__ = (
        "_chunked",
        "_gzip",
        "_server",
        "_waiter",
        "closed",
        "feed",
        "paused",
        "transport",
    )

    def __init__(self, transport: asyncio.Transport, server: ServerState, *, chunked: bool) -> None:
        self.transport = transport
        # uvicorn's server: its shutdown calls `shutdown()` on each of its connections and
        # waits for them to close; its default headers (Date) go on each answer.
        self._server = server
        server.connections.add(self)  # type: ignore[arg-type]
        self._chunked = chunked  # HTTP/1.0 has no chunked encoding: the close ends the body
        self.feed: ClientFeed | None = None  # once attached
        self.closed = False
        self.paused = False  # the transport's buffer is over its high-water mark
        self._waiter: asyncio.Future[None] | None = None
        self._gzip: Gzip | None = None  # the stream's compressor, if it asked for gzip

    # asyncio.Protocol

    # A function, not a method: the transport keeps `protocol.data_received` (uvloop
    # does) while the connection lasts, and a method's is a bound method each (64 B).
    @staticmethod
    def data_received(data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._server.connections.discard(self)
        if self.feed is not None:
            self.feed.stop(CLIENT_CLOSED)
        self._wake()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    def served(self, task: asyncio.Task[None]) -> None:
        """The stream's task is done. Ended cleanly, it has closed the connection; cut
        short (cancelled when the server stops, or failed), the client must not hang."""
        self._server.tasks.discard(task)  # uvicorn's set of its connections' tasks
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("stream failed", exc_info=exc)
        if not self.transport.is_closing():
            self.transport.abort()

    def shutdown(self) -> None:
        """uvicorn's server stopping (the hub has drained the streams before)."""
        if self.feed is not None:
            self.feed.stop(DRAINING)

    # gateway.http.sink.Sink

    @property
    def connected(self) -> bool:
        return not self.closed

    @property
    def direct(self) -> SseConnection:
        return self

    # gateway.feed.client.DirectSink

    @property
    def ready(self) -> bool:
        return not self.closed and not self.paused

    def write_events(self, events: Sequence[LiveEvent]) -> None:
        # The live feed's flush calls this once per client and flush: one join, one send.
        body = b"".join([event.frame for event in events])
        if self._gzip is not None:  # one test, for a stream that did not ask, and no call
            body = self._gzip.encode(body)
        self.transport.write(self._framed(body))

    def watching(self, feed: ClientFeed) -> SseConnection:
        # Itself, not a generator-based context manager: one object less per stream.
        self.feed = feed
        if self.closed:  # gone while its stream was being attached
            feed.stop(CLIENT_CLOSED)
        return self

    async def __aenter__(self) -> SseConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.feed = None

    async def answer(self, response: Response) -> None:
        if self.closed:
            return
        status = response.status_code
        head = [b"HTTP/1.1 %d %s\r\n" % (status, http.HTTPStatus(status).phrase.encode())]
        _append_headers(head, self._server.default_headers)
        _append_headers(head, response.raw_headers)
        head.append(b"connection: close\r\n\r\n")
        head.append(bytes(response.body))
        self._close_after(b"".join(head))

    async def begin(
        self, headers: Headers, body: bytes, timeout: float, gzip: Gzip | None, events: bytes
    ) -> None:
        if self.closed:
            return  # the feed is stopped: the stream ends before its first write
        self._gzip = gzip
        head = [STREAM_HEAD]
        _append_headers(head, self._server.default_headers)
        _append_headers(head, headers)
        if self._chunked:
            head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"connection: close\r\n\r\n")
        # The first events are a chunk of their own, as if written apart: one send call.
        for part in (body, events) if events else (body,):
            head.append(self._framed(gzip.encode(part) if gzip is not None else part))
        self.transport.write(b"".join(head))
        await self._drain(timeout)

    async def write(self, body: bytes, timeout: float) -> None:
        if self.closed:
            return
        if self._gzip is not None:
            body = self._gzip.encode(body)
        self.transport.write(self._framed(body))
        if self.paused:
            await self._drain(timeout)

    async def end(self, final: bytes) -> None:
        if self.closed:
            return
        if self._gzip is not None:
            final = self._gzip.finish(final)
        self._close_after(self._framed(final) + b"0\r\n\r\n" if self._chunked else final)

    # Internals

    def _framed(self, body: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(body), body) if self._chunked else body

    async def _drain(self, timeout: float) -> None:
        """Until the client has read enough; a deadline only while it has not (rare)."""
        if not self.paused or self.closed:
            return
        try:
            async with asyncio.timeout(timeout):
                while self.paused and not self.closed:
                    self._waiter = asyncio.get_running_loop().create_future()
                    await self._waiter
        except TimeoutError:
            raise StreamEndedError(SLOW_CLIENT) from None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._waiter = None

    def _close_after(self, data: bytes) -> None:
        """Write the last bytes and close; a client that has not read them within
        FINAL_WRITE_TIMEOUT is cut off (a close waits for the buffer to empty)."""
        transport = self.transport
        transport.write(data)
        transport.close()
        if transport.get_write_buffer_size():
            asyncio.get_running_loop().call_later(FINAL_WRITE_TIMEOUT, transport.abort)


def _append_headers(head: list[bytes], headers: Headers) -> None:
    # The gateway's own headers: constants, and at most an allow-listed Origin echoed.
    for name, value in headers:
        head.append(b"%b: %b\r\n" % (name, value))
