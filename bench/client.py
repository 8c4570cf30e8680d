"""One SSE client as a load generator holds it: reads, parses, times and checks its events.

Raw asyncio protocol, minimal HTTP/1.1 + chunked + SSE parsing (bench.wire). Per event it
keeps only the key (for the exactness check) and a latency bucket in the counters its
process shares (`Stats`); the receive time is taken once per socket read.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from datetime import UTC, datetime
from typing import cast

from bench.checking import ConflatedCheck, DeliveryCheck
from bench.stats import BUCKETS_PER_SECOND
from bench.wire import TIMESTAMP_FIELD, ProtocolError, ResponseDecoder

_TS_CACHE_LIMIT = 200_000
_TS_OFFSET = len(TIMESTAMP_FIELD)


class Stats:
    """Counters shared by the connections of this process; reset by `mark`."""

    def __init__(self) -> None:
        self.min_key = 0  # latencies are kept for keys >= min_key only
        self.window_events = 0
        self.window_bytes = 0  # socket bytes read, HTTP and chunk framing included
        self.hist: dict[int, int] = {}
        self.max_latency = 0.0
        self.timestamps: dict[bytes, float] = {}  # raw timestamp -> epoch seconds

    def reset(self, min_key: int) -> None:
        self.min_key = min_key
        self.window_events = 0
        self.window_bytes = 0
        self.hist = {}
        self.max_latency = 0.0

    def remember(self, raw: bytes) -> float:
        """The epoch seconds of a timestamp not in the cache, now cached."""
        published = _epoch(raw)
        if len(self.timestamps) > _TS_CACHE_LIMIT:
            self.timestamps.clear()
        self.timestamps[raw] = published
        return published


class Client(asyncio.Protocol):
    """One SSE client: connects, sends the request, counts and checks what arrives."""

    def __init__(
        self,
        stats: Stats,
        ident: int,
        request: bytes,
        symbols: frozenset[int],
        target: int,
        conflate: tuple[float, float] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,  # the running loop (None: look it up)
        continues: Client | None = None,  # the same client's last connection (exact clients)
    ) -> None:
        self.stats = stats
        self.ident = ident
        self.request = request
        self.target = target  # note the time the target-th event arrives (0: no target)
        self.decoder = ResponseDecoder()
        # A conflated client (conflate: interval, tolerance in seconds) also keeps each
        # event's receive time and its tick's publish time, for the interval rule.
        self.times: array[float] | None = None
        self.stamps: array[float] | None = None
        self.keys: array[int]
        self.check: DeliveryCheck | ConflatedCheck
        if continues is not None:  # one history across both: one check judges it whole
            self.keys = continues.keys
            self.check = continues.check
        else:
            self.keys = array("q")
            self.check = DeliveryCheck(symbols)
        if conflate is not None:
            self.times = array("d")
            self.stamps = array("d")
            self.check = ConflatedCheck(symbols, *conflate)
        self.transport: asyncio.Transport | None = None
        self.started = time.perf_counter()
        self.first_byte: float | None = None  # seconds from connect start to the first body byte
        self.first_event: float | None = None
        self.target_reached: float | None = None
        self.last_id: bytes = continues.last_id if continues is not None else b""
        self.heartbeats = 0
        self.resets = 0
        self.closed = False  # by us or by the server
        self.closed_by_server = False
        self.body_ended = False
        self.error: str | None = None
        loop = loop or asyncio.get_running_loop()
        self.answered: asyncio.Future[int] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.stats.window_bytes += len(data)
        decoder = self.decoder
        try:
            blocks = decoder.feed(data)
        except ProtocolError as exc:
            self._fail(str(exc))
            return
        if self.first_byte is None and not self._body_started():
            return
        if decoder.ended:
            self.body_ended = True
        if blocks:
            self._take(blocks, now)

    def _body_started(self) -> bool:
        """Whether the body has begun; the first time it has, note when."""
        decoder = self.decoder
        if decoder.status and decoder.status != 200:
            self._fail(f"status {decoder.status}")
            return False
        if not decoder.body_bytes:
            return False
        self.first_byte = time.perf_counter() - self.started
        if not self.answered.done():
            self.answered.set_result(200)
        return True

    def _take(self, blocks: list[bytes], now: float) -> None:
        # The loader's hot loop: locals, and a call per event only on a timestamp cache miss.
        stats = self.stats
        min_key = stats.min_key
        hist = stats.hist
        cache = stats.timestamps
        append = self.keys.append
        events = 0
        last = b""
        for block in blocks:
            if block[:4] == b"id: ":
                line_end = block.find(b"\n")
                key = int(block[block.rfind(b"-", 0, line_end) + 1 : line_end])
                append(key)
                events += 1
                last = block
                if key >= min_key:
                    at = block.find(TIMESTAMP_FIELD) + _TS_OFFSET
                    raw = block[at : block.find(b'"', at)]
                    published = cache.get(raw)
                    if published is None:
                        published = stats.remember(raw)
                    latency = now - published
                    bucket = int(latency * BUCKETS_PER_SECOND) if latency > 0 else 0
                    hist[bucket] = hist.get(bucket, 0) + 1
                    if latency > stats.max_latency:
                        stats.max_latency = latency
            elif block[:1] == b":":
                self.heartbeats += 1
            elif b"event: reset" in block:
                self.resets += 1
        if events:
            stats.window_events += events
            if self.times is not None:
                self._time(blocks, now, events)
            self._progress(last)

    def _time(self, blocks: list[bytes], now: float, events: int) -> None:
        """A conflated client's receive and publish times of the events just taken."""
        assert self.times is not None
        assert self.stamps is not None
        self.times.extend(array("d", (now,)) * events)
        stats = self.stats
        for block in blocks:
            if block[:4] == b"id: ":
                at = block.find(TIMESTAMP_FIELD) + _TS_OFFSET
                raw = block[at : block.find(b'"', at)]
                published = stats.timestamps.get(raw)
                self.stamps.append(published if published is not None else stats.remember(raw))

    def _progress(self, last: bytes) -> None:
        self.last_id = last[4 : last.find(b"\n")]
        if self.first_event is None:
            self.first_event = time.perf_counter() - self.started
        if self.target and self.target_reached is None and len(self.keys) >= self.target:
            self.target_reached = time.perf_counter() - self.started

    def _fail(self, error: str) -> None:
        self.error = error
        if not self.answered.done():
            self.answered.set_result(self.decoder.status or -1)
        self.close()

    def eof_received(self) -> bool | None:
        self.closed_by_server = not self.closed
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed_by_server = True
        self.closed = True
        if not self.answered.done():
            self.answered.set_result(self.decoder.status or -1)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


