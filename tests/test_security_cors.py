"""CORS is one policy: the /stocks fast path answers a simple GET with exactly the CORS
headers that CORSMiddleware, configured by the same policy, gives every other route."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.http.security import CorsPolicy
from gateway.settings import Settings

LISTED = "https://app.example.test"
ORIGINS = ["", "*", LISTED, f"{LISTED}, http://127.0.0.1:8080"]
REQUESTS = [
    {},
    {"Origin": LISTED},
    {"Origin": "http://127.0.0.1:8080"},
    {"Origin": "https://evil.example.test"},
    {"Origin": LISTED, "Cookie": "price_token=x"},
    {"Origin": "null"},
]


async def middleware_answer(middleware: list[Middleware], headers: dict[str, str]) -> set[str]:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/symbols", ok)], middleware=middleware)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as client:
        response = await client.get("/symbols", headers=headers)
    return {
        f"{name}: {value}"
        for name, value in response.headers.items()
        if name.startswith("access-control-") or name == "vary"
    }


@pytest.mark.parametrize("origins", ORIGINS)
@pytest.mark.parametrize("headers", REQUESTS)
async def test_the_fast_path_answers_cors_as_the_middleware_does(
    origins: str, headers: dict[str, str]
) -> None:
    policy = CorsPolicy(Settings(cors_origins=origins))
    fast = {
        f"{name.decode()}: {value.decode()}"
        for name, value in policy.for_origin(headers.get("Origin"))
    }
    assert fast == await middleware_answer(policy.middleware(), headers)
