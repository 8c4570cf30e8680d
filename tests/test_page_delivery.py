"""Delivery control on the page, in headless Chromium against a real gateway: the rate
choice conflates the stream (and is kept in the URL), a delay a token imposes shows as a
badge, the client library's own `delay` option, and the page on a phone's screen."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from playwright.async_api import Browser, Page, ViewportSize, expect

from tests.browser import PageErrors, launch_browser, open_page, screenshot
from tests.conftest import RunningGateway, StartGateway
from tests.servers import eventually
from tests.ticks import event_id, publish
from tests.tokens import AUTH, mint

pytestmark = pytest.mark.timeout(90)

PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1100, "height": 640}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_browser() as launched:
        yield launched


def opened(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The gateway's "stream opened" log lines: symbols, conflate and delay (seconds)."""
    fields = ("symbols", "conflate", "delay", "position")
    return [
        {name: record.__dict__[name] for name in fields}
        for record in caplog.records
        if record.getMessage() == "stream opened" and hasattr(record, "conflate")
    ]


async def arrivals(page: Page, symbol: str, since: float) -> list[float]:
    """When (ms since the epoch) the page got each tick of `symbol` after `since`."""
    times: list[float] = await page.evaluate(
        "([symbol, since]) => window.__ticks"
        ".filter((t) => t.symbol === symbol && t.at >= since).map((t) => t.at)",
        [symbol, since],
    )
    return times


async def publish_for(js: JetStreamContext, seconds: float, symbols: list[str]) -> list[str]:
    """About 50 ticks a second per symbol for `seconds`; the last price of each, in order."""
    end = time.monotonic() + seconds
    step = 0
    while time.monotonic() < end:
        step += 1
        for symbol in symbols:
            await publish(js, symbol, f"{100 + step / 100:.6f}")
        await asyncio.sleep(0.02)
    return [f"{100 + step / 100:.6f}" for _ in symbols]


