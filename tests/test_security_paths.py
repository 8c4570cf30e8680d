"""Paths: the gateway never redirects; a path it does not serve is a 404 problem, over real HTTP."""

from __future__ import annotations

import httpx
import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "path", ["/stocks/", "/symbols/", "/healthz/", "/readyz/", "/metrics/", "/nothing", "/stocks/x"]
)
async def test_a_path_with_a_trailing_slash_or_unknown_is_a_404_problem_not_a_redirect(
    start_gateway: StartGateway, js: JetStreamContext, path: str
) -> None:
    gateway: RunningGateway = await start_gateway()
    # A Host of the attacker's choosing must not come back in a Location.
    async with httpx.AsyncClient(base_url=gateway.url, follow_redirects=False) as client:
        response = await client.get(path, headers={"Host": "evil.example"})
    assert response.status_code == 404, (response.status_code, response.headers)
    assert "location" not in response.headers
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
