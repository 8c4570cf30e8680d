"""A token's `conflate` and `delay` claims are floors for every stream it opens: a request
may ask for more, never less; a bad claim is an invalid token."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.problems import assert_problem
from tests.sse_client import open_stream
from tests.ticks import publish
from tests.timed_events import collecting, request, stored_at
from tests.tokens import AUTH, bearer, mint

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def secured(start_gateway: StartGateway, js: JetStreamContext) -> RunningGateway:
    return await start_gateway(**AUTH)


async def effective(gateway: RunningGateway, query: str, token: str) -> tuple[str, str]:
    """(Price-Conflate, Price-Delay) of a stream opened with `query` and `token`."""
    response = await request(gateway.url, query, bearer(token))
    assert response.status_code == 200, response.text
    return response.headers["price-conflate"], response.headers["price-delay"]


async def test_a_request_without_parameters_gets_the_floors_of_its_token(
    secured: RunningGateway,
) -> None:
    token = mint(conflate=1000, delay=5)
    assert await effective(secured, "", token) == ("1000", "5")


async def test_a_request_asking_for_less_than_its_floors_gets_the_floors(
    secured: RunningGateway,
) -> None:
    token = mint(conflate=1000, delay=5)
    assert await effective(secured, "conflate=0&delay=0", token) == ("1000", "5")
    assert await effective(secured, "conflate=100&delay=1", token) == ("1000", "5")


async def test_a_request_asking_for_more_than_its_floors_gets_more(
    secured: RunningGateway,
) -> None:
    token = mint(conflate=1000, delay=5)
    assert await effective(secured, "conflate=2000&delay=10", token) == ("2000", "10")
    assert await effective(secured, "conflate=250&delay=10", token) == ("1000", "10")


async def test_a_token_without_floors_gets_what_the_request_asks(
    secured: RunningGateway,
) -> None:
    assert await effective(secured, "", mint()) == ("0", "0")
    assert await effective(secured, "conflate=250&delay=3", mint()) == ("250", "3")


async def test_head_answers_the_floors_of_its_token(secured: RunningGateway) -> None:
    token = mint(conflate=1000, delay=5)
    response = await request(secured.url, "conflate=50", bearer(token), method="HEAD")
    assert response.status_code == 200
    assert (response.headers["price-conflate"], response.headers["price-delay"]) == ("1000", "5")


async def test_the_conflation_floor_conflates_the_stream(
    secured: RunningGateway, js: JetStreamContext
) -> None:
    token = mint(conflate=1000)
    async with (
        open_stream(secured.url, {"symbols": "AAPL"}, bearer(token)) as stream,
        collecting(stream) as events,
    ):
        await publish(js, "AAPL", "1")
        await events.count(1)
        for i in range(2, 21):
            await publish(js, "AAPL", f"{i}")
        await events.count(2, within=3.0)
        await events.quiet(0.5)
    assert [r.price for r in events.received] == [1.0, 20.0]


async def test_the_delay_floor_delays_the_stream(
    secured: RunningGateway, js: JetStreamContext
) -> None:
    token = mint(delay=1)
    async with (
        open_stream(secured.url, {"symbols": "AAPL", "delay": "0"}, bearer(token)) as stream,
        collecting(stream) as events,
    ):
        sequence = await publish(js, "AAPL", "1")
        (received,) = await events.count(1, within=3.0)
    assert received.sequence == sequence
    due = await stored_at(js, sequence) + 1.0
    assert due - 0.01 <= received.wall <= due + 1.0


async def test_a_bad_floor_claim_is_an_invalid_token(secured: RunningGateway) -> None:
    bad: list[dict[str, Any]] = [
        {"conflate": "fast"},
        {"conflate": 10},
        {"conflate": 70000},
        {"conflate": -1},
        {"conflate": 1.5},
        {"conflate": True},
        {"conflate": None},
        {"conflate": [1000]},
        {"delay": "x"},
        {"delay": 0.5},
        {"delay": 86401},
        {"delay": -1},
        {"delay": True},
        {"delay": {"s": 5}},
    ]
    for claims in bad:
        (name,) = claims
        response = await request(secured.url, "symbols=AAPL", bearer(mint(**claims)))
        assert_problem(response, 401, name)
        assert response.headers["www-authenticate"].startswith("Bearer"), claims
