"""--ops-port: /healthz, /readyz and /metrics on their own port only, and readiness from a
cached answer, not one JetStream API call per probe; over real HTTP and a real nats-server."""

from __future__ import annotations

import signal

import httpx
import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.processes import GatewayProcess
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


async def test_the_command_takes_the_ops_port_from_its_variable(nats_url: str) -> None:
    ops_port = free_port()
    gateway = OpsPortProcess(nats_url, ops_port, env={"GATEWAY_OPS_PORT": str(ops_port)})
    await gateway.start()  # ready on the ops port
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{gateway.url}/readyz")).status_code == 404
            assert (await client.get(f"{gateway.url}/symbols")).status_code == 200
    finally:
        assert await gateway.signal(signal.SIGTERM) == 0


class OpsPortProcess(GatewayProcess):
    """`python -m gateway` whose probes answer on the ops port."""

    def __init__(self, nats_url: str, ops_port: int, env: dict[str, str]) -> None:
        super().__init__(nats_url, env=env)
        self.ops_url = f"http://127.0.0.1:{ops_port}"

    async def ready(self) -> bool:
        try:
            return await ready(self.ops_url)
        except httpx.TransportError:
            return False