def _epoch(raw: bytes) -> float:
    try:
        return datetime.fromisoformat(raw.decode()).timestamp()
    except ValueError:
        return time.time()  # not a timestamp: count no latency rather than fail


async def parse_rate(events_per_read: int, events: int = 100_000) -> float:
    """Events/s this process parses when each read holds `events_per_read` events, every
    event going to 100 connections (as a tick goes to its symbol's clients)."""
    stats = Stats()
    conns = [Client(stats, i, b"", frozenset(), 0) for i in range(100)]
    for conn in conns:
        conn.data_received(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nd\r\nretry: 2000\n\n\r\n"
        )
    reads = []
    for n in range(events // 100 // events_per_read):
        frames = []
        for k in range(events_per_read):
            event_id = b"bench-%d" % (n * events_per_read + k + 1)
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
            frames.append(
                b"id: "
                + event_id
                + b'\nevent: stockUpdate\ndata: {"id":"'
                + event_id
                + b'","symbol":"SYM01","price":101.25,"timestamp":"'
                + stamp
                + b'","source":"bench"}\n\n'
            )
        body = b"".join(frames)
        reads.append(b"%x\r\n%s\r\n" % (len(body), body))
    started = time.perf_counter()
    for data in reads:
        for conn in conns:
            conn.data_received(data)
    return len(reads) * events_per_read * len(conns) / (time.perf_counter() - started)
