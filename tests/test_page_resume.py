"""The page across faults: a gateway killed and restarted on the same port, and positions
the gateway can no longer resume (a purged or a recreated stream)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import JetStreamContext
from playwright.async_api import Browser, Page, expect

from contracts.stream import StreamSettings, ensure_stream
from tests.browser import launch_browser, screenshot
from tests.conftest import StartGateway
from tests.processes import GatewayProcess
from tests.servers import NatsServer, eventually, free_port
from tests.ticks import event_id, publish


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_browser() as launched:
        yield launched


def gateway_on_port(nats_url: str, port: int) -> GatewayProcess:
    """A gateway process on `port`, so that a restarted one is found at the same URL."""
    # A short retry: the page's backoff starts from the gateway's `retry:` advice.
    args = ["--retry", "0.2", "--heartbeat", "1", "--inactive-threshold", "5"]
    process = GatewayProcess(nats_url, *args)
    process.port = port
    process.url = f"http://127.0.0.1:{port}"
    process.args = ["--port", str(port), *args]
    return process


async def shown_ids(page: Page) -> list[str]:
    ids: list[str] = await page.evaluate("window.__ticks.map((tick) => tick.id)")
    return ids


async def test_killed_gateway_reconnects_and_no_tick_is_lost_or_doubled(
    nats_url: str, js: JetStreamContext, browser: Browser
) -> None:
    port = free_port()
    first = gateway_on_port(nats_url, port)
    second = gateway_on_port(nats_url, port)
    try:
        await first.start()
        page = await browser.new_page()
        await page.goto(f"{first.url}/?symbols=AAPL,MSFT")
        connection = page.locator("#connection")
        await expect(connection).to_have_attribute("data-state", "live")

        sequences = [await publish(js, "AAPL", "101.000000"), await publish(js, "MSFT", "201.5")]
        expected = [await event_id(js, s) for s in sequences]
        await eventually(
            lambda: _shows(page, expected), within=5, what="ticks before the kill shown"
        )

        assert first.process is not None
        first.process.kill()  # SIGKILL: no clean end, the connection just breaks
        await first.process.wait()
        await expect(connection).to_have_attribute("data-state", "reconnecting")
        await expect(connection.locator(".last-id")).to_have_text(expected[-1])
        await screenshot(page, "page-reconnecting")

        for i in range(5):  # published while no gateway runs
            sequences.append(await publish(js, "AAPL", f"102.{i}00000"))
            await publish(js, "GOOG", "150")  # not chosen: never shown
            sequences.append(await publish(js, "MSFT", f"202.{i}"))

        await second.start()
        await expect(connection).to_have_attribute("data-state", "live", timeout=15_000)
        sequences.append(await publish(js, "AAPL", "103.000000"))
        expected = [await event_id(js, s) for s in sequences]
        await eventually(lambda: _shows(page, expected), within=5, what="every tick once, in order")
        await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("103.000000")
        states: list[str] = await page.evaluate("window.__states")
        after_kill = states[states.index("reconnecting") :]
        assert "live" in after_kill
    finally:
        await first.stop()
        await second.stop()


async def _shows(page: Page, expected: list[str]) -> bool:
    shown = await shown_ids(page)
    assert len(shown) <= len(expected), f"more ticks than published: {shown}"
    return shown == expected


async def test_purged_position_shows_a_reset_with_the_gateways_reason(
    start_gateway: StartGateway, js: JetStreamContext, browser: Browser
) -> None:
    gateway = await start_gateway(retry=0.2)
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/?symbols=AAPL")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await publish(js, "AAPL", "100.000000")
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("100.000000")
    await publish(js, "ZZZ", "1.0")  # stored after the page's position, then purged
    await js.purge_stream("PRICES")

    # A new symbol set opens a new stream from the page's last id: no longer stored.
    await page.locator("#symbol-input").fill("MSFT")
    await page.locator("#symbol-input").press("Enter")
    notice = page.locator("#reset-notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_have_attribute("data-reason", "position-lost")
    await expect(notice).to_contain_text("position-lost")
    await screenshot(page, "page-reset")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert "reset" in await page.evaluate("window.__states")

    await publish(js, "MSFT", "410.000000")
    await expect(page.locator('tr[data-symbol="MSFT"] .value')).to_have_text("410.000000")
    await page.get_by_role("button", name="Dismiss").click()
    await expect(notice).to_be_hidden()


async def test_recreated_stream_shows_a_reset_after_the_page_reconnects_by_itself(
    start_gateway: StartGateway, js: JetStreamContext, browser: Browser
) -> None:
    gateway = await start_gateway(retry=0.2)
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/?symbols=AAPL")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await publish(js, "AAPL", "100.000000")
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("100.000000")

    # The page's consumer goes with the stream; the gateway ends the stream, the page
    # comes back with its last id, which belongs to the old stream.
    await js.delete_stream("PRICES")
    await ensure_stream(js, StreamSettings())
    await publish(js, "AAPL", "99.500000")
    notice = page.locator("#reset-notice")
    await expect(notice).to_have_attribute("data-reason", "stream-recreated", timeout=10_000)
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("99.500000")


async def test_refused_with_503_the_page_retries_until_the_gateway_can_serve(
    nats_server: NatsServer, start_gateway: StartGateway, browser: Browser
) -> None:
    # EventSource gives up for good on a 503; the client retries after its Retry-After.
    await nats_server.stop()
    gateway = await start_gateway(wait_connected=False, retry=0.2)
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/?symbols=AAPL")
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-state", "reconnecting")
    await expect(connection.locator("#state-detail")).to_contain_text("not connected to NATS")

    await nats_server.start()
    await expect(connection).to_have_attribute("data-state", "live", timeout=15_000)
    nc = await nats.connect(nats_server.url)
    try:
        await publish(nc.jetstream(), "AAPL", "189.230000")
    finally:
        await nc.close()
    await expect(page.locator('tr[data-symbol="AAPL"] .value')).to_have_text("189.230000")
