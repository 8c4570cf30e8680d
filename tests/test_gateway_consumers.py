"""One JetStream consumer per client: what it is, and that it goes when the client goes
(or, with the shared feed, as soon as the client has caught up)."""

from __future__ import annotations

import asyncio

import httpx
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, DeliverPolicy

from gateway.broker.spec import consumer_name
from tests.conftest import StartGateway
from tests.servers import eventually
from tests.sse_client import open_stream
from tests.ticks import client_consumers, event_id, publish


async def consumer_count(js: JetStreamContext) -> int:
    return (await js.stream_info("PRICES")).state.consumer_count


async def test_each_client_has_its_own_memory_consumer_filtered_to_its_symbols(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(shared_feed=False)
    seq = await publish(js, "AAPL")
    async with (
        open_stream(gateway.url, {"symbols": "AAPL,BRK.B"}) as one,
        open_stream(
            gateway.url, {"symbols": "MSFT"}, {"Last-Event-ID": await event_id(js, seq)}
        ) as two,
    ):
        await one.next_block()
        await two.next_block()
        consumers = {c.name: c.config for c in await js.consumers_info("PRICES")}
    assert len(consumers) == 2
    by_filter = {tuple(c.filter_subjects or []): (name, c) for name, c in consumers.items()}
    name, fresh = by_filter[("prices.AAPL", "prices.BRK_B")]
    assert name.startswith(f"sse-{gateway.settings.gateway_id}-")
    assert fresh.deliver_policy == DeliverPolicy.LAST_PER_SUBJECT
    assert fresh.ack_policy == AckPolicy.NONE
    assert fresh.mem_storage is True
    assert fresh.num_replicas in (0, 1)
    assert fresh.inactive_threshold == gateway.settings.inactive_threshold
    _, resumed = by_filter[("prices.MSFT",)]
    assert resumed.deliver_policy == DeliverPolicy.BY_START_SEQUENCE
    assert resumed.opt_start_seq == seq + 1


async def test_consumer_is_deleted_when_the_client_closes(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(shared_feed=False)
    async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
        await stream.next_block()
        assert len(await client_consumers(js)) == 1
    await eventually(lambda: _no_consumers(js), within=5, what="consumer deleted")


async def _no_consumers(js: JetStreamContext) -> bool:
    return await consumer_count(js) == 0


async def _no_client_consumers(js: JetStreamContext) -> bool:
    return not await client_consumers(js)


async def test_with_the_shared_feed_a_caught_up_client_gives_its_consumer_back(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(shared_feed=True)
    for i in range(3):
        await publish(js, "AAPL", f"1.0{i}")
    async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
        first = await stream.next_event()
        await eventually(lambda: _no_client_consumers(js), within=5, what="consumer deleted")
        names = [c.name for c in await js.consumers_info("PRICES")]
        live = await publish(js, "AAPL", "2.00")
        event = await stream.next_event()
    assert names == [consumer_name("live", gateway.settings.gateway_id, 1)]
    assert event.sequence == live
    assert first.sequence == live - 1


async def test_consumers_are_deleted_when_the_gateway_shuts_down(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=None) as client,
        asyncio.TaskGroup() as tg,
    ):
        streams = [tg.create_task(_read_until_end(client)) for _ in range(3)]
        await eventually(lambda: gateway.hub.open_streams == 3, within=5, what="3 streams")
        await gateway.stop()
    assert all(s.result().endswith(b"reconnect to resume\n\n") for s in streams)
    assert await consumer_count(js) == 0


async def _read_until_end(client: httpx.AsyncClient) -> bytes:
    async with client.stream("GET", "/stocks", params={"symbols": "AAPL"}) as response:
        return await response.aread()  # returns only if the server ends the body cleanly
