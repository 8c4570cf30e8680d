"""The token's dates and subject: `exp`, `iat` (required) and `nbf` are JSON numbers, `sub`
is required, and a token lives at most --auth-max-token-lifetime. Anything else is a 401,
never a 5xx; over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.tokens import AUTH, SECRET, bearer, claims

pytestmark = pytest.mark.timeout(60)

DAY = 86_400


def signed(**changes: Any) -> str:
    """A correctly signed token whose claims differ from a good one by `changes`
    (a value of None removes the claim)."""
    payload = {k: v for k, v in (claims() | changes).items() if v is not None}
    return jwt.encode(payload, SECRET, "HS256")


@pytest.fixture
async def secured(start_gateway: StartGateway, js: JetStreamContext) -> RunningGateway:
    return await start_gateway(**AUTH)


async def status_of(gateway: RunningGateway, token: str) -> httpx.Response:
    async with (
        httpx.AsyncClient(base_url=gateway.url) as client,
        client.stream("GET", "/stocks", headers=bearer(token)) as response,
    ):
        if response.status_code != 200:
            await response.aread()
        return response


# Made when the test runs: a token minted at import could expire before its case runs.
@pytest.mark.parametrize(
    "make_token",
    [
        lambda: signed(exp=10**400),
        lambda: signed(exp=float("inf")),
        lambda: signed(iat=-(10**400)),
        lambda: signed(nbf=-(10**400)),
        lambda: signed(exp=str(int(time.time()) + 300)),
        lambda: signed(iat=str(int(time.time()))),
        lambda: signed(nbf=str(int(time.time()))),
        lambda: signed(iat=True),
        lambda: signed(nbf=False),
        lambda: signed(sub=None),
        lambda: signed(iat=None),
        lambda: signed(exp=time.time() + 1000 * 365 * DAY),
        lambda: signed(iat=int(time.time()) - 60, exp=int(time.time()) - 60 + DAY + 1),
    ],
    ids=[
        "exp-10^400",
        "exp-infinity",
        "iat-minus-10^400",
        "nbf-minus-10^400",
        "exp-string",
        "iat-string",
        "nbf-string",
        "iat-true",
        "nbf-false",
        "no-sub",
        "no-iat",
        "1000-year-lifetime",
        "lifetime-a-second-over-a-day",
    ],
)
async def test_a_token_with_a_bad_date_or_no_subject_is_401(
    secured: RunningGateway, make_token: Callable[[], str]
) -> None:
    response = await status_of(secured, make_token())
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith('Bearer realm="prices", error=')


async def test_a_token_of_exactly_the_maximum_lifetime_streams(secured: RunningGateway) -> None:
    now = int(time.time())
    response = await status_of(secured, signed(iat=now, exp=now + DAY, nbf=now))
    assert response.status_code == 200, response.text


async def test_the_maximum_lifetime_is_a_setting(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(**AUTH, auth_max_token_lifetime=60.0)
    now = int(time.time())
    assert (await status_of(gateway, signed(iat=now, exp=now + 60))).status_code == 200
    too_long = await status_of(gateway, signed(iat=now, exp=now + 61))
    assert too_long.status_code == 401
    assert "lifetime" in too_long.json()["detail"]
