"""Bad input gets a 400 problem document naming the offending value, before any byte."""

from __future__ import annotations

import httpx
import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.ticks import client_consumers, event_id, publish

TOO_MANY = ",".join(f"S{i}" for i in range(101))


async def get_problem(
    gateway: RunningGateway, params: dict[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        return await client.get("/stocks", params=params, headers=headers)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"symbols": "AAPL,*"}, "'*'"),
        ({"symbols": ">"}, "'>'"),
        ({"symbols": "BRK_B"}, "'BRK_B'"),
        ({"symbols": "AAPL,,MSFT"}, "''"),
        ({"symbols": ""}, "''"),
        ({"symbols": "ABCDEFGHIJKLMNOPQ"}, "'ABCDEFGHIJKLMNOPQ'"),
        ({"symbols": "AA PL"}, "'AA PL'"),
        ({"symbols": "-AAPL"}, "'-AAPL'"),
        ({"symbols": TOO_MANY}, "'S100'"),
        ({"lastEventId": "garbage"}, "'garbage'"),
        ({"lastEventId": "-5"}, "'-5'"),
        ({"lastEventId": "abc--5"}, "'abc--5'"),
        ({"lastEventId": "abc-0"}, "'abc-0'"),
        ({"lastEventId": "abc-1x"}, "'abc-1x'"),
    ],
    ids=[
        "star",
        "gt",
        "underscore",
        "empty-in-list",
        "empty",
        "17-chars",
        "space",
        "leading-dash",
        "101-symbols",
        "garbage-id",
        "negative-id",
        "double-dash-id",
        "zero-id",
        "non-numeric-id",
    ],
)
async def test_bad_input_is_a_400_problem_naming_the_value(
    gateway: RunningGateway, params: dict[str, str], named: str
) -> None:
    response = await get_problem(gateway, params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert set(problem) >= {"type", "title", "status", "detail"}
    assert problem["status"] == 400
    assert named in problem["detail"]


async def test_bad_last_event_id_header_is_a_400(gateway: RunningGateway) -> None:
    response = await get_problem(gateway, {}, {"Last-Event-ID": "not-an-id!"})
    assert response.status_code == 400
    assert "'not-an-id!'" in response.json()["detail"]


async def test_id_of_a_future_sequence_is_a_400(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    last = await publish(js, "AAPL")
    future = await event_id(js, last + 1)
    response = await get_problem(gateway, {"symbols": "AAPL"}, {"Last-Event-ID": future})
    assert response.status_code == 400
    assert future in response.json()["detail"]
    assert await client_consumers(js) == []


async def test_max_symbols_is_configurable(start_gateway: object, js: JetStreamContext) -> None:
    gateway = await start_gateway(max_symbols=2)  # type: ignore[operator]
    response = await get_problem(gateway, {"symbols": "A,B,C"})
    assert response.status_code == 400
    assert "at most 2" in response.json()["detail"]


@pytest.mark.parametrize("query", ["symbols=%00%FF", "symbols=%E2%82%AC", "lastEventId=%FF%FE-1"])
async def test_undecodable_input_is_a_400_problem_too(gateway: RunningGateway, query: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{gateway.url}/stocks?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in response.text


async def test_oversized_request_headers_get_a_431_problem(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{gateway.url}/stocks", headers={"X-Big": "a" * 20_000})
    assert response.status_code == 431
    assert response.headers["content-type"] == "application/problem+json"
    assert "16384 bytes" in response.json()["detail"]


async def test_an_unexpected_error_is_a_500_problem_without_a_trace(
    start_gateway: StartGateway, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("secret internals /srv/app.py line 12")

    monkeypatch.setattr("gateway.stocks.parse_query", broken)  # a bug, injected
    gateway = await start_gateway()
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.get("/stocks")
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert "secret internals" not in response.text
        assert "Traceback" not in response.text
        # Inside the browser middleware: a 500 has the security headers like any answer.
        assert response.headers["x-content-type-options"] == "nosniff"
        assert (await client.get("/healthz")).status_code == 200  # still serving
