"""A test SSE client over real HTTP (httpx): keeps the raw bytes and parses events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    event: str = "message"
    id: str | None = None
    data: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def sequence(self) -> int:
        """The stream sequence in the event's id."""
        assert self.id is not None, "event has no id"
        return int(self.id.rsplit("-", 1)[1])


class SSEStream:
    """Reads one response: `next_event()` returns each dispatched block, comments included."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.raw = bytearray()
        # A reader task feeds a queue: a timeout while waiting must not cancel the
        # response's byte iterator (a cancelled async generator cannot be resumed).
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._buffer = b""
        self.ended = False
        self.cut: httpx.TransportError | None = None

    async def read_into_queue(self) -> None:
        # A gzipped stream is decoded write by write: each decodes whole (sync flush).
        gzip = self.response.headers.get("content-encoding") == "gzip"
        inflate = zlib.decompressobj(wbits=31) if gzip else None
        try:
            async for chunk in self.response.aiter_raw():
                await self._chunks.put(inflate.decompress(chunk) if inflate else chunk)
        except httpx.TransportError as exc:
            self.cut = exc  # the body did not end cleanly
        finally:
            await self._chunks.put(None)

    async def _read_block(self) -> bytes | None:
        while b"\n\n" not in self._buffer:
            if self.ended:
                return None
            chunk = await self._chunks.get()
            if chunk is None:
                self.ended = True
                return None
            self.raw += chunk
            self._buffer += chunk
        block, _, self._buffer = self._buffer.partition(b"\n\n")
        return block

    async def next_block(self, timeout: float = 5.0) -> Event | None:
        """The next block (an event, a retry or comment-only block); None at the end."""
        async with asyncio.timeout(timeout):
            block = await self._read_block()
        if block is None:
            return None
        event = Event()
        data: list[str] = []
        for line in block.decode().split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                event.comments.append(value)
            elif name == "event":
                event.event = value
            elif name == "id":
                event.id = value
            elif name == "data":
                data.append(value)
            elif name == "retry":
                event.retry = int(value)
        event.data = "\n".join(data)
        return event

    async def next_event(self, timeout: float = 5.0) -> Event:
        """The next block that carries data (skips retry and comment blocks)."""
        async with asyncio.timeout(timeout):
            while True:
                block = await self.next_block(timeout)
                if block is None:
                    raise AssertionError("stream ended before the next event")
                if block.data:
                    return block

    async def events(self, count: int, timeout: float = 5.0) -> list[Event]:
        return [await self.next_event(timeout) for _ in range(count)]

    async def assert_quiet(self, seconds: float) -> None:
        """No data event arrives for `seconds` (heartbeats may)."""
        try:
            event = await self.next_event(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event {event}")


# httpx asks for gzip by itself; the streams opened here ask for none unless told to, as
# the tests were written for the bytes of an uncompressed stream (socket-buffer sizes).
PLAIN = {"Accept-Encoding": "identity"}


@asynccontextmanager
async def open_stream(
    base_url: str,
    params: Mapping[str, str | list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[SSEStream]:
    timeout = httpx.Timeout(10.0, read=None)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=timeout) as client,
        client.stream(
            "GET", "/stocks", params=params, headers=PLAIN | dict(headers or {})
        ) as response,
    ):
        assert response.status_code == 200, (response.status_code, await response.aread())
        stream = SSEStream(response)
        reader = asyncio.create_task(stream.read_into_queue())
        try:
            yield stream
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
