"""Security headers and CORS over real HTTP: on every response (page, static files, the
SSE stream, problem details), and CORS only for the origins --cors-origins lists."""

from __future__ import annotations

import httpx
import pytest
from nats.js import JetStreamContext
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from contracts.settings import SettingsError
from gateway.http.security import SecurityHeadersMiddleware, security_headers
from gateway.settings import Settings
from gateway.stream import HEADERS as STREAM_HEADERS
from tests.conftest import RunningGateway, StartGateway
from tests.sse_client import open_stream
from tests.ticks import publish
from tests.tokens import AUTH, bearer, mint

pytestmark = pytest.mark.timeout(60)

EXPECTED = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "x-frame-options": "DENY",
}
LISTED = "http://app.example.test:8080"
PREFLIGHT = {
    "Origin": LISTED,
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization,last-event-id",
}


def csp_directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return dict(part.strip().partition(" ")[::2] for part in policy.split(";"))


def assert_security_headers(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, f"{name} on {where}"
    assert "camera=()" in response.headers["permissions-policy"], where
    policy = response.headers["content-security-policy"]
    assert "unsafe-inline" not in policy, where
    assert "unsafe-eval" not in policy, where
    directives = csp_directives(response)
    assert directives["default-src"] == "'none'", where
    assert directives["script-src"] == "'self'", where
    assert directives["frame-ancestors"] == "'none'", where
    assert "strict-transport-security" not in response.headers, "HSTS is the ingress's job"
    assert "server" not in response.headers, f"no server name or version on {where}"


async def test_page_static_files_and_problems_carry_the_security_headers(
    gateway: RunningGateway,
) -> None:
    expected = {
        "/": 200,
        "/static/app.js": 200,
        "/static/style.css": 200,
        "/static/price-worker.js": 200,
        "/symbols": 200,
        "/page-config": 200,
        "/healthz": 200,
        "/metrics": 200,
        "/static/nope.js": 404,
        "/nope": 404,
        "/stocks?symbols=NOT*A*SYMBOL": 400,
        "/stocks?lastEventId=garbage": 400,
    }
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for path, status in expected.items():
            response = await client.get(path)
            assert response.status_code == status, path
            assert_security_headers(response)
            if status >= 400:
                assert response.headers["content-type"] == "application/problem+json", path


async def test_the_stream_carries_them_and_keeps_streaming(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    before = list(STREAM_HEADERS)
    for price in ("101.5", "102.5"):  # twice: the stream's shared header list stays as it was
        async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
            assert_security_headers(stream.response)
            assert stream.response.headers["content-type"] == "text/event-stream"
            await publish(js, "AAPL", price)
            event = await stream.next_event()
            assert event.json()["symbol"] == "AAPL"
    assert before == STREAM_HEADERS


async def test_auth_and_unavailable_problems_carry_them_too(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(**AUTH)
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        unauthorized = await client.get("/stocks")
        assert unauthorized.status_code == 401
        assert unauthorized.headers["www-authenticate"].startswith("Bearer")
        assert_security_headers(unauthorized)
        forbidden = await client.get("/stocks?symbols=MSFT", headers=bearer(mint(["AAPL"])))
        assert forbidden.status_code == 403
        assert_security_headers(forbidden)
    await gateway.stop()
    gateway = await start_gateway(wait_connected=False, nats_url="nats://127.0.0.1:1")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        unavailable = await client.get("/stocks")
        assert unavailable.status_code == 503
        assert_security_headers(unavailable)


async def test_a_header_the_route_set_is_kept() -> None:
    async def framed(request: Request) -> Response:
        return PlainTextResponse("ok", headers={"X-Frame-Options": "SAMEORIGIN"})

    app = SecurityHeadersMiddleware(
        Starlette(routes=[Route("/", framed)]), security_headers(Settings())
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as client:
        response = await client.get("/")
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_csp_lets_the_page_reach_the_renew_service_and_nothing_else() -> None:
    def connect_src(renew_url: str) -> str:
        policy = security_headers(Settings(auth_renew_url=renew_url))[0][1].decode()
        return next(d for d in policy.split("; ") if d.startswith("connect-src "))

    assert connect_src("") == "connect-src 'self'"
    assert connect_src("/auth/renew") == "connect-src 'self'"
    assert (
        connect_src("https://login.example.test:8443/renew?app=prices")
        == "connect-src 'self' https://login.example.test:8443"
    )


async def test_page_config_says_whether_auth_is_on_and_where_to_renew(
    start_gateway: StartGateway,
) -> None:
    plain = await start_gateway(wait_connected=False)
    secured = await start_gateway(
        wait_connected=False, auth_renew_url="https://login.example.test/renew", **AUTH
    )
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{plain.url}/page-config")
        assert response.json() == {"auth": False, "renewUrl": None}
        assert response.headers["cache-control"] == "no-cache"
        response = await client.get(f"{secured.url}/page-config")  # public: no token needed
        assert response.status_code == 200
        assert response.json() == {"auth": True, "renewUrl": "https://login.example.test/renew"}


async def test_a_listed_origin_passes_preflight_with_credentials(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(cors_origins=f"{LISTED}, https://other.example.test")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.options("/stocks", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == LISTED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-methods"] == "GET"
    allowed = response.headers["access-control-allow-headers"].lower().split(", ")
    assert {"authorization", "last-event-id"} <= set(allowed)
    assert response.headers["access-control-max-age"] == "600"
    assert_security_headers(response)


async def test_a_listed_origin_reads_the_stream_with_credentials(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(cors_origins=LISTED)
    async with open_stream(gateway.url, {"symbols": "AAPL"}, {"Origin": LISTED}) as stream:
        headers = stream.response.headers
        assert headers["access-control-allow-origin"] == LISTED
        assert headers["access-control-allow-credentials"] == "true"
        assert "origin" in headers["vary"].lower()
        # Only what a page may need: the effective conflation and delay.
        assert headers["access-control-expose-headers"] == "Price-Conflate, Price-Delay"
        await publish(js, "AAPL", "189.230000")
        assert (await stream.next_event()).json()["price"] == 189.23


async def test_an_unlisted_origin_gets_no_allow_origin(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(cors_origins=LISTED)
    evil = "http://evil.example.test"
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        preflight = await client.options("/stocks", headers=PREFLIGHT | {"Origin": evil})
        simple = await client.get("/symbols", headers={"Origin": evil})
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert simple.status_code == 403  # and refused outright (tests/test_security_origin.py)
    assert "access-control-allow-origin" not in simple.headers


async def test_no_cors_origins_means_no_cors_headers(
    gateway: RunningGateway,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        preflight = await client.options("/stocks", headers=PREFLIGHT)
        simple = await client.get("/symbols", headers={"Origin": LISTED})
    assert preflight.status_code == 405  # no CORS layer: OPTIONS is just another method
    for response in (preflight, simple):
        assert not [name for name in response.headers if name.startswith("access-control-")]


async def test_any_origin_is_allowed_without_credentials(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(cors_origins="*")
    # Starlette echoes the origin with credentials when "*" is combined with them and the
    # request has cookies: the trap a browser's cookie-carrying request would spring.
    cookies = {"Cookie": "price_token=x"}
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        preflight = await client.options("/stocks", headers=PREFLIGHT)
        simple = await client.get("/symbols", headers={"Origin": LISTED} | cookies)
    for response in (preflight, simple):
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(
    "origins",
    [
        "*, http://a.example.test",
        "https://a.example.test/",
        "https://a.example.test/path",
        "HTTPS://A.example.test",
        "https://a.example.test:443",
        "http://a.example.test:80",
        "ftp://a.example.test",
        "null",
        "a.example.test",
        "http://user@a.example.test",
        "http://a.example.test:99999",
    ],
)
def test_cors_origins_refuses_what_no_browser_sends(origins: str) -> None:
    with pytest.raises(SettingsError, match="--cors-origins"):
        Settings(cors_origins=origins)


@pytest.mark.parametrize(
    ("origins", "parsed"),
    [
        ("", ()),
        (" , ", ()),
        ("*", ("*",)),
        (
            "http://127.0.0.1:8000, https://app.example.test",
            ("http://127.0.0.1:8000", "https://app.example.test"),
        ),
        ("http://[::1]:3000", ("http://[::1]:3000",)),
    ],
)
def test_cors_origins_accepts_origins_as_browsers_send_them(
    origins: str, parsed: tuple[str, ...]
) -> None:
    assert Settings(cors_origins=origins).cors_origin_list == parsed


@pytest.mark.parametrize(
    "url", ["https://x.test; script-src *", "//evil.test/renew", "javascript:alert(1)", "renew"]
)
def test_renew_url_cannot_smuggle_csp_directives(url: str) -> None:
    with pytest.raises(SettingsError, match="--auth-renew-url"):
        Settings(auth_renew_url=url)
