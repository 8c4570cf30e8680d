"""Gateway errors, each answered as RFC 9457 problem details.

    GatewayError (500)
    ├── BadRequestError (400)            a malformed query: symbol, id, too many symbols
    └── UnavailableError (503)           try again later (Retry-After)
        ├── AtCapacityError              this process holds --max-connections streams
        └── NatsUnavailableError         NATS is not connected, or the stream is missing

After a stream has started, an error can only end it: `StreamEndedError` says why.
"""

from __future__ import annotations

from typing import ClassVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 2


class GatewayError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    kind: ClassVar[str] = "internal"  # the label of gateway_errors_total


class BadRequestError(GatewayError):
    status = 400
    title = "Bad request"
    kind = "bad_request"


class UnavailableError(GatewayError):
    status = 503
    title = "Service unavailable"
    kind = "nats_unavailable"


class AtCapacityError(UnavailableError):
    title = "At connection limit"
    kind = "at_capacity"


class NatsUnavailableError(UnavailableError):
    title = "Price feed unavailable"


class StreamEndedError(Exception):
    """The client's feed ended (consumer gone, NATS lost); the client resumes by its last id."""


def problem(status: int, title: str, detail: str, kind: str) -> Response:
    body = {"type": f"/problems/{kind}", "title": title, "status": status, "detail": detail}
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse(body, status, headers, media_type=PROBLEM_JSON)


def problem_for(exc: GatewayError) -> Response:
    return problem(exc.status, exc.title, str(exc), type(exc).__name__)


def internal_problem() -> Response:
    return problem(
        500, "Internal error", "the gateway failed to answer; see its log", "InternalError"
    )


async def http_problem(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as problem details too."""
    assert isinstance(exc, HTTPException)
    detail = f"{request.method} {request.url.path}: {exc.detail}"
    return problem(exc.status_code, exc.detail, detail, f"http-{exc.status_code}")
