"""GET and HEAD /stocks: who asks, for what, and then the stream (or a problem)."""

from __future__ import annotations

import dataclasses
from collections.abc import Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth.access import allowed_symbols
from gateway.auth.grants import Grant
from gateway.auth.tokens import Authenticator
from gateway.broker.symbols import StoredSymbols
from gateway.errors import GatewayError
from gateway.http.connection import SseConnection
from gateway.http.encoding import negotiate
from gateway.http.problems import ErrorAnswers
from gateway.http.query import StreamQuery, parse_query, refuse_token_parameters
from gateway.http.security import CorsPolicy, security_headers
from gateway.http.sink import AsgiSink, Headers, Sink
from gateway.hub import Hub
from gateway.stream import PriceStream, stream_head


class StocksEndpoint:
    """/stocks for one app. A GET comes by one of two ways: handed over with its
    connection by uvicorn's protocol (`serve_connection`: most of them), or through ASGI
    (`asgi`: one pipelined behind another request); a HEAD takes the Starlette route."""

    def __init__(
        self,
        hub: Hub,
        authenticator: Authenticator | None,
        stored: StoredSymbols,
        errors: ErrorAnswers,
    ) -> None:
        self.hub = hub
        self.app: ASGIApp | None = None  # the app handed-over requests belong to
        self._settings = hub.settings
        self._authenticator = authenticator
        self._stored = stored
        self._errors = errors
        self._security = security_headers(hub.settings)
        self._cors = CorsPolicy(hub.settings)

    def _checked(self, request: Request) -> tuple[StreamQuery, Grant | None]:
        """The query of a /stocks request, and the grant of its token (with
        authentication on). No await: without authentication, all the checks there are."""
        # Which site first, then a token in the URL (refused whatever it is worth); then
        # who, then what: an unauthenticated caller learns nothing about the query.
        self._cors.check_origin(header(request, "origin"), header(request, "host"))
        refuse_token_parameters(request.query_params)
        grant = None
        if self._authenticator is not None:
            grant = self._authenticator.authenticate(request.headers)
        query = parse_query(request.query_params, request.headers, self._settings.max_symbols)
        return query, grant

    async def _stream_for(self, request: Request, headers: Headers = ()) -> PriceStream:
        """The stream of a /stocks request; `headers` go on its answers (the security and
        CORS headers, which the middleware adds on the Starlette route)."""
        query, grant = self._checked(request)
        if grant is not None:
            symbols = await allowed_symbols(query.symbols, grant, self._stored)
            delivery = query.delivery.at_least(grant.floor)
            query = dataclasses.replace(query, symbols=symbols, delivery=delivery)
        return self._stream(request, query, grant, headers)

    def _stream(
        self, request: Request, query: StreamQuery, grant: Grant | None, headers: Headers
    ) -> PriceStream:
        address = request.client.host if request.client else "unknown"
        accepted = ",".join(request.headers.getlist("accept-encoding"))
        coding = negotiate(accepted, enabled=self._settings.compression)
        return PriceStream(self.hub, query, address, grant, headers, coding)

    async def head(self, request: Request) -> Response:
        """HEAD /stocks: validated like a GET, answered with the stream's headers alone;
        no consumer is created for a request that reads no events."""
        stream = await self._stream_for(request)
        return stream_head(stream.query.delivery, stream.coding)

    async def _serve(self, request: Request, sink: Sink) -> None:
        """GET /stocks without the middleware stack: the answers get the same headers,
        errors the same problem documents, and each write of the endless stream goes
        straight to the connection (or the server) instead of through one send wrapper
        per middleware."""
        headers = self._headers(request)
        try:
            stream = await self._stream_for(request, headers)
        except Exception as exc:
            await self._refuse(request, exc, headers, sink)
            return
        # This frame lasts as long as the stream; the parsed request is no longer needed.
        del request, headers  # the stream has its own reference to the headers
        await stream.run(sink)

    def serve_connection(
        self, connection: SseConnection, scope: dict[str, Any]
    ) -> Coroutine[Any, Any, None]:
        """A GET /stocks handed over by the connection's protocol (gateway.http.handover);
        no frame keeps the scope once the stream is open."""
        scope["app"] = self.app
        request = Request(scope)
        if self._authenticator is not None:
            return self._serve(request, connection)  # the token's symbols may take an await
        # No await to check it: checked here, and the task runs the stream itself, with no
        # frame of the endpoint's under it for the life of the stream (~0.3 KB).
        headers = self._headers(request)
        try:
            query, _ = self._checked(request)
            stream = self._stream(request, query, None, headers)
        except Exception as exc:
            return self._refuse(request, exc, headers, connection)
        return stream.run(connection)

    def _headers(self, request: Request) -> Headers:
        """The security and CORS headers of every answer of a GET taken from uvicorn's way
        (the middleware adds them on the Starlette route)."""
        return [*self._security, *self._cors.for_origin(header(request, "origin"))]

    async def _refuse(self, request: Request, exc: Exception, headers: Headers, sink: Sink) -> None:
        """A problem document instead of the stream."""
        if isinstance(exc, GatewayError):
            response = await self._errors.gateway_error(request, exc)
        else:
            response = await self._errors.unexpected(request, exc)
        response.raw_headers.extend(headers)
        await sink.answer(response)

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A GET /stocks that took the ASGI way (pipelined behind another request)."""
        await self._serve(Request(scope, receive), AsgiSink(scope, receive, send))


def header(request: Request, name: str) -> str | None:
    """`request.headers.get(name)` (the first), without the KeyError Starlette's get()
    raises and catches for a name the request does not have."""
    values = request.headers.getlist(name)
    return values[0] if values else None
