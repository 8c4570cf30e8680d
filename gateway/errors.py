"""Gateway errors, each answered as RFC 9457 problem details (gateway.http.problems).

    GatewayError (500)
    ├── BadRequestError (400)            a malformed query: symbol, id, too many symbols
    ├── UnauthorizedError (401)          no token, or one that does not verify
    ├── ForbiddenError (403)             a symbol the token does not grant
    ├── ForeignOriginError (403)         a browser request from a site not allowed
    ├── TooManyStreamsError (429)        the token's user holds its limit of streams
    └── UnavailableError (503)           try again later (Retry-After)
        ├── AtCapacityError              this process holds --max-connections streams
        ├── NatsUnavailableError         NATS is not connected, or the stream is missing
        └── OverloadedError              more catch-up consumers asked for than --catch-up-rate

After a stream has started, an error can only end it: `StreamEndedError` says why.
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    kind: ClassVar[str] = "internal"  # the label of gateway_errors_total


class BadRequestError(GatewayError):
    status = 400
    title = "Bad request"
    kind = "bad_request"


class UnauthorizedError(GatewayError):
    status = 401
    title = "Unauthorized"
    kind = "unauthorized"

    def __init__(self, detail: str, *, invalid_token: bool = False) -> None:
        super().__init__(detail)
        # RFC 6750: a request without a token gets the challenge alone; one with a bad
        # token also learns that the token is the problem.
        self.invalid_token = invalid_token

    def challenge(self) -> str:
        if not self.invalid_token:
            return 'Bearer realm="prices"'
        # A header value: printable ASCII only, and nothing that ends the quoted string.
        description = "".join(c for c in str(self) if " " <= c <= "~" and c not in '"\\')
        return f'Bearer realm="prices", error="invalid_token", error_description="{description}"'


class ForbiddenError(GatewayError):
    status = 403
    title = "Forbidden"
    kind = "forbidden"

    def __init__(self, detail: str, symbols: list[str]) -> None:
        super().__init__(detail)
        self.symbols = symbols  # the refused symbols, for clients that drop them and retry


class ForeignOriginError(GatewayError):
    status = 403
    title = "Forbidden"
    kind = "forbidden"


class TooManyStreamsError(GatewayError):
    status = 429
    title = "Too many streams"
    kind = "too_many_streams"


class UnavailableError(GatewayError):
    status = 503
    title = "Service unavailable"
    kind = "nats_unavailable"


class AtCapacityError(UnavailableError):
    title = "At connection limit"
    kind = "at_capacity"


class NatsUnavailableError(UnavailableError):
    title = "Price feed unavailable"


class OverloadedError(UnavailableError):
    title = "Too many catch-ups at once"
    kind = "overloaded"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after  # seconds, jittered: the shed do not return at once


class StreamEndedError(Exception):
    """The client's feed ended (consumer gone, NATS lost); the client resumes by its last id."""
