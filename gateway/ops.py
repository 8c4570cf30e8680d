"""The operators' endpoints: /healthz, /readyz, /metrics."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import NatsUnavailableError
from gateway.hub import Hub

READY_CHECK_TIMEOUT = 2.0


def ops_routes(hub: Hub) -> list[Route]:
    async def healthz(request: Request) -> Response:
        # Answered by the event loop itself: liveness means the loop is not stuck.
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if problem := await not_ready(hub):
            return JSONResponse({"status": "unavailable", "detail": problem}, 503)
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        return Response(hub.metrics.render(), media_type=hub.metrics.content_type)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


async def not_ready(hub: Hub) -> str | None:
    """Why the gateway cannot serve streams now; None when it can."""
    if hub.draining.is_set():
        return "draining"
    try:
        await hub.stream_info(timeout=READY_CHECK_TIMEOUT)
    except NatsUnavailableError as exc:
        return str(exc)
    if hub.settings.shared_feed and not hub.feeds.following:
        return "the live feed is not following the stream yet"
    return None
