"""Connection limits: 503 problem+json with Retry-After when full, served once a slot frees."""

from __future__ import annotations

import httpx
from nats.js import JetStreamContext

from tests.conftest import StartGateway
from tests.servers import eventually
from tests.sse_client import open_stream


async def test_the_connection_after_the_limit_gets_503_then_is_served_once_one_leaves(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(max_connections=2)
    async with open_stream(gateway.url) as one:
        await one.next_block()
        async with open_stream(gateway.url) as two:
            await two.next_block()
            async with httpx.AsyncClient(base_url=gateway.url) as client:
                refused = await client.get("/stocks")
        # The gateway learns of the leave from the closed socket, a moment later.
        await eventually(lambda: gateway.hub.open_streams == 1, within=5, what="slot freed")
        async with open_stream(gateway.url) as three:
            assert (await three.next_block()).retry == 2000  # type: ignore[union-attr]
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) > 0
    assert "limit of 2 streams" in refused.json()["detail"]


async def test_per_address_limit_is_off_by_default_and_enforced_when_set(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    unlimited = await start_gateway()
    limited = await start_gateway(max_connections_per_client=1)
    async with open_stream(unlimited.url) as a, open_stream(unlimited.url) as b:
        await a.next_block()
        await b.next_block()
    async with open_stream(limited.url) as only, httpx.AsyncClient() as client:
        await only.next_block()
        refused = await client.get(f"{limited.url}/stocks")
    assert refused.status_code == 503
    assert "127.0.0.1 holds its limit of 1 streams" in refused.json()["detail"]
