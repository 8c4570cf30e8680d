"""Why a PriceStream stopped; everything else it retries.

    PriceClientError
    ├── RequestRejectedError    the gateway refused the request for good (400, 401, 403, 404)
    └── GaveUpError             max_attempts connections in a row failed

Transport errors, 5xx answers and streams that end are retried with back-off, resuming
after the last event id; only these two end the iteration.
"""

from __future__ import annotations

from typing import Any


class PriceClientError(Exception):
    pass


class RequestRejectedError(PriceClientError):
    """A 4xx answer: retrying the same request cannot help. `problem` is the gateway's
    RFC 9457 body (`detail` names the offending value)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")


class GaveUpError(PriceClientError):
    pass
