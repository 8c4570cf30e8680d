"""--max-connections-per-user: open streams per token `sub`; one more is a 429 problem with
Retry-After, whatever address it comes from; over real HTTP."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest
from nats.js import JetStreamContext

from tests.conftest import StartGateway
from tests.servers import eventually
from tests.sse_client import open_stream
from tests.tokens import AUTH, bearer, mint

pytestmark = pytest.mark.timeout(60)


async def test_one_stream_over_the_per_user_limit_is_a_429_and_others_still_open(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(**AUTH, max_connections_per_user=2)
    alice, bob = bearer(mint(sub="alice")), bearer(mint(sub="bob"))
    async with AsyncExitStack() as streams, httpx.AsyncClient(base_url=gateway.url) as client:
        for _ in range(2):  # two tokens of one user: the limit counts the subject
            await streams.enter_async_context(
                open_stream(gateway.url, headers=bearer(mint(sub="alice")))
            )
        refused = await client.get("/stocks", headers=alice)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["status"] == 429
        assert int(refused.headers["retry-after"]) > 0
        # Another user is not affected.
        await streams.enter_async_context(open_stream(gateway.url, headers=bob))
    # Once alice's streams have ended, she may open one again.
    await eventually(lambda: gateway.hub.open_streams == 0, within=10, what="streams closed")
    async with open_stream(gateway.url, headers=alice):
        pass


async def test_the_per_user_limit_is_off_by_default(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(**AUTH)
    token = bearer(mint(sub="alice"))
    async with AsyncExitStack() as streams:
        for _ in range(5):
            await streams.enter_async_context(open_stream(gateway.url, headers=token))
