"""The Starlette application: routes, error handlers, and the lifespan that owns the hub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth.access import authorize
from gateway.auth.tokens import Authenticator
from gateway.errors import GatewayError, NatsUnavailableError
from gateway.http.connection import SseConnection
from gateway.http.handover import Serve
from gateway.http.openapi import openapi_routes
from gateway.http.page import StoredSymbols, page_routes
from gateway.http.problems import http_problem, internal_problem, problem_for
from gateway.http.query import parse_query
from gateway.http.security import CorsHeaders, browser_middleware, security_headers
from gateway.http.sink import AsgiSink, Headers, Sink
from gateway.hub import Hub
from gateway.metrics import INTERNAL
from gateway.settings import Settings
from gateway.stream import PriceStream, stream_head

logger = logging.getLogger(__name__)

READY_CHECK_TIMEOUT = 2.0


def build_app(settings: Settings, hub: Hub | None = None) -> GatewayApp:
    """The gateway as an ASGI app. Pass `hub` to keep a handle on it (for draining)."""
    hub = hub or Hub(settings)
    metrics = hub.metrics

    authenticator = Authenticator.from_settings(settings)
    stored = StoredSymbols(hub)

    security = security_headers(settings)
    cors = CorsHeaders(settings)

    async def stocks(request: Request, headers: Headers = ()) -> PriceStream:
        """The stream of a /stocks request; `headers` go on its answers (the security and
        CORS headers, which the middleware adds on the Starlette route)."""
        # Who first, then what: an unauthenticated caller learns nothing about the query.
        grant = None
        if authenticator is not None:
            grant = authenticator.authenticate(request.headers, request.cookies)
        query = parse_query(request.query_params, request.headers, settings.max_symbols)
        if grant is not None:
            query = await authorize(query, grant, stored)
        address = request.client.host if request.client else "unknown"
        return PriceStream(hub, query, address, grant, headers)

    async def stocks_head(request: Request) -> Response:
        """HEAD /stocks (GatewayApp sends every GET to stream_stocks): validated like a
        GET, answered with the stream's headers alone, and no consumer is created for a
        request that reads no events."""
        await stocks(request)
        return stream_head()

    async def serve_stocks(request: Request, sink: Sink) -> None:
        """GET /stocks without the middleware stack: the answers get the same headers,
        errors the same problem documents, and each write of the endless stream goes
        straight to the connection (or the server) instead of through one send wrapper
        per middleware."""
        headers = [*security, *cors.for_origin(request.headers.get("origin"))]
        try:
            stream = await stocks(request, headers)
        except GatewayError as exc:
            response = await on_gateway_error(request, exc)
        except Exception as exc:
            response = await on_unexpected_error(request, exc)
        else:
            # This frame lasts as long as the stream; the parsed request is no longer needed.
            del request
            await stream.run(sink)
            return
        response.raw_headers.extend(headers)
        await sink.answer(response)

    def serve_connection(connection: SseConnection, scope: Scope) -> Coroutine[Any, Any, None]:
        """A GET /stocks handed over by the connection's protocol (gateway.http.handover);
        no frame keeps the scope once the stream is open."""
        scope["app"] = app
        return serve_stocks(Request(scope), connection)

    async def stream_stocks(scope: Scope, receive: Receive, send: Send) -> None:
        """A GET /stocks that took the ASGI way (pipelined behind another request)."""
        await serve_stocks(Request(scope, receive), AsgiSink(scope, receive, send))

    async def healthz(request: Request) -> Response:
        # Answered by the event loop itself: liveness means the loop is not stuck.
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problem = await _not_ready(hub)
        if problem:
            return JSONResponse({"status": "unavailable", "detail": problem}, 503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        metrics.errors.labels(exc.kind).inc()
        return problem_for(exc)

    async def on_unexpected_error(request: Request, exc: Exception) -> Response:
        metrics.errors.labels(INTERNAL).inc()
        logger.exception("unhandled error", extra={"path": request.url.path})
        return internal_problem()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with hub.running():  # the hub's tasks live exactly as long as the app
            yield

    app = GatewayApp(
        stream_stocks,
        serve_connection,
        routes=[
            Route("/stocks", stocks_head),  # GET, and so HEAD
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            *page_routes(hub),
            *openapi_routes(),
        ],
        exception_handlers={GatewayError: on_gateway_error, HTTPException: http_problem},
        # Inside the browser middleware, so a 500 carries the security headers too
        # (Starlette's own handler for Exception sits outside every middleware).
        middleware=[
            *browser_middleware(settings),
            Middleware(ServerErrorMiddleware, handler=on_unexpected_error),
        ],
        lifespan=lifespan,
    )
    app.state.authenticator = authenticator  # for /symbols (gateway.http.page)
    return app


class GatewayApp(Starlette):
    """Starlette, except that GET /stocks goes to `stream_stocks` directly (see build_app);
    its other methods (HEAD, the CORS preflight, 405s) take the usual way.

    `serve_connection` serves the GET /stocks that uvicorn's protocol hands over with
    their connection (gateway.http.handover, set up by gateway.server): most of them.
    """

    def __init__(self, stream_stocks: ASGIApp, serve_connection: Serve, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stream_stocks = stream_stocks
        self.serve_connection = serve_connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/stocks" and scope["method"] == "GET":
            scope["app"] = self
            await self.stream_stocks(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


async def _not_ready(hub: Hub) -> str | None:
    if hub.draining.is_set():
        return "draining"
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT):
            await hub.stream_info()
    except NatsUnavailableError as exc:
        return str(exc)
    except TimeoutError:
        return "NATS did not answer in time"
    if hub.settings.shared_feed and (hub.live is None or not hub.live.running.is_set()):
        return "the live feed is not following the stream yet"
    return None
