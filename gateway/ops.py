"""The operators' endpoints: /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import math
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import NatsUnavailableError
from gateway.hub import Hub

READY_CHECK_TIMEOUT = 2.0
# A readiness answer is reused for this long: probes (and anyone who can reach /readyz)
# then cost at most one STREAM.INFO per second, however often they come.
READY_CACHE_SECONDS = 1.0


def ops_routes(hub: Hub) -> list[Route]:
    readiness = Readiness(hub)

    async def healthz(request: Request) -> Response:
        # Answered by the event loop itself: liveness means the loop is not stuck.
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if problem := await readiness.problem():
            return JSONResponse({"status": "unavailable", "detail": problem}, 503)
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        return Response(hub.metrics.render(), media_type=hub.metrics.content_type)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


class Readiness:
    """Why the gateway cannot serve streams now (None when it can). The stream check is
    a JetStream API call, made at most once per READY_CACHE_SECONDS; draining and the
    live feed's state are the process's own, read on every probe."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._lock = asyncio.Lock()  # concurrent probes wait for one check
        self._checked = -math.inf
        self._stream_problem: str | None = None

    async def problem(self) -> str | None:
        hub = self._hub
        if hub.draining.is_set():
            return "draining"
        async with self._lock:
            started = time.monotonic()
            if started - self._checked >= READY_CACHE_SECONDS:
                self._stream_problem = await self._check_stream()
                self._checked = started  # the answer's age counts from before the call
        if self._stream_problem is not None:
            return self._stream_problem
        if hub.settings.shared_feed and not hub.feeds.following:
            return "the live feed is not following the stream yet"
        return None

    async def _check_stream(self) -> str | None:
        try:
            await self._hub.stream_info(timeout=READY_CHECK_TIMEOUT)
        except NatsUnavailableError as exc:
            return str(exc)
        return None
