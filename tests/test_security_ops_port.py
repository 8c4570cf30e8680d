"""--ops-port: /healthz, /readyz and /metrics on their own port only, and readiness from a
cached answer, not one JetStream API call per probe; over real HTTP and a real nats-server."""

from __future__ import annotations

import httpx
import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.servers import eventually, free_port

pytestmark = pytest.mark.timeout(60)

OPS_PATHS = ("/healthz", "/readyz", "/metrics")


async def ready(url: str) -> bool:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{url}/readyz")).status_code == 200


@pytest.fixture
async def split(start_gateway: StartGateway, js: JetStreamContext) -> tuple[RunningGateway, str]:
    port = free_port()
    gateway = await start_gateway(wait_connected=False, ops_port=port)
    ops = f"http://127.0.0.1:{port}"
    await eventually(lambda: ready(ops), within=10, what="ready on the ops port")
    return gateway, ops


async def test_with_an_ops_port_the_ops_endpoints_are_served_there_and_404_on_the_main_port(
    split: tuple[RunningGateway, str],
) -> None:
    gateway, ops = split
    async with httpx.AsyncClient() as client:
        for path in OPS_PATHS:
            assert (await client.get(ops + path)).status_code == 200, path
            main = await client.get(gateway.url + path)
            assert main.status_code == 404, path
            assert main.headers["content-type"] == "application/problem+json"


async def test_the_ops_port_serves_nothing_else(split: tuple[RunningGateway, str]) -> None:
    gateway, ops = split
    async with httpx.AsyncClient() as client:
        for path in ("/stocks", "/symbols", "/", "/openapi.json"):
            assert (await client.get(ops + path)).status_code == 404, path
        # ...and the main port still serves the rest.
        assert (await client.get(gateway.url + "/symbols")).status_code == 200


async def test_readiness_answers_from_a_cache_not_one_stream_info_per_probe(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway()
    before = (await js.account_info()).api.total
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for _ in range(200):
            assert (await client.get("/readyz")).status_code == 200
    calls = (await js.account_info()).api.total - before - 1  # less our own account_info
    # One check per second at most: 200 probes within a few seconds are a few calls
    # (the old gateway made 200); the bound leaves room for the live feed's own calls.
    assert calls < 50, calls
