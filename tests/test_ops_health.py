"""Probes: /healthz while the process serves, /readyz only with NATS and the stream."""

from __future__ import annotations

import httpx
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.servers import NatsServer, eventually


async def status(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(url)).status_code


async def test_ready_with_nats_and_the_stream(gateway: RunningGateway) -> None:
    assert await status(f"{gateway.url}/healthz") == 200
    await eventually(lambda: _is(f"{gateway.url}/readyz", 200), within=5, what="ready")


async def _is(url: str, code: int) -> bool:
    return await status(url) == code


async def test_started_before_nats_it_serves_503s_then_becomes_ready_by_itself(
    nats_server: NatsServer, start_gateway: StartGateway
) -> None:
    await nats_server.stop()
    gateway = await start_gateway(wait_connected=False)
    assert await status(f"{gateway.url}/healthz") == 200
    assert await status(f"{gateway.url}/readyz") == 503
    async with httpx.AsyncClient() as client:
        refused = await client.get(f"{gateway.url}/stocks")
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert "retry-after" in refused.headers
    await nats_server.start()
    await eventually(lambda: _is(f"{gateway.url}/readyz", 200), within=15, what="ready")


async def test_not_ready_while_nats_is_down_and_ready_again_after(
    nats_server: NatsServer, gateway: RunningGateway, js: JetStreamContext
) -> None:
    await nats_server.stop()
    await eventually(lambda: _is(f"{gateway.url}/readyz", 503), within=5, what="not ready")
    assert await status(f"{gateway.url}/healthz") == 200
    await nats_server.start()
    await eventually(lambda: _is(f"{gateway.url}/readyz", 200), within=15, what="ready again")


async def test_not_ready_without_the_stream(gateway: RunningGateway, js: JetStreamContext) -> None:
    await js.delete_stream("PRICES")

    # Readiness is cached for up to a second (gateway.ops), so not at once, but soon.
    async def says_the_stream_is_missing() -> bool:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{gateway.url}/readyz")
        return response.status_code == 503 and "PRICES" in response.json()["detail"]

    await eventually(says_the_stream_is_missing, within=10, what="not ready, naming PRICES")
