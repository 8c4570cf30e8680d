"""Headless Chromium for the page tests: Debian's `chromium` driven by Python playwright.

Browsers are never downloaded at test time: CI installs the distribution's package
(`apt-get install -y chromium`), and `CHROMIUM` may point at another binary.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    async_playwright,
    expect,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# The machine may have no network: without these, Chromium spends its start-up (and
# sometimes its stability) on updaters, sync and QUIC probes.
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_OPEN_STREAMS = re.compile(r"^gateway_open_streams (\S+)$", re.MULTILINE)


def chromium_path() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not found:
        raise RuntimeError(
            "no chromium: `make install` installs Debian's package when it may use apt-get "
            "(root or sudo without a password); otherwise run: sudo apt-get install -y "
            "chromium (or set CHROMIUM=/path/to/chromium)"
        )
    return found


@asynccontextmanager
async def launch_browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(
    opener: Browser | BrowserContext, url: str, errors: PageErrors | None = None
) -> Page:
    """A new tab at `url`, once its connection is live."""
    page = await opener.new_page()
    if errors is not None:
        errors.watch(page)
    await page.goto(url)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


@dataclass
class PageErrors:
    """Console errors and uncaught exceptions of a page, collected as they happen."""

    messages: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.messages.append(f"pageerror: {error}"))
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.messages.append(f"console: {message.text} at {message.location}")


async def screenshot(page: Page, name: str, *, also: Path | None = None) -> Path:
    """Save a full-page screenshot as test-artifacts/<name>.png (and at `also`)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    image = await page.screenshot(path=path, full_page=True)
    if also is not None:
        also.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(also.write_bytes, image)
    return path


async def open_streams(base_url: str) -> float:
    """The gateway's `gateway_open_streams` gauge."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{base_url}/metrics")).text
    match = _OPEN_STREAMS.search(text)
    assert match is not None, "gateway_open_streams missing from /metrics"
    return float(match.group(1))


def streams_opened(caplog: pytest.LogCaptureFixture) -> list[object]:
    """The symbols of each stream the gateway opened ("*": every symbol), from its
    "stream opened" log lines; needs caplog.set_level(logging.INFO, logger="gateway")."""
    return [
        record.symbols
        for record in caplog.records
        if record.getMessage() == "stream opened" and hasattr(record, "symbols")
    ]
