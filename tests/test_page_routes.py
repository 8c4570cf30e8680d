"""The page's HTTP side: `/`, its static files (small, local, no inline script), and
`/symbols` from the stream's subject state."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
from nats.js import JetStreamContext

from gateway.http.page import STATIC_DIR
from tests.conftest import RunningGateway, StartGateway
from tests.servers import eventually, free_port
from tests.ticks import publish

MAX_STATIC_BYTES = 80 * 1024  # the whole page, uncompressed and commented
# Served with the page's files for the client package, never loaded by the page itself
# (tests/test_client_typescript.py): not part of its weight.
PACKAGE_ONLY = {"price-client.d.ts", "package.json"}
_EXTERNAL = re.compile(r"https?://(?!www\.w3\.org/)")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


async def get(gateway: RunningGateway, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        return await client.get(path)


async def test_page_is_html_with_module_scripts_only(gateway: RunningGateway) -> None:
    response = await get(gateway, "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    parser = _Tags()
    parser.feed(response.text)
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts == [{"type": "module", "src": "static/app.js"}]
    # Ready for a CSP without inline script or style: no handlers, no style attributes.
    for tag, attrs in parser.tags:
        assert not [name for name in attrs if name.startswith("on") or name == "style"], tag
    assert "<style" not in response.text


async def test_static_files_are_served_local_small_and_revalidated(
    gateway: RunningGateway,
) -> None:
    files = sorted(path.name for path in STATIC_DIR.iterdir())
    assert {"index.html", "app.js", "price-client.js", "price-worker.js", "style.css"} <= set(files)
    total = 0
    for name in files:
        response = await get(gateway, f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["cache-control"] == "no-cache", name
        assert "etag" in response.headers, name
        if name.endswith(".js"):
            assert "javascript" in response.headers["content-type"], name
        assert not _EXTERNAL.search(response.text), f"{name} refers to another site"
        if name not in PACKAGE_ONLY:
            total += len(response.content)
    assert total < MAX_STATIC_BYTES


async def test_symbols_lists_stored_symbols_sorted(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    assert (await get(gateway, "/symbols")).json() == []
    for symbol in ("MSFT", "BRK.B", "AAPL", "MSFT"):
        await publish(js, symbol, "10")
    # Subjects no symbol maps to: never offered.
    await js.publish("prices.THIS_IS_FAR_TOO_LONG_A_SYMBOL", b"{}")
    await js.publish("prices.A.B", b"{}")

    async def listed() -> bool:
        response = await get(gateway, "/symbols")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        return bool(response.json() == ["AAPL", "BRK.B", "MSFT"])

    await eventually(listed, within=5, what="/symbols lists the published symbols")


async def test_symbols_is_a_503_problem_without_nats(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(wait_connected=False, nats_url=f"nats://127.0.0.1:{free_port()}")
    response = await get(gateway, "/symbols")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "2"
    problem = response.json()
    assert problem["status"] == 503
    assert problem["detail"] == "not connected to NATS"


async def test_unknown_static_file_is_a_404_problem(gateway: RunningGateway) -> None:
    response = await get(gateway, "/static/nope.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
