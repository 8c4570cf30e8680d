"""Problem details (RFC 9457): how a GatewayError, or Starlette's own 404 and 405, is
answered. The body names the offending value; never a stack trace."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import ForbiddenError, GatewayError, OverloadedError, UnauthorizedError
from gateway.metrics import INTERNAL, Metrics

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 2


def problem(
    status: int,
    title: str,
    detail: str,
    kind: str,
    headers: dict[str, str] | None = None,
    retry_after: int = RETRY_AFTER_SECONDS,
    **extensions: object,
) -> Response:
    body = {"type": f"/problems/{kind}", "title": title, "status": status, "detail": detail}
    body.update(extensions)  # RFC 9457 extension members
    if status in (429, 503):  # try again later: when, roughly
        headers = {"Retry-After": str(retry_after)}
    return JSONResponse(body, status, headers, media_type=PROBLEM_JSON)


def problem_for(exc: GatewayError) -> Response:
    kind = type(exc).__name__
    if isinstance(exc, UnauthorizedError):
        return problem(exc.status, exc.title, str(exc), kind, {"WWW-Authenticate": exc.challenge()})
    if isinstance(exc, ForbiddenError):
        return problem(exc.status, exc.title, str(exc), kind, symbols=exc.symbols)
    if isinstance(exc, OverloadedError):
        return problem(exc.status, exc.title, str(exc), kind, retry_after=exc.retry_after)
    return problem(exc.status, exc.title, str(exc), kind)


def internal_problem() -> Response:
    return problem(
        500, "Internal error", "the gateway failed to answer; see its log", "InternalError"
    )


async def http_problem(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as problem details too."""
    assert isinstance(exc, HTTPException)
    detail = f"{request.method} {request.url.path}: {exc.detail}"
    return problem(exc.status_code, exc.detail, detail, f"http-{exc.status_code}")


class ErrorAnswers:
    """The app's exception handlers: each error counted by kind, then answered."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def gateway_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        self._metrics.errors.labels(exc.kind).inc()
        return problem_for(exc)

    async def unexpected(self, request: Request, exc: Exception) -> Response:
        self._metrics.errors.labels(INTERNAL).inc()
        # exc_info from `exc`: a stream's checks may answer after their `except` has ended.
        logger.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
        return internal_problem()
