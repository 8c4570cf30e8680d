"""The Starlette application: routes, error handlers, and the lifespan that owns NATS."""

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

from gateway.connection import connect, ensure_stream_until_done
from gateway.errors import (
    GatewayError,
    gateway_error_handler,
    http_error_handler,
    unexpected_error_handler,
)
from gateway.hub import Hub
from gateway.query import parse_query
from gateway.settings import Settings
from gateway.streaming import PriceStreamResponse

logger = logging.getLogger(__name__)

READY_CHECK_TIMEOUT = 2.0


def build_app(settings: Settings, hub: Hub | None = None) -> Starlette:
    """The gateway as an ASGI app. Pass `hub` to keep a handle on it (for draining)."""
    hub = hub or Hub(settings)

    async def stocks(request: Request) -> ASGIApp:
        query = parse_query(request.query_params, request.headers, settings.max_symbols)
        return PriceStreamResponse(hub, query)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problem = await _not_ready(hub)
        if problem:
            return JSONResponse({"status": "unavailable", "detail": problem}, 503)
        return JSONResponse({"status": "ready"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def establish() -> None:
            nc = await connect(settings.nats_url.split(","), f"gateway-{settings.gateway_id}")
            hub.connect(nc)
            await ensure_stream_until_done(nc, hub.stream)
            logger.info("gateway ready", extra={"gateway": settings.gateway_id})

        async with asyncio.TaskGroup() as tg:
            connecting = tg.create_task(establish())
            yield
            connecting.cancel()
        if hub.nc is not None:
            await hub.nc.drain()

    return Starlette(
        routes=[
            Route("/stocks", stocks),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        exception_handlers={
            GatewayError: gateway_error_handler,
            HTTPException: http_error_handler,
            Exception: unexpected_error_handler,
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
    return None
