"""/metrics: every family is there, and each moves when its event happens."""

from __future__ import annotations

import httpx
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningGateway, StartGateway
from tests.scrape import scrape
from tests.servers import eventually
from tests.sse_client import open_stream
from tests.ticks import event_id, publish

FAMILIES = {
    "gateway_open_streams",
    "gateway_events_sent",
    "gateway_consumers_open",
    "gateway_consumer_create_seconds",
    "gateway_consumer_delete_seconds",
    "gateway_errors",
    "gateway_slow_client_disconnects",
    "gateway_resets_sent",
    "gateway_publish_to_send_seconds",
    "gateway_streams_ended",
}


async def test_every_family_is_exposed(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{gateway.url}/metrics")).text
    names = {family.name for family in text_string_to_metric_families(text)}
    assert names >= FAMILIES


async def test_streams_consumers_events_and_lag_move_with_a_client(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(shared_feed=False)  # a consumer for the client's whole stay
    before = await scrape(gateway)
    async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
        await stream.next_block()
        during = await scrape(gateway)
        for _ in range(3):
            await publish(js, "AAPL")
        await stream.events(3)
        after_events = await scrape(gateway)
    await eventually(lambda: gateway.hub.open_streams == 0, within=5, what="stream closed")
    after = await scrape(gateway)
    assert (before["gateway_open_streams"], during["gateway_open_streams"]) == (0, 1)
    assert (before["gateway_consumers_open"], during["gateway_consumers_open"]) == (0, 1)
    assert during["gateway_consumer_create_seconds_count"] == 1
    assert after_events["gateway_events_sent_total"] == 3
    assert after_events["gateway_publish_to_send_seconds_count"] >= 1
    assert after["gateway_open_streams"] == 0
    assert after["gateway_consumers_open"] == 0
    assert after["gateway_consumer_delete_seconds_count"] == 1
    assert after["gateway_streams_ended_total{reason=client closed}"] == 1


async def test_errors_are_counted_by_kind(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient() as client:
        await client.get(f"{gateway.url}/stocks", params={"symbols": "*"})
        await client.get(f"{gateway.url}/stocks", params={"lastEventId": "nope"})
    samples = await scrape(gateway)
    assert samples["gateway_errors_total{kind=bad_request}"] == 2
    assert samples["gateway_errors_total{kind=at_capacity}"] == 0


async def test_resets_are_counted_by_reason(gateway: RunningGateway, js: JetStreamContext) -> None:
    old = await event_id(js, await publish(js, "AAPL"))
    await publish(js, "AAPL")
    await js.purge_stream("PRICES")
    async with open_stream(gateway.url, {"symbols": "AAPL"}, {"Last-Event-ID": old}) as stream:
        assert (await stream.next_event()).event == "reset"
    samples = await scrape(gateway)
    assert samples["gateway_resets_sent_total{reason=position-lost}"] == 1


async def test_invalid_messages_are_counted(gateway: RunningGateway, js: JetStreamContext) -> None:
    async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
        await stream.next_block()
        await js.publish("prices.AAPL", b"\xff\xfe")
        await publish(js, "AAPL")
        await stream.next_event()
    samples = await scrape(gateway)
    assert samples["gateway_errors_total{kind=invalid_message}"] == 1
