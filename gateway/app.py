"""The Starlette application: routes, error handlers, and the lifespan that owns the hub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway.errors import GatewayError, http_problem, internal_problem, problem_for
from gateway.hub import Hub
from gateway.metrics import INTERNAL
from gateway.page import page_routes
from gateway.query import parse_query
from gateway.settings import Settings
from gateway.streaming import PriceStreamResponse

logger = logging.getLogger(__name__)

READY_CHECK_TIMEOUT = 2.0


def build_app(settings: Settings, hub: Hub | None = None) -> Starlette:
    """The gateway as an ASGI app. Pass `hub` to keep a handle on it (for draining)."""
    hub = hub or Hub(settings)
    metrics = hub.metrics

    async def stocks(request: Request) -> ASGIApp:
        query = parse_query(request.query_params, request.headers, settings.max_symbols)
        return PriceStreamResponse(hub, query)

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
        async with hub:
            yield

    return Starlette(
        routes=[
            Route("/stocks", stocks),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            *page_routes(hub),
        ],
        exception_handlers={
            GatewayError: on_gateway_error,
            HTTPException: http_problem,
            Exception: on_unexpected_error,
        },
        lifespan=lifespan,
    )


async def _not_ready(hub: Hub) -> str | None:
    if hub.draining.is_set():
        return "draining"
    if hub.js is None or hub.nc is None or not hub.nc.is_connected:
        return "not connected to NATS"
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT):
            await hub.js.stream_info(hub.stream.name)
    except NotFoundError:
        return f"stream {hub.stream.name} not found"
    except (NatsError, TimeoutError) as exc:
        return f"NATS did not answer: {exc!r}"
    if hub.settings.shared_feed and (hub.live is None or not hub.live.running.is_set()):
        return "the live feed is not following the stream yet"
    return None
