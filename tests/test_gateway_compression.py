"""GET /stocks gzipped for clients that ask (Accept-Encoding), on both ways a stream is
written (the handed-over connection and ASGI), byte for byte the SSE of an uncompressed
stream once decoded, each write decodable at once; plain for everyone else."""

from __future__ import annotations

import zlib

import httpx
import pytest
from nats.js import JetStreamContext

from gateway.http.encoding import accepts_gzip
from tests.aftermath import assert_unharmed
from tests.conftest import StartGateway
from tests.test_gateway_connection import HEARTBEAT, Head, RawStream, connect, get, handed_over
from tests.ticks import event_id, publish

pytestmark = pytest.mark.timeout(60)

GZIP = "Accept-Encoding: gzip, deflate, br, zstd"  # what Chromium sends
STREAM_HEADERS = ("content-type", "cache-control", "x-accel-buffering", "content-encoding", "vary")


class Gunzip:
    """A gzip body read one chunk (one write of the gateway's) at a time."""

    def __init__(self, stream: RawStream) -> None:
        self.stream = stream
        self.inflate = zlib.decompressobj(wbits=31)

    async def write(self) -> bytes:
        """The next write, decoded whole: nothing of it may wait for a later one."""
        chunk = await self.stream.chunk()
        data = self.inflate.decompress(chunk)
        assert not self.inflate.unconsumed_tail
        return data

    async def event(self) -> bytes:
        while (data := await self.write()) == HEARTBEAT:
            pass
        return data


async def events_after(read: RawStream | Gunzip, count: int) -> bytes:
    """The body's frames up to the `count`th event, heartbeats left out (they come when
    the stream is idle, so two streams of the same events differ in them only)."""
    body = b""
    while body.count(b"\nevent: stockUpdate\n") < count:
        body += await read.event()
    return body


def check_gzip_head(head: Head) -> None:
    assert head.status == 200
    assert head.headers["content-encoding"] == "gzip"
    assert head.headers["vary"] == "Accept-Encoding"
    assert head.headers["content-type"] == "text/event-stream"


