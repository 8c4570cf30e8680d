"""W5's client side (bench.reconnect) against two scripted HTTP servers: a client whose
stream ends resumes on the other server with its Last-Event-ID, waits a 503's Retry-After
before asking again, and keeps one history across both servers. No broker is involved:
this is the loader's own logic; `make bench` runs W5 against real gateways."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bench.loader import Loader
from tests.servers import eventually

HEAD_200 = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\ncontent-length: 0\r\n"
    b"connection: close\r\n\r\n"
)
STAMP = "2026-01-01T00:00:00.000000Z"


def chunk(*keys: int) -> bytes:
    body = b"".join(
        b'id: inc-%d\nevent: stockUpdate\ndata: {"id":"inc-%d","timestamp":"%s"}\n\n'
        % (key, key, STAMP.encode())
        for key in keys
    )
    return b"%x\r\n%s\r\n" % (len(body), body)


@dataclass
class Script:
    """What a server answers to its n-th request, and what it was asked."""

    answers: list[bytes]
    hang_up: asyncio.Event | None = None  # set: the server ends its streams (it "dies")
    hang_ups: dict[int, asyncio.Event] = field(default_factory=dict)  # n-th answer's own
    asked: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival, head)


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        script.asked.append((time.monotonic(), head))
        answer = script.answers[len(script.asked) - 1]
        hang_up = script.hang_ups.get(len(script.asked) - 1, script.hang_up)
        writer.write(answer)
        await writer.drain()
        if answer is not REFUSED:  # a stream: until the server hangs up or the client goes
            await (hang_up.wait() if hang_up else reader.read())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def last_event_id(head: bytes) -> str | None:
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "last-event-id":
            return value.strip()
    return None


async def test_a_client_resumes_on_the_other_server_after_its_retry_after() -> None:
    first = Script([HEAD_200 + chunk(1, 2)], hang_up=asyncio.Event())
    second = Script([REFUSED, REFUSED, HEAD_200 + chunk(3)])
    async with scripted(second) as port_b, scripted(first) as port_a:
        loader = Loader("127.0.0.1", port_a)
        loader.log.extend([(1, 0), (2, 0), (3, 0)])
        spec = {"id": 7, "path": "/stocks?symbols=SYM00", "symbols": [0]}
        opened = await loader.open([spec], rate=None, concurrency=1, lifetime=None)
        assert opened["opened"] == 1
        await eventually(lambda: len(loader.connections[7].keys) == 2, within=5, what="2 events")
        armed = await loader.handle(
            {"op": "arm", "port": port_b, "seconds": 20, "jitter": 0.0, "retry": 0.1}
        )
        assert armed["armed"] == 1
        assert first.hang_up is not None
        first.hang_up.set()  # the first server "dies": it ends the client's stream

        async def streaming() -> bool:
            return bool((await loader.handle({"op": "storm"}))["streaming"])

        await eventually(streaming, within=10, what="the client streaming from B")
        report = await loader.handle({"op": "calm"})
        loader.close_connections(None)

    assert [last_event_id(head) for _, head in second.asked] == ["inc-2"] * 3
    arrivals = [at for at, _ in second.asked]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(arrivals))
    assert report["statuses"] == {"503": 2}
    assert (report["attempts"], report["clients_refused"], report["streaming"]) == (3, 1, 1)
    assert report["lost_at"][0] <= report["answered_at"][0] <= report["first_event_at"][0]
    tally = loader.check(final=True)
    assert (tally.received, tally.lost, tally.duplicated, tally.out_of_order) == (3, 0, 0, 0)


async def test_a_stream_that_ends_before_its_first_event_resumes_from_the_same_id() -> None:
    first = Script([HEAD_200 + chunk(1, 2)], hang_up=asyncio.Event())
    empty = HEAD_200 + b"d\r\nretry: 2000\n\n\r\n"  # answered, then ends with no event
    second = Script([empty, HEAD_200 + chunk(3)], hang_ups={0: asyncio.Event()})
    async with scripted(second) as port_b, scripted(first) as port_a:
        loader = Loader("127.0.0.1", port_a)
        loader.log.extend([(1, 0), (2, 0), (3, 0)])
        spec = {"id": 7, "path": "/stocks?symbols=SYM00", "symbols": [0]}
        await loader.open([spec], rate=None, concurrency=1, lifetime=None)
        await eventually(lambda: len(loader.connections[7].keys) == 2, within=5, what="2 events")
        await loader.handle(
            {"op": "arm", "port": port_b, "seconds": 20, "jitter": 0.0, "retry": 0.1}
        )
        assert first.hang_up is not None
        first.hang_up.set()
        await eventually(
            lambda: loader.connections[7].request.find(b":%d" % port_b) > 0,
            within=10,
            what="the client answered by B",
        )
        second.hang_ups[0].set()  # B ends that stream before any event: the client resumes
        await eventually(lambda: len(loader.connections[7].keys) == 3, within=10, what="3")
        report = await loader.handle({"op": "calm"})
        loader.close_connections(None)

    assert [last_event_id(head) for _, head in second.asked] == ["inc-2"] * 2
    assert (report["attempts"], report["dropped"], report["answered"]) == (2, 1, 1)
    tally = loader.check(final=True)
    assert (tally.received, tally.lost, tally.duplicated, tally.out_of_order) == (3, 0, 0, 0)
