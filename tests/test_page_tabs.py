"""Tabs of one origin share one stream (a SharedWorker); without SharedWorker each tab
streams on its own, with the same behaviour."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext
from playwright.async_api import BrowserContext, expect

from tests.browser import PageErrors, launch_browser, open_page, open_streams, streams_opened
from tests.conftest import RunningGateway
from tests.servers import eventually
from tests.ticks import publish


@pytest.fixture
async def context() -> AsyncIterator[BrowserContext]:
    async with launch_browser() as browser:
        yield await browser.new_context()


async def streams_are(gateway: RunningGateway, count: int) -> bool:
    return await open_streams(gateway.url) == count


async def test_two_tabs_share_one_connection(
    gateway: RunningGateway,
    js: JetStreamContext,
    context: BrowserContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    errors = PageErrors()
    first = errors.watch(await open_page(context, f"{gateway.url}/?symbols=AAPL"))
    second = errors.watch(await open_page(context, f"{gateway.url}/?symbols=MSFT"))
    await eventually(lambda: streams_are(gateway, 1), within=5, what="one stream for two tabs")
    await eventually(
        lambda: streams_opened(caplog)[-1] == ("AAPL", "MSFT"),
        within=5,
        what="the stream carries both tabs' symbols",
    )
    assert await first.evaluate("window.__subscription.shared") is True

    await publish(js, "AAPL", "189.230000")
    await publish(js, "MSFT", "412.500000")
    await expect(first.locator('tr[data-symbol="AAPL"] .value')).to_have_text("189.230000")
    await expect(second.locator('tr[data-symbol="MSFT"] .value')).to_have_text("412.500000")
    # Each tab gets only its own symbols from the shared stream.
    assert await first.evaluate("window.__ticks.map((t) => t.symbol)") == ["AAPL"]
    assert await second.evaluate("window.__ticks.map((t) => t.symbol)") == ["MSFT"]

    # A third tab on a symbol already streamed joins with the recent ticks, no new stream.
    third = await open_page(context, f"{gateway.url}/?symbols=AAPL")
    await expect(third.locator('tr[data-symbol="AAPL"] .value')).to_have_text("189.230000")
    assert await open_streams(gateway.url) == 1

    await second.close()
    await third.close()
    await publish(js, "AAPL", "189.240000")
    await expect(first.locator('tr[data-symbol="AAPL"] .value')).to_have_text("189.240000")
    await eventually(
        lambda: streams_opened(caplog)[-1] == ("AAPL",),
        within=5,
        what="a stream of the symbols of the tab left",
    )
    await eventually(lambda: streams_are(gateway, 1), within=5, what="and only that one")
    assert errors.messages == []


async def test_without_shared_worker_each_tab_streams_on_its_own(
    gateway: RunningGateway, js: JetStreamContext, context: BrowserContext
) -> None:
    await context.add_init_script("delete window.SharedWorker;")
    first = await open_page(context, f"{gateway.url}/?symbols=AAPL")
    second = await open_page(context, f"{gateway.url}/?symbols=AAPL")
    assert await first.evaluate("window.__subscription.shared") is False
    await expect(first.locator("#transport")).to_have_text("this tab's own connection")
    await eventually(lambda: streams_are(gateway, 2), within=5, what="a stream per tab")

    await publish(js, "AAPL", "189.230000")
    for page in (first, second):
        await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("189.230000")

    await second.close()
    await eventually(lambda: streams_are(gateway, 1), within=5, what="the closed tab's stream gone")
