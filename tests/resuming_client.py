"""A client that behaves like EventSource: on any end it reconnects with Last-Event-ID.

It cycles through the gateway URLs it is given (as a Service would spread reconnects),
retries 503s and refused connections, and records every event and every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from tests.sse_client import Event, SSEStream


@dataclass
class Session:
    """What the client saw: events in arrival order, and how each connection ended."""

    events: list[Event] = field(default_factory=list)
    endings: list[str] = field(default_factory=list)
    resets: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)  # e.g. why a stream ended
    resume_gaps: list[float] = field(default_factory=list)  # disconnect -> next event, s

    @property
    def last_id(self) -> str | None:
        return self.events[-1].id if self.events else None

    @property
    def sequences(self) -> list[int]:
        return [e.sequence for e in self.events]


class ResumingClient:
    def __init__(
        self, urls: Sequence[str], params: dict[str, str] | None = None, retry: float = 0.05
    ) -> None:
        self.urls = list(urls)
        self.params = params or {}
        self.retry = retry
        self.session = Session()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Until stop(): connect, read, reconnect."""
        turn = 0
        disconnected_at: float | None = None
        timeout = httpx.Timeout(5.0, read=None)
        async with httpx.AsyncClient(timeout=timeout) as client:
            while not self.stopping.is_set():
                url = self.urls[turn % len(self.urls)]
                turn += 1
                headers = {"Last-Event-ID": self.session.last_id} if self.session.last_id else {}
                try:
                    disconnected_at = await self._read(client, url, headers, disconnected_at)
                except (httpx.TransportError, TimeoutError) as exc:
                    self.session.endings.append(f"{url}: {type(exc).__name__}")
                    disconnected_at = disconnected_at or time.monotonic()
                if not self.stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.retry):
                            await self.stopping.wait()

    async def _read(
        self,
        client: httpx.AsyncClient,
        url: str,
        headers: dict[str, str],
        disconnected_at: float | None,
    ) -> float | None:
        async with client.stream(
            "GET", f"{url}/stocks", params=self.params, headers=headers
        ) as response:
            if response.status_code != 200:
                self.session.endings.append(f"{url}: {response.status_code}")
                return disconnected_at or time.monotonic()
            stream = SSEStream(response)
            reader = asyncio.create_task(stream.read_into_queue())
            stopper = asyncio.create_task(self.stopping.wait())
            try:
                while True:
                    block_task = asyncio.create_task(stream.next_block(timeout=3600))
                    await asyncio.wait({block_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if not block_task.done():
                        block_task.cancel()
                        return None
                    block = block_task.result()
                    if block is None:
                        self.session.endings.append(f"{url}: {'cut' if stream.cut else 'end'}")
                        return time.monotonic()
                    self.session.comments.extend(block.comments)
                    if block.event == "reset":
                        self.session.resets.append(block)
                    elif block.data:
                        if disconnected_at is not None:
                            self.session.resume_gaps.append(time.monotonic() - disconnected_at)
                            disconnected_at = None
                        self.session.events.append(block)
            finally:
                stopper.cancel()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    def stop(self) -> None:
        self.stopping.set()
