"""The browser side of the gateway: the live price page, its static files, and /symbols.

The page is plain files (HTML, CSS, ES modules) served as they are: no build step and
nothing fetched from elsewhere, so it works offline and behind a CSP without inline script.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from contracts.errors import InvalidSymbolError
from contracts.symbols import all_subjects, symbol_for
from gateway.errors import NatsUnavailableError
from gateway.hub import Hub

STATIC_DIR = Path(__file__).parent.parent / "static"
# Every tab asks on load and when the picker opens; one stream-info call per second is
# plenty for a list that changes when a new symbol is first published.
SYMBOLS_TTL = 1.0
# Files have stable names (no build step adds hashes), so browsers must revalidate them
# (a cheap 304 by ETag) or they would run an old client after an upgrade.
REVALIDATE = {"Cache-Control": "no-cache"}


class RevalidatedStaticFiles(StaticFiles):
    """StaticFiles whose answers browsers revalidate before reuse."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(REVALIDATE)
        return response


class StoredSymbols:
    """The symbols that have a stored price, from the stream's subject state, kept briefly."""

    def __init__(self, hub: Hub, ttl: float = SYMBOLS_TTL) -> None:
        self.hub = hub
        self.ttl = ttl
        self._symbols: list[str] = []
        self._fetched_at = -ttl
        # Concurrent requests share one stream-info call instead of each making their own.
        self._lock = asyncio.Lock()

    async def get(self) -> list[str]:
        async with self._lock:
            if time.monotonic() - self._fetched_at >= self.ttl:
                self._symbols = await self._fetch()
                self._fetched_at = time.monotonic()
            return self._symbols

    async def _fetch(self) -> list[str]:
        hub = self.hub
        if hub.js is None or hub.nc is None or not hub.nc.is_connected:
            raise NatsUnavailableError("not connected to NATS")
        prefix = hub.stream.subject_prefix
        try:
            info = await hub.js.stream_info(hub.stream.name, subjects_filter=all_subjects(prefix))
        except NotFoundError:
            raise NatsUnavailableError(f"stream {hub.stream.name} does not exist") from None
        except (NatsError, TimeoutError) as exc:
            raise NatsUnavailableError(f"NATS did not answer: {exc!r}") from None
        symbols: set[str] = set()
        for subject in info.state.subjects or {}:
            try:
                symbols.add(symbol_for(subject, prefix))
            except InvalidSymbolError:
                continue  # published by hand outside the symbol grammar: not subscribable
        return sorted(symbols)


def page_routes(hub: Hub) -> list[BaseRoute]:
    """`GET /` (the page), `GET /symbols` (a sorted JSON list), `GET /page-config` (what
    the page needs to know about authentication), and `/static/*`.

    `/symbols` raises NatsUnavailableError (503) while NATS or the stream is unavailable.
    """
    stored = StoredSymbols(hub)
    # Public, like the page itself: it tells a signed-out page where to renew its cookie.
    config = {"auth": hub.settings.auth_enabled, "renewUrl": hub.settings.auth_renew_url or None}

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=REVALIDATE)

    async def symbols(request: Request) -> Response:
        # With authentication on, a user sees the symbols their token allows (app.py).
        grant = None
        if (authenticator := request.app.state.authenticator) is not None:
            grant = authenticator.authenticate(request.headers, request.cookies)
        listed = await stored.get()
        if grant is not None:
            listed = [symbol for symbol in listed if grant.allows(symbol)]
        return JSONResponse(listed, headers={"Cache-Control": "private, max-age=1"})

    async def page_config(request: Request) -> Response:
        return JSONResponse(config, headers=REVALIDATE)

    return [
        Route("/", index),
        Route("/symbols", symbols),
        Route("/page-config", page_config),
        Mount("/static", RevalidatedStaticFiles(directory=STATIC_DIR), name="static"),
    ]
