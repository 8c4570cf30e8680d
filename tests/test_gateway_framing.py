"""The wire format, byte for byte: ASP.NET Core's TypedResults.ServerSentEvents."""

from __future__ import annotations

import httpx
from nats.js import JetStreamContext

from contracts.event_ids import incarnation_of
from tests.conftest import RunningGateway
from tests.sse_client import open_stream
from tests.ticks import make_tick, publish


async def test_headers_are_those_of_an_event_stream(gateway: RunningGateway) -> None:
    async with open_stream(gateway.url) as stream:
        headers = stream.response.headers
        assert headers["content-type"] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"


async def test_stream_opens_with_retry_then_frames_each_price_exactly(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    incarnation = incarnation_of((await js.stream_info("PRICES")).created)  # type: ignore[arg-type]
    async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
        assert (await stream.next_block()).retry == 2000  # type: ignore[union-attr]
        tick = make_tick("AAPL", "189.230000", source="pub-1")
        ack = await js.publish("prices.AAPL", tick.encode())
        await stream.next_event()
    event_id = f"{incarnation}-{ack.seq}"
    expected = (
        b"retry: 2000\n\n"
        + f"id: {event_id}\nevent: stockUpdate\n".encode()
        + f'data: {{"id":"{event_id}","symbol":"AAPL","price":189.230000,'.encode()
        + f'"timestamp":"{tick.timestamp:%Y-%m-%dT%H:%M:%S.%fZ}","source":"pub-1"}}\n\n'.encode()
    )
    assert bytes(stream.raw) == expected


async def test_idle_stream_sends_heartbeat_comments(gateway: RunningGateway) -> None:
    async with open_stream(gateway.url, {"symbols": "IDLE"}) as stream:
        assert (await stream.next_block()).retry == 2000  # type: ignore[union-attr]
        first = await stream.next_block(timeout=2)
        second = await stream.next_block(timeout=2)
    assert first is not None
    assert first.comments == ["heartbeat"]
    assert second is not None
    assert second.comments == ["heartbeat"]
    assert bytes(stream.raw).endswith(b": heartbeat\n\n: heartbeat\n\n")


async def test_event_data_is_the_published_tick_with_the_id_first(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    async with open_stream(gateway.url, {"symbols": "MSFT"}) as stream:
        await publish(js, "MSFT", "412.5", source="pub-9")
        event = await stream.next_event()
    data = event.json()
    assert list(data) == ["id", "symbol", "price", "timestamp", "source"]
    assert data["id"] == event.id
    assert event.event == "stockUpdate"
    assert (data["symbol"], data["source"]) == ("MSFT", "pub-9")


async def test_extra_fields_are_forwarded(gateway: RunningGateway, js: JetStreamContext) -> None:
    body = (
        b'{"symbol":"AAPL","price":1.5,"timestamp":"2026-11-24T10:00:00.123456Z",'
        b'"source":"p","venue":"XNAS","bid":1.49}'
    )
    await js.publish("prices.AAPL", body)
    async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
        event = await stream.next_event()
    assert event.data == f'{{"id":"{event.id}",' + body.decode()[1:]


async def test_non_compact_tick_is_re_encoded_on_one_line(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    body = (
        b'{\n  "symbol": "AAPL",\n  "price": 2.50,\n'
        b'  "timestamp": "2026-11-24T10:00:00Z",\n  "source": "p"\n}'
    )
    await js.publish("prices.AAPL", body)
    async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
        event = await stream.next_event()
    assert "\n" not in event.data
    assert event.json()["price"] == 2.5
    assert '"price":2.50,' in event.data  # digits kept as published


async def test_invalid_message_is_skipped_and_the_stream_goes_on(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    first = await publish(js, "AAPL", "3.00")
    await js.publish("prices.AAPL", b"not json\nat all")
    good = await publish(js, "AAPL", "3.25")
    incarnation = incarnation_of((await js.stream_info("PRICES")).created)  # type: ignore[arg-type]
    resume = {"Last-Event-ID": f"{incarnation}-{first}"}
    async with open_stream(gateway.url, {"symbols": "AAPL"}, resume) as stream:
        event = await stream.next_event()
    assert event.id == f"{incarnation}-{good}"
    assert f": skipped invalid message {incarnation}-{first + 1}\n\n".encode() in stream.raw


async def test_unknown_path_is_a_problem_document(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
