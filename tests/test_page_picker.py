"""The symbol picker: typed or stored symbols, kept in the page URL across a reload, and
the keyboard: chips, rows, and announcements of the focused row only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext
from playwright.async_api import Browser, expect

from tests.browser import launch_browser, open_page
from tests.conftest import RunningGateway
from tests.ticks import publish


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_browser() as launched:
        yield launched


async def test_reload_keeps_the_chosen_symbols(
    gateway: RunningGateway, js: JetStreamContext, browser: Browser
) -> None:
    page = await open_page(browser, f"{gateway.url}/")
    await page.locator("#symbol-input").fill("MSFT")
    await page.locator("#symbol-input").press("Enter")
    await page.locator("#symbol-input").fill("AAPL")
    await page.locator("#symbol-input").press("Enter")
    await expect(page).to_have_url(f"{gateway.url}/?symbols=MSFT,AAPL")
    await publish(js, "AAPL", "190.000000")
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("190.000000")

    await page.reload()
    await expect(page).to_have_url(f"{gateway.url}/?symbols=MSFT,AAPL")
    await expect(page.locator("#chips .chip span")).to_have_text(["MSFT", "AAPL"])
    await expect(page.locator("#prices-body tr")).to_have_count(2)
    # A fresh page starts with the latest stored price of each chosen symbol.
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("190.000000")


async def test_stored_symbols_are_offered_and_added_by_click(
    gateway: RunningGateway, js: JetStreamContext, browser: Browser
) -> None:
    for symbol in ("MSFT", "AAPL", "BRK.B"):
        await publish(js, symbol, "10.5")
    page = await open_page(browser, f"{gateway.url}/?symbols=AAPL")
    suggestions = page.locator("#suggestions button")
    await expect(suggestions).to_have_text(["+ BRK.B", "+ MSFT"])
    await page.get_by_role("button", name="Add MSFT").click()
    await expect(page).to_have_url(f"{gateway.url}/?symbols=AAPL,MSFT")
    await expect(suggestions).to_have_text(["+ BRK.B"])


async def test_keyboard_removes_symbols_and_the_focused_row_is_announced(
    gateway: RunningGateway, js: JetStreamContext, browser: Browser
) -> None:
    page = await open_page(browser, f"{gateway.url}/?symbols=AAPL,MSFT,GOOG")
    input_ = page.locator("#symbol-input")
    await input_.focus()
    await input_.press("Backspace")  # empty field: removes the last chip
    await expect(page).to_have_url(f"{gateway.url}/?symbols=AAPL,MSFT")

    await page.locator('tr[data-symbol="AAPL"]').focus()
    await page.keyboard.press("ArrowDown")
    await expect(page.locator('tr[data-symbol="MSFT"]')).to_be_focused()
    await publish(js, "AAPL", "189.230000")  # not the focused row: not announced
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("189.230000")
    await expect(page.locator("#announcer")).to_have_text("")
    await publish(js, "MSFT", "412.500000")
    await expect(page.locator("#announcer")).to_have_text(
        "MSFT 412.500000, unchanged 0.00% since first seen"
    )

    await page.keyboard.press("Delete")
    await expect(page).to_have_url(f"{gateway.url}/?symbols=AAPL")
    await expect(page.locator('tr[data-symbol="AAPL"]')).to_be_focused()
