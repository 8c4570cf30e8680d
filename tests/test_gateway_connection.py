"""GET /stocks on the wire: the connection uvicorn hands over to the stream (SseConnection),
and the requests that keep uvicorn's ASGI way (pipelined behind another request).

Raw sockets, so the exact bytes are seen: the head, each chunk, the end of the body and
the close of the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx
import pytest
from nats.js import JetStreamContext

from gateway.feed.outbox import LiveEvent
from gateway.http.connection import SseConnection
from tests.aftermath import assert_unharmed
from tests.conftest import RunningGateway, StartGateway
from tests.scrape import scrape
from tests.servers import eventually
from tests.ticks import event_id, publish

pytestmark = pytest.mark.timeout(60)

READ_TIMEOUT = 5.0
HEARTBEAT = b": heartbeat\n\n"
T = TypeVar("T")


@dataclass
class Head:
    status: int
    headers: dict[str, str]


class RawStream:
    """One connection: requests written as given, answers read byte-exactly."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def head(self) -> Head:
        raw = await self._read(self.reader.readuntil(b"\r\n\r\n"))
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in filter(None, lines):
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"{name} twice"
            headers[name.lower()] = value.strip()
        return Head(int(status_line.split(" ")[1]), headers)

    async def chunk(self) -> bytes:
        size = int(await self._read(self.reader.readuntil(b"\r\n")), 16)
        data = await self._read(self.reader.readexactly(size + 2))
        assert data.endswith(b"\r\n")
        return data[:-2]

    async def event(self) -> bytes:
        """The next chunk that is not a heartbeat."""
        while (frame := await self.chunk()) == HEARTBEAT:
            pass
        return frame

    async def body(self, size: int) -> bytes:
        return await self._read(self.reader.readexactly(size))

    async def until(self, marker: bytes) -> bytes:
        return await self._read(self.reader.readuntil(marker))

    async def closed(self) -> bool:
        """True when the server ends the connection (a close or a reset) with nothing more."""
        try:
            return await self._read(self.reader.read()) == b""
        except ConnectionResetError:
            return True

    async def _read(self, read: Awaitable[T]) -> T:
        async with asyncio.timeout(READ_TIMEOUT):
            return await read


@asynccontextmanager
async def connect(gateway: RunningGateway, request: bytes) -> AsyncIterator[RawStream]:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.settings.port)
    writer.write(request)
    try:
        yield RawStream(reader, writer)
    finally:
        writer.close()


