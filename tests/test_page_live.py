"""The live price page in headless Chromium: loads cleanly, follows the chosen symbols
on the gateway's side, and shows prices with their exact digits."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from playwright.async_api import Browser, expect

from tests.browser import (
    PageErrors,
    launch_browser,
    open_page,
    open_streams,
    screenshot,
    streams_opened,
)
from tests.conftest import RunningGateway, StartGateway
from tests.servers import eventually
from tests.ticks import event_id, publish

DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "page.png"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_browser() as launched:
        yield launched


async def test_page_loads_without_console_errors(gateway: RunningGateway, browser: Browser) -> None:
    errors = PageErrors()
    page = await open_page(browser, f"{gateway.url}/?symbols=AAPL", errors)
    await expect(page.locator("#chips")).to_contain_text("AAPL")
    await expect(page.locator("#transport")).to_have_text(
        "one connection shared by this site's tabs"
    )
    await page.locator("#symbol-input").focus()  # fetches /symbols again
    await expect(page.locator('tr[data-symbol="AAPL"]')).to_be_visible()
    assert errors.messages == []


async def test_published_price_shows_with_its_exact_digits(
    gateway: RunningGateway, js: JetStreamContext, browser: Browser
) -> None:
    page = await open_page(browser, f"{gateway.url}/?symbols=AAPL")
    sequence = await publish(js, "AAPL", "189.230000", source="pub-1")
    row = page.locator('tr[data-symbol="AAPL"]')
    await expect(row.locator(".value")).to_have_text("189.230000", timeout=2000)
    await expect(row.locator(".source")).to_have_text("pub-1")
    assert await row.get_attribute("data-id") == await event_id(js, sequence)
    await publish(js, "AAPL", "189.350000", source="pub-1")
    await expect(row.locator(".value")).to_have_text("189.350000", timeout=2000)
    await expect(row.locator(".change")).to_have_text("\u25b2 +0.120000")
    await expect(row.locator(".arrow")).to_have_text("\u25b2")


async def test_choosing_symbols_changes_the_stream_url_and_table(
    gateway: RunningGateway,
    js: JetStreamContext,
    browser: Browser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    page = await open_page(browser, f"{gateway.url}/?symbols=AAPL")
    await eventually(lambda: streams_opened(caplog) == [("AAPL",)], within=5, what="AAPL")
    await page.locator("#symbol-input").fill("msft, brk.b")
    await page.locator("#symbol-input").press("Enter")

    await expect(page).to_have_url(f"{gateway.url}/?symbols=AAPL,MSFT,BRK.B")
    rows = page.locator("#prices-body tr")
    await expect(rows).to_have_count(3)
    await eventually(
        lambda: streams_opened(caplog)[1:] == [("AAPL", "BRK.B", "MSFT")],
        within=5,
        what="one new stream of the three symbols",
    )
    await publish(js, "BRK.B", "412.500000")
    await publish(js, "GOOG", "150.000000")  # not chosen: never shown
    await expect(page.locator('tr[data-symbol="BRK.B"] .value')).to_have_text("412.500000")

    await page.get_by_role("button", name="Remove AAPL").click()
    await expect(page).to_have_url(f"{gateway.url}/?symbols=MSFT,BRK.B")
    await expect(rows).to_have_count(2)
    await eventually(
        lambda: streams_opened(caplog)[2:] == [("BRK.B", "MSFT")],
        within=5,
        what="one new stream of the remaining symbols",
    )
    await eventually(lambda: streams_are(gateway, 1), within=5, what="the old streams closed")
    shown = await page.evaluate("window.__ticks.map((t) => t.symbol)")
    assert shown == ["BRK.B"]


async def streams_are(gateway: RunningGateway, count: int) -> bool:
    return await open_streams(gateway.url) == count


async def test_screenshots_in_light_and_dark(
    gateway: RunningGateway, js: JetStreamContext, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1100, "height": 560})
    await page.goto(f"{gateway.url}/?symbols=AAPL,MSFT,BRK.B,GOOG")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    walks = {
        "AAPL": [
            "189.230000",
            "189.310000",
            "189.270000",
            "189.420000",
            "189.380000",
            "189.450000",
        ],
        "MSFT": [
            "412.500000",
            "412.100000",
            "411.850000",
            "412.050000",
            "411.700000",
            "411.550000",
        ],
        "BRK.B": ["455.10", "455.35", "455.20", "455.60", "455.95", "455.80"],
        "GOOG": [
            "150.000000",
            "150.120000",
            "149.980000",
            "150.250000",
            "150.410000",
            "150.600000",
        ],
    }
    for step in range(6):
        for symbol, prices in walks.items():
            await publish(js, symbol, prices[step], source="demo-1")
    for symbol, prices in walks.items():
        await expect(page.locator(f'tr[data-symbol="{symbol}"] .value')).to_have_text(prices[-1])
    await page.locator('tr[data-symbol="MSFT"]').focus()
    docs = DOCS_SCREENSHOT if os.environ.get("UPDATE_DOCS_SCREENSHOT") else None
    await page.emulate_media(color_scheme="light", reduced_motion="reduce")
    await screenshot(page, "page-light", also=docs)
    await page.emulate_media(color_scheme="dark", reduced_motion="reduce")
    await screenshot(page, "page-dark")


async def test_more_symbols_than_the_gateway_takes_are_filtered_in_the_browser(
    start_gateway: StartGateway,
    js: JetStreamContext,
    browser: Browser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    gateway = await start_gateway(max_symbols=1)
    page = await open_page(browser, f"{gateway.url}/?symbols=AAPL,MSFT")
    await publish(js, "GOOG", "150.000000")
    await publish(js, "MSFT", "412.500000")
    await expect(page.locator('tr[data-symbol="MSFT"] .value')).to_have_text("412.500000")
    assert await page.evaluate("window.__ticks.map((t) => t.symbol)") == ["MSFT"]
    assert streams_opened(caplog) == ["*"]


async def test_no_symbols_chosen_shows_every_symbol_sorted(
    gateway: RunningGateway, js: JetStreamContext, browser: Browser
) -> None:
    page = await open_page(browser, f"{gateway.url}/")
    await expect(page.locator("#chips")).to_have_text("All symbols")
    await publish(js, "MSFT", "412.500000")
    await publish(js, "AAPL", "189.230000")
    rows = page.locator("#prices-body tr")
    await expect(rows).to_have_count(2)
    assert await rows.evaluate_all("(rows) => rows.map((r) => r.dataset.symbol)") == [
        "AAPL",
        "MSFT",
    ]
