"""SSE clients that behave like EventSource, on raw asyncio streams (bench.wire parses).

Each keeps a `History` of the ids it received. On any end of a stream (closed by the
gateway, the gateway gone, a 503) it reconnects, to the next gateway of its list, with
the last id it received as Last-Event-ID, after a short jittered wait. Behaviours:

- steady: stays connected; reconnects only when the stream ends.
- resuming: also drops its connection itself every few seconds and resumes.
- slow: reads a trickle (2 KiB/s) through a tiny receive buffer, slower than its ticks
  come, so the gateway's buffers fill: it falls back to a consumer of its own and may be
  ended as a slow client (then it resumes). It reads at full speed once the run ends.
- churn: connects without an id, stays a few seconds, leaves for good (one history each).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from bench.wire import ProtocolError, ResponseDecoder, event_key
from resilience.history import History

Behaviour = Literal["steady", "resuming", "slow", "churn"]
READ_SIZE = 65536
SLOW_BUFFER = 4096  # the slow client's stream buffer and socket receive buffer
SLOW_READ = 1024  # a slow client reads this much every SLOW_EVERY seconds (2 KiB/s)
SLOW_EVERY = 0.5


@dataclass
class Counters:
    """Totals over every client, for the report."""

    connects: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # non-200 answers
    refused: int = 0  # no gateway listening, or the connection broke before an answer
    ended_by_gateway: int = 0
    dropped_by_client: int = 0


class Client:
    def __init__(
        self,
        urls: Sequence[tuple[str, int]],
        symbols: Sequence[str],
        behaviour: Behaviour,
        rng: random.Random,
        counters: Counters,
        lifetime: float = 0.0,
    ) -> None:
        self.urls = list(urls)
        self.symbols = list(symbols)
        self.behaviour = behaviour
        self.rng = rng
        self.counters = counters
        self.lifetime = lifetime  # churn: seconds connected before leaving
        self.history = History(frozenset(symbols))
        self.last_id = ""  # the opaque id of the last event, sent back as Last-Event-ID
        self.stopping = asyncio.Event()
        self.calm = asyncio.Event()  # set when the run ends: a slow client reads again
        self.turn = rng.randrange(len(self.urls))

    def stop(self) -> None:
        self.calm.set()
        self.stopping.set()

    async def run(self) -> None:
        """Until stop() (or, for churn, one stay): connect, read, reconnect."""
        while not self.stopping.is_set():
            host, port = self.urls[self.turn % len(self.urls)]
            self.turn += 1
            await self._connection(host, port)
            if self.behaviour == "churn":
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05 + self.rng.random() * 0.25):
                    await self.stopping.wait()
        if self.behaviour == "churn":
            self.history.ended_early = True

    def _request(self, host: str, port: int) -> bytes:
        if not self.last_id:
            self.history.fresh()
        resume = f"Last-Event-ID: {self.last_id}\r\n" if self.last_id else ""
        return (
            f"GET /stocks?symbols={','.join(self.symbols)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Accept: text/event-stream\r\n{resume}\r\n"
        ).encode()

    async def _connection(self, host: str, port: int) -> None:
        slow = self.behaviour == "slow"
        sock = socket.socket()
        sock.setblocking(False)
        if slow:  # set before connecting, so the window the gateway sees is small too
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_BUFFER)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            reader, writer = await asyncio.open_connection(
                sock=sock, limit=SLOW_BUFFER if slow else 2**16
            )
        except OSError:
            sock.close()
            self.counters.refused += 1
            return
        try:
            writer.write(self._request(host, port))
            self.history.connected(port, int(self.last_id.rpartition("-")[2] or 0))
            self.counters.connects += 1
            await self._read(reader)
        except (OSError, ProtocolError):
            self.counters.refused += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = ResponseDecoder()
        loop = asyncio.get_running_loop()
        stay = self._stay()
        leave_at = loop.time() + stay if stay else None
        while not self.stopping.is_set():
            if leave_at is not None and loop.time() >= leave_at:
                self.counters.dropped_by_client += 1
                return
            size = READ_SIZE
            if self.behaviour == "slow" and not self.calm.is_set():
                await self._pause(SLOW_EVERY)  # a trickle: SLOW_READ bytes per SLOW_EVERY
                size = SLOW_READ
            wake = loop.time() + 1.0 if leave_at is None else min(leave_at, loop.time() + 1.0)
            try:
                async with asyncio.timeout_at(wake):
                    data = await reader.read(size)
            except TimeoutError:
                continue
            if not data:
                self.counters.ended_by_gateway += 1
                return
            if not self._take(decoder, data):
                return

    def _stay(self) -> float:
        if self.behaviour == "churn":
            return self.lifetime
        if self.behaviour == "resuming":
            return self.rng.uniform(3, 20)
        return 0.0

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.calm.wait()

    def _take(self, decoder: ResponseDecoder, data: bytes) -> bool:
        """Record the complete events in `data`; False when the answer is not a stream."""
        blocks = decoder.feed(data)
        if decoder.status and decoder.status != 200:
            statuses = self.counters.statuses
            statuses[decoder.status] = statuses.get(decoder.status, 0) + 1
            return False
        for block in blocks:
            if block[:4] == b"id: ":
                self.history.received(event_key(block))
                self.last_id = block[4 : block.find(b"\n")].decode()
            elif b"event: reset" in block:
                self.history.reset()
        return True
