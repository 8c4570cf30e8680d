"""The Starlette application: routes, error handlers, and the lifespan that owns the hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth.tokens import Authenticator
from gateway.broker.symbols import StoredSymbols
from gateway.errors import GatewayError
from gateway.http.openapi import openapi_routes
from gateway.http.page import page_routes
from gateway.http.problems import ErrorAnswers, http_problem
from gateway.http.security import browser_middleware
from gateway.hub import Hub
from gateway.ops import ops_routes
from gateway.settings import Settings
from gateway.stocks import StocksEndpoint


def build_app(settings: Settings) -> GatewayApp:
    """The gateway as an ASGI app; its lifespan runs the hub (`app.hub`)."""
    hub = Hub(settings)
    authenticator = Authenticator.from_settings(settings)
    errors = ErrorAnswers(hub.metrics)
    stored = StoredSymbols(hub, hub.stream)
    stocks = StocksEndpoint(hub, authenticator, stored, errors)

    ops = ops_routes(hub)
    # With --ops-port, the ops endpoints have an app of their own, for that port only.
    ops_app = None
    if settings.ops_port:
        ops_app = Starlette(
            routes=ops,
            exception_handlers={HTTPException: http_problem},
            middleware=[Middleware(ServerErrorMiddleware, handler=errors.unexpected)],
        )
        ops = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with hub.running():  # the hub's tasks live exactly as long as the app
            yield

    app = GatewayApp(
        stocks,
        ops_app,
        routes=[
            Route("/stocks", stocks.head),  # GET, and so HEAD
            *ops,
            *page_routes(stored, settings),
            *openapi_routes(),
        ],
        exception_handlers={GatewayError: errors.gateway_error, HTTPException: http_problem},
        # Inside the browser middleware, so a 500 carries the security headers too
        # (Starlette's own handler for Exception sits outside every middleware).
        middleware=[
            *browser_middleware(settings),
            Middleware(ServerErrorMiddleware, handler=errors.unexpected),
        ],
        lifespan=lifespan,
    )
    app.state.authenticator = authenticator  # for /symbols (gateway.http.page)
    return app


class GatewayApp(Starlette):
    """Starlette, except that GET /stocks goes to the stocks endpoint directly; its other
    methods (HEAD, the CORS preflight, 405s) take the usual way.

    `stocks.serve_connection` serves the GET /stocks that uvicorn's protocol hands over
    with their connection (gateway.http.handover, set up by gateway.server): most of them.
    Requests that reach the ops port (--ops-port, gateway.server listens on it) go to
    `ops_app`, which serves /healthz, /readyz and /metrics and nothing else.
    """

    def __init__(self, stocks: StocksEndpoint, ops_app: ASGIApp | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ops_app = ops_app
        self.ops_port = stocks.hub.settings.ops_port
        # No redirects: Starlette would answer /stocks/ with a 307 to http://<Host header>/
        # stocks, a Location built from what the client sent. Unknown paths are 404s.
        self.router.redirect_slashes = False
        self.stocks = stocks
        self.hub = stocks.hub
        stocks.app = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Routed by the socket the request came in on: the local port, not the Host header.
        if self.ops_app is not None and scope["type"] == "http":
            server = scope.get("server")
            if server is not None and server[1] == self.ops_port:
                await self.ops_app(scope, receive, send)
                return
        if scope["type"] == "http" and scope["path"] == "/stocks" and scope["method"] == "GET":
            scope["app"] = self
            await self.stocks.asgi(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)