async def test_the_rate_choice_conflates_the_stream_and_is_kept(
    gateway: RunningGateway,
    js: JetStreamContext,
    browser: Browser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    errors = PageErrors()
    page = await open_page(browser, f"{gateway.url}/?symbols=AAPL,MSFT", errors)
    await expect(page.get_by_label("every tick")).to_be_checked()
    await eventually(lambda: len(opened(caplog)) == 1, within=5, what="the first stream")
    assert opened(caplog)[0]["conflate"] == 0

    await page.get_by_label("1 a second").check()
    await expect(page).to_have_url(f"{gateway.url}/?symbols=AAPL,MSFT&conflate=1000")
    await eventually(lambda: len(opened(caplog)) == 2, within=5, what="a conflated stream")
    stream = opened(caplog)[1]
    assert (stream["symbols"], stream["conflate"], stream["delay"]) == (("AAPL", "MSFT"), 1.0, 0)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert await page.evaluate("window.__subscription.state.delivery") == {
        "conflate": 1000,
        "delay": 0,
    }
    assert await page.evaluate("window.__subscription.requested") == {"conflate": 1000, "delay": 0}

    since = await page.evaluate("Date.now()")
    last = await publish_for(js, 3.2, ["AAPL", "MSFT"])  # ~160 ticks of each
    # The last value is never lost: it arrives within one interval.
    for symbol, price in zip(["AAPL", "MSFT"], last, strict=True):
        row = page.locator(f'tr[data-symbol="{symbol}"] .value')
        await expect(row).to_have_text(price, timeout=2500)
    for symbol in ("AAPL", "MSFT"):
        times = await arrivals(page, symbol, since)
        assert 3 <= len(times) <= 6, (symbol, times)  # ~1 a second, not ~50
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 800, (symbol, gaps)  # an interval, less the network's jitter
    assert await page.locator("#rate-note").text_content() == ""

    # 4 a second: a new stream again, that resumes after the last tick shown.
    shown = await page.evaluate("window.__ticks.at(-1).id")
    await page.get_by_label("4 a second").check()
    await expect(page).to_have_url(f"{gateway.url}/?symbols=AAPL,MSFT&conflate=250")
    await eventually(lambda: len(opened(caplog)) == 3, within=5, what="a stream at 250 ms")
    assert opened(caplog)[2]["conflate"] == 0.25
    assert opened(caplog)[2]["position"] == shown
    since = await page.evaluate("Date.now()")
    await publish_for(js, 2.0, ["AAPL"])
    await asyncio.sleep(0.5)
    times = await arrivals(page, "AAPL", since)
    assert 5 <= len(times) <= 12, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 200, gaps

    # A reload keeps the rate, as it keeps the symbols.
    await page.reload()
    await expect(page.get_by_label("4 a second")).to_be_checked()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await eventually(lambda: len(opened(caplog)) == 4, within=5, what="the reloaded stream")
    assert opened(caplog)[3]["conflate"] == 0.25

    # Back to every tick: exact, from the last tick shown, none missed or doubled.
    await page.get_by_label("every tick").check()
    await expect(page).to_have_url(f"{gateway.url}/?symbols=AAPL,MSFT")
    await eventually(lambda: len(opened(caplog)) == 5, within=5, what="an exact stream")
    assert opened(caplog)[4]["conflate"] == 0
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    before = await page.evaluate("window.__ticks.length")
    expected = [await event_id(js, await publish(js, "MSFT", f"{300 + i}.5")) for i in range(8)]
    await eventually(
        lambda: _ids_after(page, before, expected), within=5, what="every tick, exactly"
    )
    assert errors.messages == []


async def _ids_after(page: Page, start: int, expected: list[str]) -> bool:
    ids: list[str] = await page.evaluate(
        "(start) => window.__ticks.slice(start).map((t) => t.id)", start
    )
    assert ids == expected[: len(ids)], ids
    return ids == expected


async def test_a_delay_the_token_imposes_shows_as_a_badge(
    start_gateway: StartGateway, js: JetStreamContext, browser: Browser
) -> None:
    gateway = await start_gateway(**AUTH)
    context = await browser.new_context()
    # Licensed for prices 15 minutes late, at most one a second per symbol.
    token = mint(["AAPL"], delay=900, conflate=1000)
    await context.add_cookies(
        [{"name": "price_token", "value": token, "url": gateway.url, "httpOnly": True}]
    )
    errors = PageErrors()
    page = await open_page(context, f"{gateway.url}/?symbols=AAPL", errors)
    badge = page.locator("#delay-badge")
    await expect(badge).to_be_visible()
    await expect(badge).to_have_text("delayed 15 min")
    await expect(badge).to_have_attribute("title", "Prices are shown 15 min after they were stored")
    assert await page.evaluate("window.__subscription.state.delivery") == {
        "conflate": 1000,
        "delay": 900,
    }
    # Every tick was asked for; the token's floor is what applies, and the page says so.
    await expect(page.get_by_label("every tick")).to_be_checked()
    await expect(page.locator("#rate-note")).to_have_text(
        "Your access allows at most 1 a second per symbol."
    )
    await page.get_by_label("1 a second").check()
    await expect(page.locator("#rate-note")).to_have_text("")
    await expect(badge).to_have_text("delayed 15 min")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await screenshot(page, "page-delayed")
    assert errors.messages == []
    await context.close()


async def test_without_a_delay_there_is_no_badge(
    start_gateway: StartGateway, browser: Browser
) -> None:
    gateway = await start_gateway()
    page = await open_page(browser, f"{gateway.url}/")
    assert await page.evaluate("window.__subscription.state.delivery") == {
        "conflate": 0,
        "delay": 0,
    }
    await expect(page.locator("#delay-badge")).to_be_hidden()


async def test_the_client_library_takes_a_delay_and_reports_it(
    start_gateway: StartGateway, js: JetStreamContext, browser: Browser
) -> None:
    gateway = await start_gateway()
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/healthz")  # any document of the gateway's origin
    await page.evaluate(
        """async () => {
          const { subscribe } = await import("/static/price-client.js");
          window.__got = [];
          window.__states = [];
          window.__sub = subscribe(
            ["AAPL"],
            (tick) => window.__got.push({ id: tick.id, price: tick.price, at: Date.now() }),
            (state) => window.__states.push(state),
            { delay: 2 },
          );
        }"""
    )
    await eventually(
        lambda: page.evaluate("window.__states.some((s) => s.state === 'live')"),
        within=5,
        what="the delayed stream open",
    )
    assert await page.evaluate("window.__sub.state.delivery") == {"conflate": 0, "delay": 2}
    sent = await page.evaluate("Date.now()")
    expected = await event_id(js, await publish(js, "AAPL", "189.230000"))
    await eventually(
        lambda: page.evaluate("window.__got.length === 1"), within=5, what="the delayed tick"
    )
    got = await page.evaluate("window.__got[0]")
    assert (got["id"], got["price"]) == (expected, "189.230000")
    assert 1900 <= got["at"] - sent <= 4500, got["at"] - sent  # [delay, delay + load]
    # Values the gateway would refuse are refused here, before any request.
    refused = await page.evaluate(
        """async () => {
          const { subscribe } = await import("/static/price-client.js");
          const outcomes = [];
          for (const options of [{ conflate: 10 }, { delay: 86401 }, { conflate: 1.5 }]) {
            try {
              subscribe(["AAPL"], () => {}, null, options);
              outcomes.push("accepted");
            } catch (error) {
              outcomes.push(error.name);
            }
          }
          return outcomes;
        }"""
    )
    assert refused == ["RangeError"] * 3


async def fills_the_page(page: Page) -> None:
    for symbol, price in (("AAPL", "189.230000"), ("MSFT", "412.500000"), ("BRK.B", "455.12")):
        await expect(page.locator(f'tr[data-symbol="{symbol}"] .value')).to_have_text(price)


async def test_the_page_fits_a_phone_screen(
    start_gateway: StartGateway, js: JetStreamContext, browser: Browser, tmp_path: Path
) -> None:
    gateway = await start_gateway()
    for symbol, price in (("AAPL", "189.230000"), ("MSFT", "412.500000"), ("BRK.B", "455.12")):
        await publish(js, symbol, price, source="pub-1")
    page = await browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    await page.goto(f"{gateway.url}/?symbols=AAPL,MSFT,BRK.B&conflate=250")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await fills_the_page(page)
    await page.emulate_media(color_scheme="light", reduced_motion="reduce")
    path = await screenshot(page, "page-phone", also=tmp_path / "page-phone.png")
    assert path.exists()

    # The page itself never scrolls sideways.
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # What matters most is on screen: symbol, last price, change.
    for column in ("th.symbol", ".price", ".change"):
        box = await page.locator(f'tr[data-symbol="BRK.B"] {column}').bounding_box()
        assert box is not None, column
        assert box["x"] + box["width"] <= PHONE["width"], column
    # The time column is folded away, and the table's card scrolls sideways on its own.
    await expect(page.locator("#prices thead th.time")).to_be_hidden()
    await expect(page.locator('tr[data-symbol="AAPL"] td.time')).to_be_hidden()
    card = page.locator(".table-card")
    assert await card.evaluate("(el) => getComputedStyle(el).overflowX") == "auto"
    await expect(page.locator("#rate label")).to_have_count(3)
    for label in await page.locator("#rate label").all():
        box = await label.bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= PHONE["width"]

    # A longer price than the screen has room for scrolls inside the card, not the page.
    await publish(js, "BRK.B", "98765432109.123456", source="pub-1")
    await expect(page.locator('tr[data-symbol="BRK.B"] .value')).to_have_text("98765432109.123456")
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert await card.evaluate("(el) => el.scrollWidth > el.clientWidth"), "scrolls in its card"


async def test_the_page_on_a_desktop_screen_shows_every_column(
    start_gateway: StartGateway, js: JetStreamContext, browser: Browser, tmp_path: Path
) -> None:
    gateway = await start_gateway()
    for symbol, price in (("AAPL", "189.230000"), ("MSFT", "412.500000"), ("BRK.B", "455.12")):
        await publish(js, symbol, price, source="pub-1")
    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{gateway.url}/?symbols=AAPL,MSFT,BRK.B")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await fills_the_page(page)
    await page.emulate_media(color_scheme="light", reduced_motion="reduce")
    await screenshot(page, "page-desktop", also=tmp_path / "page-desktop.png")
    for column in ("spark", "time", "source"):
        await expect(page.locator(f"#prices thead th.{column}")).to_be_visible()
        await expect(page.locator(f'tr[data-symbol="AAPL"] td.{column}')).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]
    card = await page.locator(".table-card").evaluate("(el) => el.scrollWidth <= el.clientWidth")
    assert card, "the table fits its card on a desktop"
