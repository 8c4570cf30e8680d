"""The page under its security policy and with authentication, in headless Chromium:
no CSP violations, CORS as --cors-origins says, and the HttpOnly token cookie path
(signed in, signed out, a symbol not granted, a token renewed mid-stream with no gap)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from nats.js import JetStreamContext
from playwright.async_api import Browser, BrowserContext, Page, expect
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.browser import PageErrors, launch_browser, open_page, screenshot
from tests.conftest import RunningGateway, StartGateway
from tests.servers import eventually, free_port
from tests.ticks import event_id, publish
from tests.tokens import AUTH, mint

pytestmark = pytest.mark.timeout(90)

# Chromium reports each refused fetch of the page itself (/symbols) as a console error;
# the stream's own 401s happen in the SharedWorker, whose console is not the page's.
REFUSED_401 = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
# Collects what the browser refused under the page's CSP; added before any page script.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__csp.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""
_UNAUTHORIZED = re.compile(r'^gateway_errors_total\{kind="unauthorized"\} (\S+)$', re.MULTILINE)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_browser() as launched:
        yield launched


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context()
    await context.add_init_script(WATCH_CSP)
    try:
        yield context
    finally:
        await context.close()


@asynccontextmanager
async def serve(app: ASGIApp, port: int) -> AsyncIterator[str]:
    """Another origin for the browser: `app` under uvicorn on `port`."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())  # awaited in finally
    try:
        await eventually(lambda: server.started or serving.done(), within=5, what="side server")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def blank(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>another site</title><p>another site</p>")


async def token_cookie(context: BrowserContext, gateway: RunningGateway, token: str) -> None:
    """The cookie the site's login service would set: HttpOnly, out of scripts' reach."""
    await context.add_cookies(
        [
            {
                "name": "price_token",
                "value": token,
                "url": gateway.url,
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )


async def csp_violations(page: Page) -> list[str]:
    violations: list[str] = await page.evaluate("window.__csp")
    return violations


async def unauthorized_answers(gateway: RunningGateway) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{gateway.url}/metrics")).text
    match = _UNAUTHORIZED.search(text)
    return float(match.group(1)) if match else 0.0


async def test_page_runs_under_its_csp_without_violations_or_errors(
    start_gateway: StartGateway, js: JetStreamContext, context: BrowserContext
) -> None:
    gateway = await start_gateway()
    errors = PageErrors()
    page = await open_page(context, f"{gateway.url}/?symbols=AAPL", errors)
    policy = (await page.request.get(gateway.url)).headers["content-security-policy"]
    assert "unsafe" not in policy
    await publish(js, "AAPL", "189.230000")
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("189.230000")
    await expect(page.locator('tr[data-symbol="AAPL"] svg polyline')).to_have_attribute(
        "points", re.compile(r"\d")
    )
    # The picker's form is handled in script: Enter must not become a (refused) submission.
    await page.locator("#symbol-input").fill("MSFT")
    await page.locator("#symbol-input").press("Enter")
    await expect(page).to_have_url(f"{gateway.url}/?symbols=AAPL,MSFT")
    await publish(js, "MSFT", "412.500000")
    await expect(page.locator('tr[data-symbol="MSFT"] .value')).to_have_text("412.500000")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert await page.evaluate("window.__subscription.shared") is True  # the worker loaded
    await screenshot(page, "page-under-csp")
    assert await csp_violations(page) == []
    assert errors.messages == []


async def test_the_browser_enforces_the_policy(
    start_gateway: StartGateway, context: BrowserContext
) -> None:
    gateway = await start_gateway()
    page = await open_page(context, f"{gateway.url}/")
    # What an injected script would try: eval, an inline <script>, a foreign fetch. (A
    # string timer, as DevTools' own evaluation is exempt from the eval check.)
    outcome = await page.evaluate(
        """async () => {
          const result = {};
          setTimeout("window.__evaluated = true;", 0);
          await new Promise((resolve) => setTimeout(resolve, 50));
          result.eval = window.__evaluated === true ? "ran" : "blocked";
          const script = document.createElement("script");
          script.textContent = "window.__injected = true;";
          document.body.append(script);
          result.inline = window.__injected === true ? "ran" : "blocked";
          try {
            await fetch("http://127.0.0.1:9/exfiltrate");
            result.fetch = "sent";
          } catch (error) {
            result.fetch = error.name;
          }
          return result;
        }"""
    )
    assert outcome == {"eval": "blocked", "inline": "blocked", "fetch": "TypeError"}
    violations = await csp_violations(page)
    assert {v.split(" ")[0] for v in violations} == {
        "script-src",
        "script-src-elem",
        "connect-src",
    }, violations


async def test_another_origin_reads_the_stream_with_credentials_only_when_listed(
    start_gateway: StartGateway, js: JetStreamContext, context: BrowserContext
) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    listed = await start_gateway(cors_origins=origin, **AUTH)
    unlisted = await start_gateway(cors_origins="http://127.0.0.1:1", **AUTH)
    await publish(js, "AAPL", "189.230000")  # the latest price opens every stream
    await token_cookie(context, listed, mint(["AAPL"]))  # cookies ignore ports: both get it
    read_stream = """async (url) => {
      try {
        const response = await fetch(url, { credentials: "include" });
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let text = "";
        while (!text.includes("event: stockUpdate")) {
          const { done, value } = await reader.read();
          if (done) break;
          text += value;
        }
        await reader.cancel();
        return `${response.status} ${text.includes('"symbol":"AAPL"')}`;
      } catch (error) {
        return error.name;
      }
    }"""
    async with serve(Starlette(routes=[Route("/", blank)]), port) as site:
        page = await context.new_page()
        await page.goto(site)
        # The cookie (same site, another origin) goes along only because of credentials.
        assert await page.evaluate(read_stream, f"{listed.url}/stocks?symbols=AAPL") == "200 true"
        assert await page.evaluate(read_stream, f"{unlisted.url}/stocks?symbols=AAPL") == (
            "TypeError"
        )


async def test_signed_in_by_cookie_the_page_shows_ticks(
    start_gateway: StartGateway, js: JetStreamContext, context: BrowserContext
) -> None:
    gateway = await start_gateway(**AUTH)
    await token_cookie(context, gateway, mint(["AAPL", "MS*"]))
    errors = PageErrors()
    page = await open_page(context, f"{gateway.url}/?symbols=AAPL,MSFT", errors)
    await publish(js, "MSFT", "412.500000")
    await publish(js, "AAPL", "189.230000")
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("189.230000")
    await expect(page.locator('tr[data-symbol="MSFT"] .value')).to_have_text("412.500000")
    assert "price_token" not in await page.evaluate("document.cookie")  # HttpOnly
    await page.locator("#symbol-input").focus()  # /symbols, with the cookie
    await expect(page.locator("#suggestions")).to_be_hidden()  # both known ones chosen
    await expect(page.locator("#known-error")).to_have_text("")
    assert await csp_violations(page) == []
    assert errors.messages == []


async def test_signed_out_the_page_says_unauthorized_and_retries_slowly(
    start_gateway: StartGateway, js: JetStreamContext, context: BrowserContext
) -> None:
    gateway = await start_gateway(**AUTH)
    errors = PageErrors()
    page = errors.watch(await context.new_page())
    await page.goto(f"{gateway.url}/?symbols=AAPL")
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-state", "unauthorized")
    await expect(page.locator("#state-label")).to_have_text("Unauthorized")
    await expect(page.locator("#state-detail")).to_contain_text("Sign in again")
    await expect(page.locator("#state-detail")).to_contain_text("price_token cookie")
    await expect(page.locator("#heard")).to_contain_text("retry in")
    await screenshot(page, "page-unauthorized")

    refused = await unauthorized_answers(gateway)
    await asyncio.sleep(2.0)  # how often it asks again is the point here
    assert await unauthorized_answers(gateway) - refused <= 1
    await expect(connection).to_have_attribute("data-state", "unauthorized")
    assert "live" not in await page.evaluate("window.__states")
    assert await csp_violations(page) == []
    assert [m for m in errors.messages if REFUSED_401 not in m] == []

    # Signed in (say, in another tab): the next retry streams, the picker fills.
    await token_cookie(context, gateway, mint("*"))
    await publish(js, "AAPL", "189.230000")
    await expect(connection).to_have_attribute("data-state", "live", timeout=15_000)
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("189.230000")
    await expect(page.locator("#known-error")).to_have_text("")


async def test_a_symbol_the_token_does_not_allow_shows_forbidden_naming_it(
    start_gateway: StartGateway, js: JetStreamContext, context: BrowserContext
) -> None:
    gateway = await start_gateway(**AUTH)
    await token_cookie(context, gateway, mint(["AAPL"]))
    errors = PageErrors()
    page = errors.watch(await context.new_page())
    await page.goto(f"{gateway.url}/?symbols=AAPL,MSFT")
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-state", "forbidden")
    await expect(page.locator("#state-label")).to_have_text("Forbidden")
    await expect(page.locator("#state-detail")).to_contain_text("MSFT")
    await screenshot(page, "page-forbidden")

    await page.get_by_role("button", name="Remove MSFT").click()
    await expect(connection).to_have_attribute("data-state", "live")
    await publish(js, "AAPL", "189.230000")
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("189.230000")
    assert await csp_violations(page) == []
    # Chromium logs the worker's refused stream nowhere the page sees: nothing expected.
    assert errors.messages == []


async def test_a_token_held_in_memory_is_sent_as_a_bearer_header(
    start_gateway: StartGateway, js: JetStreamContext, context: BrowserContext
) -> None:
    gateway = await start_gateway(**AUTH)
    await publish(js, "AAPL", "189.230000")
    page = await context.new_page()
    await page.goto(f"{gateway.url}/healthz")  # any document of the gateway's origin
    # No cookie: the token only the app's memory holds reaches the gateway through the
    # SharedWorker, which asks this tab for it before connecting.
    first = await page.evaluate(
        """async (token) => {
          const { subscribe } = await import("/static/price-client.js");
          return await new Promise((resolve) => {
            const sub = subscribe(["AAPL"], (tick) => {
              sub.close();
              resolve([tick.symbol, tick.price, sub.shared]);
            }, null, { token: async () => token });
          });
        }""",
        mint(["AAPL"]),
    )
    assert first == ["AAPL", "189.230000", True]
    assert await csp_violations(page) == []


class RenewService:
    """The site's login service, reduced to renewing: POST /renew sets a fresh cookie."""

    def __init__(self, gateway_origin: str) -> None:
        self.renewals = 0
        self.app = Starlette(
            routes=[Route("/renew", self.renew, methods=["POST"])],
            # The page (the gateway's origin) calls with credentials, as its Set-Cookie needs.
            middleware=[
                Middleware(
                    CORSMiddleware,
                    allow_origins=[gateway_origin],
                    allow_methods=["POST"],
                    allow_credentials=True,
                )
            ],
        )

    async def renew(self, request: Request) -> Response:
        self.renewals += 1
        response = Response(status_code=204)
        response.set_cookie(
            "price_token", mint("*", expires_in=120), path="/", httponly=True, samesite="lax"
        )
        return response


async def test_an_expiring_token_is_renewed_mid_stream_with_no_tick_missed_or_doubled(
    start_gateway: StartGateway,
    js: JetStreamContext,
    context: BrowserContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    renew_port = free_port()
    gateway = await start_gateway(
        auth_renew_url=f"http://127.0.0.1:{renew_port}/renew", auth_leeway=0.0, **AUTH
    )
    service = RenewService(gateway.url)
    await token_cookie(context, gateway, mint("*", expires_in=3))
    errors = PageErrors()
    async with serve(service.app, renew_port):
        page = await open_page(context, f"{gateway.url}/?symbols=AAPL", errors)
        sequences: list[int] = []
        for i in range(60):  # ~6 s of ticks, across the expiry at 3 s
            sequences.append(await publish(js, "AAPL", f"100.{i:02d}"))
            await asyncio.sleep(0.1)
        expected = [await event_id(js, s) for s in sequences]

        async def shown_all() -> bool:
            shown: list[str] = await page.evaluate("window.__ticks.map((t) => t.id)")
            assert len(shown) <= len(expected), "a tick shown twice"
            return shown == expected

        await eventually(shown_all, within=10, what="every tick once, in order")
        assert service.renewals >= 1
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        states: list[Any] = await page.evaluate("window.__states")
        assert "reconnecting" in states  # the stream did end at the expiry
        assert "unauthorized" not in states
        # Renewed before reconnecting, not after a refusal: the gateway ended the stream
        # at the expiry and never had to answer 401.
        ended = [getattr(r, "reason", None) for r in caplog.records if r.msg == "stream closed"]
        assert "token expired" in ended
        assert await unauthorized_answers(gateway) == 0
        await screenshot(page, "page-renewed")
    assert await csp_violations(page) == []  # connect-src let the renewal through
    assert errors.messages == []