def get(target: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {target} HTTP/{version}", "Host: gateway", *headers, "", ""]
    return "\r\n".join(lines).encode()


def handed_over(gateway: RunningGateway) -> int:
    return sum(isinstance(c, SseConnection) for c in gateway.server.server_state.connections)


async def test_a_stream_is_written_by_its_own_connection_and_closed_at_its_end(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    async with connect(gateway, get("/stocks?symbols=AAPL")) as stream:
        head = await stream.head()
        assert head.status == 200
        assert head.headers["content-type"] == "text/event-stream"
        assert head.headers["transfer-encoding"] == "chunked"
        assert head.headers["connection"] == "close"
        assert head.headers["x-content-type-options"] == "nosniff"  # the security headers
        assert "date" in head.headers
        assert "server" not in head.headers
        assert await stream.chunk() == b"retry: 2000\n\n"
        assert handed_over(gateway) == 1

        sequence = await publish(js, "AAPL", "101.5")
        frame = await stream.chunk()
        expected_id = await event_id(js, sequence)
        assert frame.startswith(f"id: {expected_id}\nevent: stockUpdate\ndata: ".encode())
        data = json.loads(frame.split(b"data: ", 1)[1])
        assert (data["id"], data["symbol"], data["price"]) == (expected_id, "AAPL", 101.5)

        await gateway.stop()  # drains: the stream ends, says why, and the body ends
        assert await stream.event() == b": stream ended: gateway draining; reconnect to resume\n\n"
        assert await stream.chunk() == b""  # the last chunk
        assert await stream.closed()
    assert handed_over(gateway) == 0


async def test_http_1_0_gets_the_stream_unchunked_ended_by_the_close(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    async with connect(gateway, get("/stocks?symbols=MSFT", version="1.0")) as stream:
        head = await stream.head()
        assert head.status == 200
        assert "transfer-encoding" not in head.headers
        assert head.headers["connection"] == "close"
        assert await stream.until(b"\n\n") == b"retry: 2000\n\n"
        sequence = await publish(js, "MSFT")
        frame = await stream.until(b"}\n\n")
        while frame.startswith(HEARTBEAT):
            frame = frame.removeprefix(HEARTBEAT)
        assert frame.startswith(f"id: {await event_id(js, sequence)}\n".encode())
    await assert_unharmed(gateway, js)


async def test_a_stream_pipelined_behind_another_request_takes_the_asgi_way(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    async with connect(gateway, get("/healthz") + get("/stocks?symbols=AAPL")) as stream:
        health = await stream.head()
        assert health.status == 200
        assert json.loads(await stream.body(int(health.headers["content-length"]))) == {
            "status": "ok"
        }
        head = await stream.head()
        assert head.status == 200
        assert head.headers["content-type"] == "text/event-stream"
        assert head.headers["x-content-type-options"] == "nosniff"
        assert "connection" not in head.headers  # uvicorn's keep-alive answer
        assert await stream.chunk() == b"retry: 2000\n\n"
        assert handed_over(gateway) == 0
        sequence = await publish(js, "AAPL")
        frame = await stream.event()
        assert frame.startswith(f"id: {await event_id(js, sequence)}\n".encode())
    await assert_unharmed(gateway, js)


async def test_requests_pipelined_behind_a_stream_are_never_answered_into_it(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(max_header_bytes=1024)
    behind = get("/healthz") + get("/metrics", "X-Pad: " + "a" * 2048) + b"NOT HTTP\r\n\r\n"
    async with connect(gateway, get("/stocks?symbols=AAPL") + behind) as stream:
        assert (await stream.head()).status == 200
        assert await stream.chunk() == b"retry: 2000\n\n"
        stream.writer.write(get("/healthz"))  # after the hand-over: dropped as well
        sequence = await publish(js, "AAPL")
        frame = await stream.event()
        # Not a health answer, a 431 or a 400 in between: the next event.
        assert frame.startswith(f"id: {await event_id(js, sequence)}\n".encode())
    await assert_unharmed(gateway, js)


async def test_problems_on_the_handed_over_connection_are_complete_answers(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    async with connect(gateway, get("/stocks?symbols=not-a-symbol!")) as stream:
        head = await stream.head()
        assert head.status == 400
        assert head.headers["content-type"] == "application/problem+json"
        assert head.headers["connection"] == "close"
        assert head.headers["x-content-type-options"] == "nosniff"
        problem = json.loads(await stream.body(int(head.headers["content-length"])))
        assert problem["status"] == 400
        assert "not-a-symbol!" in problem["detail"]
        assert await stream.closed()
    await assert_unharmed(gateway, js)


async def test_a_trusted_proxy_forwarded_address_counts_for_the_per_client_limit(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: the handed-over connection
    # must see the same client address the ASGI way would.
    gateway = await start_gateway(max_connections_per_client=1)
    one = get("/stocks", "X-Forwarded-For: 203.0.113.1")
    other = get("/stocks", "X-Forwarded-For: 203.0.113.2")
    async with connect(gateway, one) as first, connect(gateway, other) as second:
        assert (await first.head()).status == 200
        assert (await second.head()).status == 200
        async with connect(gateway, one) as third:
            refused = await third.head()
            assert refused.status == 503
            body = json.loads(await third.body(int(refused.headers["content-length"])))
            assert "203.0.113.1 holds its limit of 1 streams" in body["detail"]
    await assert_unharmed(gateway, js)


async def test_a_client_that_goes_away_leaves_nothing_behind(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    for _ in range(20):
        async with connect(gateway, get("/stocks?symbols=AAPL,MSFT")) as stream:
            assert (await stream.head()).status == 200
            await stream.chunk()
    await assert_unharmed(gateway, js)
    await eventually(lambda: handed_over(gateway) == 0, within=5, what="connections gone")


async def test_a_stream_that_fails_is_cut_off_and_logged_and_the_gateway_serves_on(
    start_gateway: StartGateway, js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway()

    def broken(*args: object) -> None:
        raise RuntimeError("injected fault")

    attach = gateway.hub.attach
    gateway.hub.attach = broken  # type: ignore[method-assign,assignment]
    with caplog.at_level(logging.ERROR, logger="gateway"):
        async with connect(gateway, get("/stocks?symbols=AAPL")) as stream:
            assert await stream.closed()  # cut off, not left hanging
    assert any(r.message == "stream failed" and r.exc_info for r in caplog.records)
    gateway.hub.attach = attach  # type: ignore[method-assign]
    await assert_unharmed(gateway, js)
    assert handed_over(gateway) == 0


async def test_live_events_are_written_by_the_flush_itself_while_the_writer_waits(
    start_gateway: StartGateway, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    written_by_flush: list[int] = []
    write_events = SseConnection.write_events  # only the live feed's flush writes this way

    def counted(connection: SseConnection, events: Sequence[LiveEvent]) -> None:
        written_by_flush.append(len(events))
        write_events(connection, events)

    monkeypatch.setattr(SseConnection, "write_events", counted)
    gateway = await start_gateway(shared_feed=True)
    async with connect(gateway, get("/stocks?symbols=AAPL")) as stream:
        assert (await stream.head()).status == 200
        await stream.chunk()  # retry
        await eventually(
            lambda: gateway.hub.feeds.following and gateway.hub.open_streams == 1,
            within=5,
            what="stream attached",
        )
        ids = []
        for price in range(10):
            sequence = await publish(js, "AAPL", f"{100 + price}")
            ids.append(await event_id(js, sequence))
            frame = await stream.event()
            # One event per chunk: each was published after the previous one arrived.
            assert frame.startswith(f"id: {ids[-1]}\n".encode()), frame
    assert len(written_by_flush) >= 9, written_by_flush
    await assert_unharmed(gateway, js)


async def test_a_lone_tick_is_not_held_back_for_the_coalescing_interval(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    # Writes go out at most once per --coalesce, the first after a quiet spell at once.
    # On a fixed 1 s tick each lone tick would wait 0-1 s: three would all come within
    # half of it one time in eight. The bound is a hundred times the in-process latency.
    gateway = await start_gateway(shared_feed=True, coalesce=1.0, heartbeat=30.0)
    loop = asyncio.get_running_loop()
    async with connect(gateway, get("/stocks?symbols=AAPL")) as stream:
        assert (await stream.head()).status == 200
        await stream.chunk()  # retry
        await eventually(lambda: gateway.hub.open_streams == 1, within=5, what="attached")
        for _ in range(3):
            await asyncio.sleep(1.1)  # a quiet spell longer than --coalesce
            sequence = await publish(js, "AAPL")
            published = loop.time()
            frame = await stream.event()
            assert loop.time() - published < 0.5
            assert frame.startswith(f"id: {await event_id(js, sequence)}\n".encode())


async def test_head_gets_the_streams_headers_without_opening_a_stream(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    created = "gateway_consumer_create_seconds_count"
    before = (await scrape(gateway))[created]  # the live feed's own consumer
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        head = await client.head("/stocks?symbols=AAPL")
        refused = await client.head("/stocks?symbols=not-a-symbol!")
    assert head.status_code == 200
    assert head.headers["content-type"] == "text/event-stream"
    assert head.headers["x-content-type-options"] == "nosniff"
    assert "content-length" not in head.headers  # the stream has no length
    assert head.content == b""
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    after = await scrape(gateway)
    assert after[created] == before  # no consumer for a HEAD
    assert after["gateway_open_streams"] == 0
