"""Slow requests (slowloris): a connection that has not sent its complete request headers
within --header-timeout is closed, and connections still sending headers are bounded
(--max-incomplete-requests: the oldest goes); over real sockets."""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.sse_client import open_stream

pytestmark = pytest.mark.timeout(60)

BOUND = 20.0  # seconds a test waits for what should happen far sooner, before failing


async def connect(gateway: RunningGateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gateway.settings.port)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closed the connection without answering."""
    return await asyncio.wait_for(reader.read(), BOUND) == b""


@pytest.mark.parametrize("sent", [b"", b"GET /stocks HTTP/1.1\r\nHost: x\r\n"])
async def test_a_connection_without_complete_headers_is_closed_after_the_timeout(
    start_gateway: StartGateway, js: JetStreamContext, sent: bytes
) -> None:
    gateway = await start_gateway(header_timeout=1.0)
    reader, writer = await connect(gateway)
    writer.write(sent)
    assert await closed_by_server(reader)
    writer.close()


async def test_each_connection_gets_its_own_deadline_from_the_one_timer(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    # One timer serves them all, at the oldest's deadline: it must come round again for
    # a younger one, also once the oldest has left by itself.
    gateway = await start_gateway(header_timeout=1.0)
    _, leaving = await connect(gateway)
    await asyncio.sleep(0.3)
    younger, writer = await connect(gateway)
    leaving.close()
    assert await closed_by_server(younger)
    writer.close()


async def test_a_header_line_now_and_then_does_not_keep_the_connection(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(header_timeout=1.0)
    reader, writer = await connect(gateway)
    writer.write(b"GET /stocks HTTP/1.1\r\nHost: x\r\n")
    for n in range(200):  # far past the timeout, unless the server closes it
        try:
            writer.write(b"X-Slow-%d: 1\r\n" % n)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 0.1) == b""
            break
        except TimeoutError:
            continue
        except ConnectionError:
            break
    else:
        pytest.fail("the trickling connection stayed open")
    writer.close()


async def test_past_the_bound_on_incomplete_requests_the_oldest_is_closed(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(header_timeout=60.0, max_incomplete_requests=3)
    oldest, *others = [await connect(gateway) for _ in range(3)]
    for _, writer in (oldest, *others):
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        await writer.drain()
    newest = await connect(gateway)
    assert await closed_by_server(oldest[0])
    # The newest one is served once it sends its request.
    reader, writer = newest
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), BOUND)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    for _, w in (oldest, *others, newest):
        w.close()


async def test_a_stream_outlives_the_header_timeout(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    # Heartbeats every 0.2 s: ten of them take four header timeouts and more.
    gateway = await start_gateway(header_timeout=0.5, heartbeat=0.2)
    async with open_stream(gateway.url) as stream:
        heartbeats = 0
        while heartbeats < 10:
            block = await stream.next_block()
            assert block is not None, "the stream ended"
            heartbeats += not block.data and bool(block.comments)
