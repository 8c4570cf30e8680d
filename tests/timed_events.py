"""Delivery-control tests: an SSE stream's events with the client's own receive times,
collected in the background, and the answers those tests check."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from nats.js import JetStreamContext

from tests.servers import eventually
from tests.sse_client import Event, SSEStream


@dataclass(frozen=True)
class Received:
    """One event, and when the client read it: `at` on its monotonic clock (intervals),
    `wall` on the epoch clock (compared with JetStream's stored time, same host)."""

    event: Event
    at: float
    wall: float

    @property
    def symbol(self) -> str:
        symbol: str = self.event.json()["symbol"]
        return symbol

    @property
    def price(self) -> float:
        price: float = self.event.json()["price"]
        return price

    @property
    def sequence(self) -> int:
        return self.event.sequence


class Collector:
    """Every data event of a stream, in arrival order, as it arrives."""

    def __init__(self, stream: SSEStream) -> None:
        self.stream = stream
        self.received: list[Received] = []

    async def run(self) -> None:
        while True:
            event = await self.stream.next_event(timeout=3600)
            self.received.append(Received(event, time.monotonic(), time.time()))

    def of(self, symbol: str) -> list[Received]:
        return [r for r in self.received if r.symbol == symbol]

    async def until(
        self, check: Callable[[list[Received]], bool], *, within: float, what: str
    ) -> list[Received]:
        """The events so far, once `check` holds for them; fails naming `what` after
        `within` seconds."""
        await eventually(lambda: check(self.received), within=within, what=what)
        return list(self.received)

    async def count(self, n: int, *, within: float = 5.0) -> list[Received]:
        return await self.until(lambda r: len(r) >= n, within=within, what=f"{n} events")

    async def quiet(self, seconds: float) -> None:
        """No further event arrives for `seconds`."""
        before = len(self.received)
        await asyncio.sleep(seconds)
        assert len(self.received) == before, self.received[before:]


@asynccontextmanager
async def collecting(stream: SSEStream) -> AsyncIterator[Collector]:
    """A Collector reading `stream` for the duration of the block, its only reader. The
    stream is attached to its feed already: its answer's head has come."""
    collector = Collector(stream)
    task = asyncio.create_task(collector.run())
    try:
        yield collector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # raises what ended it early (the stream ended)


async def stored_at(js: JetStreamContext, sequence: int, stream: str = "PRICES") -> float:
    """When JetStream stored the message at `sequence`, as epoch seconds (its clock)."""
    message = await js.get_msg(stream, sequence)
    assert message.time is not None
    return message.time.timestamp()


async def request(
    url: str, query: str = "", headers: dict[str, str] | None = None, method: str = "GET"
) -> httpx.Response:
    """One /stocks request with a raw query string (`a=1&a=2`); the body is read unless
    it is an event stream."""
    async with (
        httpx.AsyncClient(base_url=url) as client,
        client.stream(method, f"/stocks?{query}", headers=headers) as response,
    ):
        if response.headers.get("content-type") != "text/event-stream":
            await response.aread()
        return response
