"""After hostile input: the gateway must still be serving, with nothing left behind."""

from __future__ import annotations

import httpx
from nats.js import JetStreamContext

from tests.conftest import RunningGateway
from tests.scrape import scrape
from tests.servers import eventually
from tests.ticks import client_consumers


async def assert_unharmed(gateway: RunningGateway, js: JetStreamContext) -> None:
    """Still serving and ready; no stream open and no client consumer left, eventually."""
    assert not gateway.serving.done(), "the gateway stopped serving"
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200

    async def no_open_streams() -> bool:
        return (await scrape(gateway)).get("gateway_open_streams") == 0

    async def no_client_consumers() -> bool:
        return await client_consumers(js) == []

    await eventually(no_open_streams, within=10, what="gateway_open_streams back to 0")
    await eventually(no_client_consumers, within=10, what="no client consumer left")
