"""Where a token may come from: never the query string (in any letter case, refused before
authentication), and one rule for a repeated cookie or Authorization header: the first wins."""

from __future__ import annotations

import httpx
import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.tokens import AUTH, mint

pytestmark = pytest.mark.timeout(60)

BAD = "not.a.token"


@pytest.fixture
async def secured(start_gateway: StartGateway, js: JetStreamContext) -> RunningGateway:
    return await start_gateway(**AUTH)


async def status_of(
    gateway: RunningGateway, path: str, headers: list[tuple[str, str]] | None = None
) -> int:
    async with (
        httpx.AsyncClient(base_url=gateway.url) as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        return response.status_code


@pytest.mark.parametrize(
    "name", ["access_token", "ACCESS_TOKEN", "Token", "JWT", "Id_Token", "iD_tOkEn"]
)
@pytest.mark.parametrize("path", ["/stocks", "/symbols"])
async def test_a_token_parameter_in_any_case_is_400_before_authentication(
    secured: RunningGateway, name: str, path: str
) -> None:
    # No credential at all: a 401 would mean the query was looked at after the token.
    async with httpx.AsyncClient(base_url=secured.url) as client:
        response = await client.get(path, params={name: mint()})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert repr(name) in response.json()["detail"]


@pytest.mark.parametrize(
    ("first", "second", "status"), [("good", "bad", 200), ("bad", "good", 401)]
)
async def test_of_two_token_cookies_the_first_wins(
    secured: RunningGateway, first: str, second: str, status: int
) -> None:
    tokens = {"good": mint(), "bad": BAD}
    cookie = f"price_token={tokens[first]}; price_token={tokens[second]}"
    assert await status_of(secured, "/stocks", [("Cookie", cookie)]) == status


@pytest.mark.parametrize(
    ("first", "second", "status"), [("good", "bad", 200), ("bad", "good", 401)]
)
async def test_of_two_authorization_headers_the_first_wins(
    secured: RunningGateway, first: str, second: str, status: int
) -> None:
    tokens = {"good": mint(), "bad": BAD}
    headers = [("Authorization", f"Bearer {tokens[first]}")]
    headers.append(("Authorization", f"Bearer {tokens[second]}"))
    assert await status_of(secured, "/stocks", headers) == status
