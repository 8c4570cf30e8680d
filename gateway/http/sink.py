"""Where a stream's bytes go: the `Sink` protocol, and `AsgiSink`, a stream written through
an ASGI server's `send` (a GET /stocks that kept uvicorn's way: one pipelined behind
another request). The other sink, the connection itself, is gateway.http.connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import StreamEndedError
from gateway.feed.client import ClientFeed
from gateway.feed.splice import CLIENT_CLOSED, SLOW_CLIENT
from gateway.feed.writes import DirectSink
from gateway.http.encoding import Gzip

logger = logging.getLogger(__name__)

FINAL_WRITE_TIMEOUT = 1.0

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

    async def begin(
        self, headers: Headers, body: bytes, timeout: float, gzip: Gzip | None, events: bytes
    ) -> None:
        """The 200 answer with `headers`, and the first bytes of its endless body; with
        `gzip`, this write and every later one go through it (`headers` say so). `events`
        (may be empty): the first events, as a write of their own to the client (its own
        chunk), in the same send as the head when the sink can."""

    async def write(self, body: bytes, timeout: float) -> None:
        """More of the body. Waits while the client is not reading, and raises
        StreamEndedError(SLOW_CLIENT) once it has waited `timeout` seconds: the client
        loses its stream, not events, and resumes by its last id."""

    async def end(self, final: bytes) -> None:
        """The last bytes, within FINAL_WRITE_TIMEOUT; a client that does not read them
        loses its connection instead."""


class AsgiSink:
    """A stream written through an ASGI server's `send`."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._watcher: asyncio.Task[None] | None = None
        self._gzip: Gzip | None = None

    @property
    def connected(self) -> bool:
        return self._watcher is None or not self._watcher.done()

    @property
    def direct(self) -> None:
        return None  # every write goes through the server's send()

    @asynccontextmanager
    async def watching(self, feed: ClientFeed) -> AsyncIterator[object]:
        # ASGI tells of a disconnect only through receive(): one task waits on it, and is
        # stopped when the stream ends.
        async with asyncio.TaskGroup() as tg:
            self._watcher = tg.create_task(_stop_on_disconnect(self._receive, feed))
            try:
                yield self
            finally:
                self._watcher.cancel()

    async def answer(self, response: Response) -> None:
        await response(self._scope, self._receive, self._send)

    async def begin(
        self, headers: Headers, body: bytes, timeout: float, gzip: Gzip | None, events: bytes
    ) -> None:
        self._gzip = gzip
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self.write(body, timeout)
        if events:
            await self.write(events, timeout)

    async def write(self, body: bytes, timeout: float) -> None:
        if self._gzip is not None:
            body = self._gzip.encode(body)
        # The server's send() waits inside while the client does not read: a deadline per
        # write (this way is rare: the connection itself takes almost every stream).
        try:
            async with asyncio.timeout(timeout):
                await self._send(_body(body))
        except TimeoutError:
            raise StreamEndedError(SLOW_CLIENT) from None

    async def end(self, final: bytes) -> None:
        if self._gzip is not None:
            final = self._gzip.finish(final)
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