async def test_gzip_on_the_handed_over_connection_each_write_decodes_at_once_to_the_end(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    async with connect(gateway, get("/stocks?symbols=AAPL", GZIP)) as stream:
        check_gzip_head(await stream.head())
        assert handed_over(gateway) == 1
        body = Gunzip(stream)
        assert await body.write() == b"retry: 2000\n\n"
        for price in ("101.5", "101.75"):  # one publish, one event: the flush sends it
            sequence = await publish(js, "AAPL", price)
            frame = await body.event()
            assert frame.startswith(f"id: {await event_id(js, sequence)}\n".encode())
            assert frame.count(b"\n\n") == 1
            assert f'"price":{price}'.encode() in frame
        await gateway.stop()
        assert await body.event() == b": stream ended: gateway draining; reconnect to resume\n\n"
        assert body.inflate.eof  # the gzip trailer came with the last write
        assert await stream.chunk() == b""
        assert await stream.closed()


async def test_gzip_the_asgi_way(start_gateway: StartGateway, js: JetStreamContext) -> None:
    gateway = await start_gateway()
    pipelined = get("/healthz", GZIP) + get("/stocks?symbols=AAPL", GZIP)
    async with connect(gateway, pipelined) as stream:
        health = await stream.head()
        assert "content-encoding" not in health.headers
        await stream.body(int(health.headers["content-length"]))
        check_gzip_head(await stream.head())
        assert handed_over(gateway) == 0
        body = Gunzip(stream)
        assert await body.write() == b"retry: 2000\n\n"
        sequence = await publish(js, "AAPL")
        frame = await body.event()
        assert frame.startswith(f"id: {await event_id(js, sequence)}\n".encode())
        await gateway.stop()
        assert await body.event() == b": stream ended: gateway draining; reconnect to resume\n\n"
        assert body.inflate.eof


async def test_a_resumed_gzip_stream_decodes_to_the_plain_streams_bytes(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    first = await publish(js, "MSFT", "10.5")
    for price in ("10.75", "11", "11.25"):
        await publish(js, "MSFT", price)
    resume = f"Last-Event-ID: {await event_id(js, first)}"
    request = "/stocks?symbols=MSFT,AAPL"
    async with (
        connect(gateway, get(request, resume)) as plain_stream,
        connect(gateway, get(request, resume, "Accept-Encoding: gzip")) as gzip_stream,
    ):
        assert "content-encoding" not in (await plain_stream.head()).headers
        check_gzip_head(await gzip_stream.head())
        gunzip = Gunzip(gzip_stream)
        replayed = await events_after(gunzip, 3)
        assert replayed == await events_after(plain_stream, 3)
        assert replayed.startswith(b"retry: 2000\n\nid: ")  # the three after the resumed id
        await publish(js, "AAPL", "7.5")
        await publish(js, "MSFT", "11.5")
        assert await events_after(gunzip, 2) == await events_after(plain_stream, 2)
    await assert_unharmed(gateway, js)


PLAIN = [None, "identity", "gzip;q=0", "br, zstd", "gzip;q=0.5, identity", "*;q=0", "gzip;q=x"]
GZIPPED = ["gzip", "br;q=1, GZIP;q=0.3", "*", "x-gzip", "identity;q=0.5, gzip;q=0.8"]


async def test_only_clients_that_accept_gzip_get_it_and_problems_stay_plain(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    for accept in PLAIN + GZIPPED:
        headers = [f"Accept-Encoding: {accept}"] if accept is not None else []
        async with connect(gateway, get("/stocks?symbols=AAPL", *headers)) as stream:
            head = await stream.head()
            assert head.status == 200
            assert head.headers["vary"] == "Accept-Encoding", accept
            if accept in GZIPPED:
                assert head.headers["content-encoding"] == "gzip", accept
                assert await Gunzip(stream).write() == b"retry: 2000\n\n"
            else:
                assert "content-encoding" not in head.headers, accept
                assert await stream.chunk() == b"retry: 2000\n\n"
    async with connect(gateway, get("/stocks?symbols=bad!", GZIP)) as stream:
        head = await stream.head()
        assert head.status == 400
        assert "content-encoding" not in head.headers
        assert b"bad!" in await stream.body(int(head.headers["content-length"]))
    await assert_unharmed(gateway, js)


@pytest.mark.parametrize("accept", [None, "gzip"])
async def test_head_answers_the_get_s_headers(
    start_gateway: StartGateway, js: JetStreamContext, accept: str | None
) -> None:
    gateway = await start_gateway()
    path = "/stocks?symbols=AAPL&conflate=500"
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        # httpx asks for gzip by itself: "identity" says no.
        answer = await client.head(path, headers={"Accept-Encoding": accept or "identity"})
    assert answer.status_code == 200
    asked = [f"Accept-Encoding: {accept}"] if accept else []
    async with connect(gateway, get(path, *asked)) as stream:
        streamed = (await stream.head()).headers
    for name in (*STREAM_HEADERS, "price-conflate"):
        assert answer.headers.get(name) == streamed.get(name), name
    assert answer.headers.get("content-encoding") == accept
    assert answer.headers["vary"] == "Accept-Encoding"


async def test_compression_off_answers_everyone_plain_without_vary(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(compression=False)
    async with connect(gateway, get("/stocks?symbols=AAPL", GZIP)) as stream:
        head = await stream.head()
        assert "content-encoding" not in head.headers
        assert "vary" not in head.headers
        assert await stream.chunk() == b"retry: 2000\n\n"
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.head("/stocks?symbols=AAPL", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in answer.headers
    assert "vary" not in answer.headers


@pytest.mark.parametrize(
    ("accept", "gzip"),
    [
        ("gzip", True),
        ("deflate, gzip;q=1.0", True),
        ("gzip;q=0.001", True),
        ("*;q=0.2, identity;q=0.1", True),
        ("gzip ; Q=1", True),
        ("gzip;q=0, *", False),  # an explicit gzip beats the wildcard
        ("gzip;q=0.2, identity;q=0.3", False),
        ("gzip;q=1.5", False),  # malformed q-values: the element is ignored
        ("gzip;q=nan", False),
        ("gzip;q=0.0001", False),
        ("", False),
        (",,;", False),
    ],
)
def test_accept_encoding_q_values(accept: str, gzip: bool) -> None:
    assert accepts_gzip(accept) is gzip
