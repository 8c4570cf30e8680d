"""The browser side of the gateway: the live price page, its static files, and /symbols.

The page is plain files (HTML, CSS, ES modules) served as they are: no build step and
nothing fetched from elsewhere, so it works offline and behind a CSP without inline script.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gateway.broker.symbols import StoredSymbols
from gateway.http.query import refuse_token_parameters
from gateway.http.security import CorsPolicy
from gateway.settings import Settings

STATIC_DIR = Path(__file__).parent.parent / "static"
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


def page_routes(stored: StoredSymbols, settings: Settings) -> list[BaseRoute]:
    """`GET /` (the page), `GET /symbols` (a sorted JSON list), `GET /page-config` (what
    the page needs to know about authentication), and `/static/*`.

    `/symbols` lists `stored`, and raises NatsUnavailableError (503) while NATS or the
    stream is unavailable.
    """
    # Public, like the page itself: it tells a signed-out page where to renew its cookie.
    config = {"auth": settings.auth_enabled, "renewUrl": settings.auth_renew_url or None}
    cors = CorsPolicy(settings)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=REVALIDATE)

    async def symbols(request: Request) -> Response:
        # With authentication on, a user sees the symbols their token allows (app.py).
        cors.check_origin(request.headers.get("origin"), request.headers.get("host"))
        refuse_token_parameters(request.query_params)
        grant = None
        if (authenticator := request.app.state.authenticator) is not None:
            grant = authenticator.authenticate(request.headers)
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
