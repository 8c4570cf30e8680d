"""The server-side Origin check of /stocks and /symbols: a browser request from a site that
is neither listed in --cors-origins nor the gateway's own is a 403 problem (a cross-site
page could otherwise open streams with the user's cookie); over real HTTP."""

from __future__ import annotations

import httpx
import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway

pytestmark = pytest.mark.timeout(60)

LISTED = "https://prices.example"
PATHS = ["/stocks", "/symbols"]


@pytest.fixture
async def gateway(start_gateway: StartGateway, js: JetStreamContext) -> RunningGateway:
    return await start_gateway(cors_origins=LISTED)


async def answer(gateway: RunningGateway, path: str, origin: str | None) -> httpx.Response:
    headers = {"Origin": origin} if origin is not None else {}
    async with (
        httpx.AsyncClient(base_url=gateway.url) as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        if response.status_code != 200:
            await response.aread()
        return response


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "null", "http://prices.example", "https://prices.example:8443"],
)
async def test_a_foreign_origin_is_a_403_problem(
    gateway: RunningGateway, path: str, origin: str
) -> None:
    response = await answer(gateway, path, origin)
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert origin in response.json()["detail"]


@pytest.mark.parametrize("path", PATHS)
async def test_a_listed_origin_the_gateways_own_or_none_is_served(
    gateway: RunningGateway, path: str
) -> None:
    own = gateway.url  # http://127.0.0.1:<port>, the Host header httpx sends
    for origin in (LISTED, own, None):
        assert (await answer(gateway, path, origin)).status_code == 200, origin


async def test_any_origin_is_served_when_cors_allows_any(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(cors_origins="*")
    assert (await answer(gateway, "/stocks", "https://elsewhere.example")).status_code == 200
