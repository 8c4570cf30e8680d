"""Starts from the live feed's memory: a fresh client and a client whose id falls inside
the resume window are served without a JetStream consumer (a reconnect storm costs the
broker nothing); older ids take a consumer, at the pace --catch-up-rate allows, and the
excess is refused with 503 and a jittered Retry-After."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from gateway import opening
from gateway.http.connection import SseConnection
from tests.conftest import RunningGateway, StartGateway
from tests.problems import assert_problem
from tests.scrape import scrape
from tests.servers import eventually
from tests.sse_client import open_stream
from tests.ticks import event_id, publish

MEMORY = "gateway_resumes_total{source=memory}"
JETSTREAM = "gateway_resumes_total{source=jetstream}"
CREATED = "gateway_consumer_create_seconds_count"


async def _fed(gateway: RunningGateway, sequence: int) -> None:
    """Until the gateway's live feed has handed over `sequence`."""

    def past() -> bool:
        live = gateway.hub.feeds.live
        return live is not None and live.position >= sequence

    await eventually(past, within=5, what=f"the live feed past {sequence}")


async def test_a_resume_inside_the_window_needs_no_consumer(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    seqs = [await publish(js, symbol, "1.0") for symbol in ["AAPL", "MSFT", "AAPL", "GOOG"]]
    await _fed(gateway, seqs[-1])
    before = await scrape(gateway)
    last_seen = await event_id(js, seqs[0])
    async with open_stream(
        gateway.url, {"symbols": "AAPL,GOOG"}, {"Last-Event-ID": last_seen}
    ) as stream:
        missed = await stream.events(2)
        live_seq = await publish(js, "GOOG", "2.0")
        live = await stream.next_event()
    assert [e.id for e in missed] == [await event_id(js, s) for s in (seqs[2], seqs[3])]
    assert live.id == await event_id(js, live_seq)
    after = await scrape(gateway)
    assert after[MEMORY] - before[MEMORY] == 1
    assert after[JETSTREAM] == before[JETSTREAM]
    assert after[CREATED] == before[CREATED]  # no consumer at all


async def test_a_resume_past_a_stale_stream_info_is_served_from_memory(
    start_gateway: StartGateway, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a storm the stream's info is seconds old: an id past its last sequence that the
    # live feed has handed over is stored all the same, and needs no consumer.
    monkeypatch.setattr(opening, "STREAM_INFO_MAX_AGE", 60.0)
    monkeypatch.setattr(opening, "STREAM_INFO_MAX_STALE", 60.0)
    gateway = await start_gateway()
    first = await publish(js, "AAPL", "1.0")
    await _fed(gateway, first)
    async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
        await stream.events(1)  # a start: the info is asked for, and kept from now on
    seqs = [await publish(js, "AAPL", price) for price in ("1.1", "1.2")]
    await _fed(gateway, seqs[-1])
    before = await scrape(gateway)
    resumed = {"Last-Event-ID": await event_id(js, seqs[0])}
    async with open_stream(gateway.url, {"symbols": "AAPL"}, resumed) as stream:
        missed = await stream.next_event()
    assert missed.id == await event_id(js, seqs[1])
    after = await scrape(gateway)
    assert after[MEMORY] - before[MEMORY] == 1
    assert after[CREATED] == before[CREATED]


async def test_a_fresh_client_starts_from_the_latest_in_memory_without_a_consumer(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    # Stored before the gateway starts: the feed learns them by direct gets at start.
    await publish(js, "AAPL", "1.0")
    msft = await publish(js, "MSFT", "1.0")
    gateway = await start_gateway()
    aapl = await publish(js, "AAPL", "1.5")  # and this one from the feed itself
    await _fed(gateway, aapl)
    before = await scrape(gateway)
    async with open_stream(gateway.url, {"symbols": "AAPL,MSFT"}) as stream:
        snapshot = await stream.events(2)
    assert [e.id for e in snapshot] == [await event_id(js, s) for s in (msft, aapl)]
    assert (await scrape(gateway))[CREATED] == before[CREATED]


class _CountedWrites:
    """A connection's transport, keeping what each write was given."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(data)
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def test_the_snapshot_goes_out_with_the_response_head_in_one_write(
    start_gateway: StartGateway, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    made = SseConnection.__init__

    def counted(connection: SseConnection, transport: Any, *args: Any, **kwargs: Any) -> None:
        counting: Any = _CountedWrites(transport, writes)  # a transport, as far as it is used
        made(connection, counting, *args, **kwargs)

    monkeypatch.setattr(SseConnection, "__init__", counted)
    gateway = await start_gateway()
    aapl = await publish(js, "AAPL", "1.5")
    await _fed(gateway, aapl)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.settings.port)
    try:
        writer.write(b"GET /stocks?symbols=AAPL HTTP/1.1\r\nHost: gateway\r\n\r\n")
        snapshot = f"id: {await event_id(js, aapl)}\n".encode()
        async with asyncio.timeout(5):
            received = await reader.readuntil(b"}\n\n\r\n")
    finally:
        writer.close()
    assert len(writes) == 1, writes  # the head, the retry and the snapshot: one send
    # On the wire as before: the retry and the snapshot are chunks of their own.
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    chunks = []
    while body:
        size, _, body = body.partition(b"\r\n")
        chunks.append(body[: int(size, 16)])
        body = body[int(size, 16) :].removeprefix(b"\r\n")
    assert len(chunks) == 2, chunks
    assert chunks[0] == b"retry: 2000\n\n"
    assert chunks[1].startswith(snapshot), chunks
    assert chunks[1].endswith(b"}\n\n"), chunks


async def test_an_id_older_than_the_window_catches_up_from_jetstream_exactly(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    # A window of a few frames' bytes: the first ticks fall out of it.
    gateway = await start_gateway(resume_window_bytes=600)
    seqs = [await publish(js, "AAPL", f"1.{i}") for i in range(8)]
    await _fed(gateway, seqs[-1])
    before = await scrape(gateway)
    async with open_stream(
        gateway.url, {"symbols": "AAPL"}, {"Last-Event-ID": await event_id(js, seqs[0])}
    ) as stream:
        missed = await stream.events(7)
    assert [e.id for e in missed] == [await event_id(js, s) for s in seqs[1:]]
    after = await scrape(gateway)
    assert after[JETSTREAM] - before[JETSTREAM] == 1
    assert after[MEMORY] == before[MEMORY]


async def test_purged_ticks_are_not_resumed_from_memory(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    seen = await publish(js, "AAPL", "1.0")
    purged = await publish(js, "AAPL", "1.1")
    await _fed(gateway, purged)
    await js.purge_stream("PRICES")
    async with open_stream(
        gateway.url, {"symbols": "AAPL"}, {"Last-Event-ID": await event_id(js, seen)}
    ) as stream:
        reset = await stream.next_event()
        await stream.assert_quiet(0.3)  # and no purged tick after it
    assert (reset.event, reset.json()["reason"]) == ("reset", "position-lost")


async def test_catch_ups_beyond_the_rate_are_shed_with_a_jittered_retry_after(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    # No window: every resume needs a consumer; one a second, so a burst must be shed.
    gateway = await start_gateway(resume_window=0, catch_up_rate=1)
    seen = await event_id(js, await publish(js, "AAPL", "1.0"))
    await publish(js, "AAPL", "1.1")
    headers = {"Last-Event-ID": seen, "Accept-Encoding": "identity"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:

        async def attempt() -> httpx.Response:
            async with client.stream("GET", "/stocks?symbols=AAPL", headers=headers) as answer:
                if answer.status_code != 200:
                    await answer.aread()  # the problem document
                return answer

        answers = await asyncio.gather(*(attempt() for _ in range(6)))
    statuses = sorted(answer.status_code for answer in answers)
    # One second's burst, then one more within the second a stream may wait; the rest shed.
    assert statuses.count(200) == 2, statuses
    shed = [answer for answer in answers if answer.status_code == 503]
    assert len(shed) == 4
    for answer in shed:
        assert_problem(answer, 503)
        assert 2 <= int(answer.headers["retry-after"]) <= 4
    assert (await scrape(gateway))["gateway_requests_shed_total"] == 4
