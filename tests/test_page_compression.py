"""The page in headless Chromium over a gzipped stream: the browser's fetch asks for gzip
by itself, the gateway answers it, and every price still shows as it comes, across a
change of symbols that resumes from the page's last id."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext
from playwright.async_api import Browser, expect

from tests.browser import PageErrors, launch_browser, open_page
from tests.conftest import StartGateway
from tests.servers import eventually
from tests.ticks import event_id, publish


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_browser() as launched:
        yield launched


def opened(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(encoding, position) of each stream the gateway opened."""
    return [
        (getattr(record, "encoding", "?"), getattr(record, "position", "?"))
        for record in caplog.records
        if record.getMessage() == "stream opened"
    ]


async def test_the_page_follows_prices_over_a_gzipped_stream(
    start_gateway: StartGateway,
    js: JetStreamContext,
    browser: Browser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    gateway = await start_gateway()
    errors = PageErrors()
    page = await open_page(browser, f"{gateway.url}/?symbols=AAPL", errors)
    await eventually(lambda: opened(caplog) == [("gzip", "")], within=5, what="gzip stream")
    value = page.locator('tr[data-symbol="AAPL"] .value')
    for price in ("189.230000", "189.350000", "189.410000"):  # one event per write
        sequence = await publish(js, "AAPL", price)
        await expect(value).to_have_text(price)
    last = await event_id(js, sequence)
    assert await page.locator('tr[data-symbol="AAPL"]').get_attribute("data-id") == last

    # A new symbol set: a new stream, from the page's last id, gzipped as well.
    await page.locator("#symbol-input").fill("AAPL, MSFT")
    await page.locator("#symbol-input").press("Enter")
    await eventually(lambda: len(opened(caplog)) == 2, within=5, what="second stream")
    assert opened(caplog)[1] == ("gzip", last)
    await publish(js, "MSFT", "410.000000")
    await expect(page.locator('tr[data-symbol="MSFT"] .value')).to_have_text("410.000000")
    await publish(js, "AAPL", "189.500000")
    await expect(value).to_have_text("189.500000")
    assert errors.messages == []
