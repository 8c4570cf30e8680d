"""`python -m bench.loader`: one load-generator process holding thousands of SSE clients.

Raw asyncio protocols on uvloop, minimal HTTP/1.1 + chunked + SSE parsing (bench.wire).
Driven by the benchmark over stdin/stdout, one JSON object per line each way; see
`Loader.handle` for the operations. Per event it keeps only the key (for the exactness
check) and a latency bucket; the receive time is taken once per socket read.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
from array import array
from datetime import UTC, datetime
from typing import Any, cast

import uvloop

from bench.checking import ConflatedCheck, DeliveryCheck, PublishedLog, Tally
from bench.reconnect import STORM_OPS, Reconnector
from bench.stats import BUCKETS_PER_SECOND
from bench.wire import TIMESTAMP_FIELD, ProtocolError, ResponseDecoder

CONNECT_TIMEOUT = 30.0
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


class Connection(asyncio.Protocol):
    """One SSE client: connects, sends the request, counts and checks what arrives."""

    def __init__(
        self,
        loader: Loader,
        ident: int,
        request: bytes,
        symbols: frozenset[int],
        target: int,
        conflate: tuple[float, float] | None = None,
    ) -> None:
        self.loader = loader
        self.ident = ident
        self.request = request
        self.target = target  # note the time the target-th event arrives (0: no target)
        self.decoder = ResponseDecoder()
        self.keys: array[int] = array("q")
        # A conflated client (conflate: interval, tolerance in seconds) also keeps each
        # event's receive time and its tick's publish time, for the interval rule.
        self.times: array[float] | None = None
        self.stamps: array[float] | None = None
        self.check: DeliveryCheck | ConflatedCheck = DeliveryCheck(symbols)
        if conflate is not None:
            self.times = array("d")
            self.stamps = array("d")
            self.check = ConflatedCheck(symbols, *conflate)
        self.transport: asyncio.Transport | None = None
        self.started = time.perf_counter()
        self.first_byte: float | None = None  # seconds from connect start to the first body byte
        self.first_event: float | None = None
        self.target_reached: float | None = None
        self.last_id = b""
        self.heartbeats = 0
        self.resets = 0
        self.closed = False  # by us or by the server
        self.closed_by_server = False
        self.body_ended = False
        self.error: str | None = None
        self.answered: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.loader.stats.window_bytes += len(data)
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
        stats = self.loader.stats
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
        stats = self.loader.stats
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
        if self.loader.reconnector is not None:
            self.loader.reconnector.lost(self)

    def successor(self, request: bytes) -> Connection:
        """The same client's next connection (exact clients only): it continues this one's
        history, so one check judges everything the client got across both."""
        after = Connection(self.loader, self.ident, request, self.check.symbols, 0)
        after.keys = self.keys
        after.check = self.check
        after.last_id = self.last_id
        return after

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


class Loader:
    """The connections of this process and the operations the benchmark asks of them."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        # The address connections come from (None: the kernel's choice): one address has
        # only ~28k ports towards one server port.
        self.source: tuple[str, int] | None = None
        self.stats = Stats()
        self.log = PublishedLog()
        self.connections: dict[int, Connection] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.reconnector: Reconnector | None = None  # W5: armed, lost clients reconnect

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "open":
            return await self.open(
                request["conns"],
                rate=request.get("rate"),
                concurrency=request.get("concurrency", 100),
                lifetime=request.get("lifetime"),
            )
        if op == "close":
            return {"closed": self.close_connections(request.get("ids"))}
        if op == "mark":
            self.stats.reset(request["min_key"])
            return {}
        if op == "stats":
            return self.report()
        if op == "published":
            self.log.extend((key, symbol) for key, symbol in request["ticks"])
            return {}
        if op == "check":
            return self.check(request.get("final", False)).__dict__
        if op == "conn":
            return self.describe(self.connections[request["id"]], request.get("keys", False))
        if op in STORM_OPS:
            return await self.storm(request)
        if op == "quit":
            raise SystemExit(0)
        raise ValueError(f"unknown op {op!r}")

    async def storm(self, request: dict[str, Any]) -> dict[str, Any]:
        """W5's operations (bench.reconnect): arm, storm (progress), calm."""
        if request["op"] == "arm":
            self.reconnector = Reconnector(self, request)
        if self.reconnector is None:
            raise ValueError("arm first")
        return await self.reconnector.handle(request)

    def close_connections(self, ids: list[int] | None) -> int:
        """Close the connections `ids` (None: all); how many were still open."""
        targets = self.connections.values() if ids is None else map(self.connections.get, ids)
        closed = 0
        for conn in targets:
            if conn is not None and not conn.closed:
                conn.close()
                closed += 1
        return closed

    async def open(
        self,
        specs: list[dict[str, Any]],
        *,
        rate: float | None,
        concurrency: int,
        lifetime: float | None,
    ) -> dict[str, Any]:
        """Open connections as fast as `concurrency` allows, or at `rate` per second
        whatever the answers (open loop); answer once every one has answered or failed."""
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(concurrency)
        started = loop.time()
        outcomes: list[tuple[int, float | None]] = []

        async def one(index: int, spec: dict[str, Any]) -> None:
            if rate:
                delay = started + index / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                status, connect = await self.connect(spec)
            else:
                async with limit:
                    status, connect = await self.connect(spec)
            outcomes.append((status, connect))
            if lifetime is not None and status == 200:
                loop.call_later(lifetime, self.connections[spec["id"]].close)

        async with asyncio.TaskGroup() as tg:
            for index, spec in enumerate(specs):
                tg.create_task(one(index, spec))
        elapsed = loop.time() - started
        statuses: dict[str, int] = {}
        for status, _ in outcomes:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        return {
            "opened": statuses.get("200", 0),
            "statuses": statuses,
            "connect_s": [c for status, c in outcomes if status == 200 and c is not None],
            "seconds": elapsed,
        }

    async def connect(self, spec: dict[str, Any]) -> tuple[int, float | None]:
        """Connect one client; its status (-1: no answer) and its time to the first body byte."""
        headers = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
        request = (
            f"GET {spec['path']} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept: text/event-stream\r\n{headers}\r\n"
        ).encode()
        conflate = spec.get("conflate")  # [interval, tolerance] in seconds
        conn = Connection(
            self,
            spec["id"],
            request,
            frozenset(spec.get("symbols", ())),
            spec.get("target", 0),
            (conflate[0], conflate[1]) if conflate else None,
        )
        self.connections[conn.ident] = conn
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(
                    lambda: conn, self.host, self.port, local_addr=self.source
                )
                status = await conn.answered
        except (OSError, TimeoutError) as exc:
            conn.error = repr(exc)
            conn.close()
            return -1, None
        return status, conn.first_byte

    def report(self) -> dict[str, Any]:
        conns = self.connections.values()
        errors: dict[str, int] = {}
        for conn in conns:
            if conn.error:
                errors[conn.error] = errors.get(conn.error, 0) + 1
        return {
            "window_events": self.stats.window_events,
            "window_bytes": self.stats.window_bytes,
            "hist": self.stats.hist,
            "max_latency": self.stats.max_latency,
            "open": sum(not c.closed for c in conns),
            "closed_by_server": sum(c.closed_by_server for c in conns),
            "body_ended": sum(c.body_ended for c in conns),
            "heartbeats": sum(c.heartbeats for c in conns),
            "resets": sum(c.resets for c in conns),
            "errors": errors,
        }

    def check(self, final: bool) -> Tally:
        """Advance every connection's check: open connections are due every published key
        of their symbols up to the log's last one, closed ones up to their last event."""
        total = Tally()
        for conn in self.connections.values():
            if conn.decoder.status != 200:
                continue
            conn.check.advance(conn.keys, self.log, conn.times, conn.stamps)
            end = conn.check.last if conn.closed else self.log.last_key
            total.add(conn.check.tally(self.log, end, final=final, closed=conn.closed))
        return total

    def describe(self, conn: Connection, keys: bool) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "events": len(conn.keys),
            "last_id": conn.last_id.decode(),
            "first_byte": conn.first_byte,
            "first_event": conn.first_event,
            "target_reached": conn.target_reached,
            "closed": conn.closed,
            "resets": conn.resets,
            "failure": conn.error,
        }
        if keys:
            answer["keys"] = conn.keys.tolist()
        return answer


async def parse_rate(events_per_read: int, events: int = 100_000) -> float:
    """Events/s this process parses when each read holds `events_per_read` events, every
    event going to 100 connections (as a tick goes to its symbol's clients)."""
    loader = Loader("127.0.0.1", 0)
    conns = [Connection(loader, i, b"", frozenset(), 0) for i in range(100)]
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


async def serve(host: str, port: int, source: str = "") -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    loader = Loader(host, port)
    loader.source = (source, 0) if source else None
    out = sys.stdout.buffer
    while line := await reader.readline():
        request = json.loads(line)
        try:
            answer = await loader.handle(request)
        except SystemExit:
            break
        except Exception as exc:  # reported to the benchmark, which raises it
            answer = {"error": repr(exc)}
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
    for conn in loader.connections.values():
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loader")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="", help="local address to connect from")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # A full collection over thousands of connections pauses this loop for tens of ms, which
    # would show up as the server's latency; the few cycles left (closed protocols) can wait.
    gc.disable()
    uvloop.run(serve(args.host, args.port, args.source))


if __name__ == "__main__":
    main()
