"""uvicorn's httptools protocol, handing GET /stocks connections over to the stream.

Once the request line and headers of a GET /stocks are parsed, the transport is given to
an `SseConnection` and the request to the gateway's `serve` (app.py): the stream runs
in one task and writes to the socket itself. Every other request, and a GET /stocks that
cannot be handed over (pipelined behind another request, a protocol upgrade), takes
uvicorn's ASGI way as usual, where the same stream is served through `send`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http.connection import SseConnection

STOCKS_PATH = b"/stocks"
TASK_NAME = "stream"  # every handed-over stream's task
DONE_CONTEXT = contextvars.Context()  # its done callback's

# The gateway's side: the coroutine answering one handed-over request (a scope as ASGI
# has it). Made at once, so that no frame of this module outlives the hand-over.
Serve = Callable[[SseConnection, dict[str, Any]], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Handover:
    """Where a handed-over request goes, and how its scope is rewritten first."""

    serve: Serve
    # uvicorn applies X-Forwarded-For of trusted proxies in a middleware around the app;
    # a handed-over request gets the same rewriting.
    proxy: ProxyHeadersMiddleware | None


class StreamHandover(HttpToolsProtocol):
    """HttpToolsProtocol handing a GET /stocks over (see `stream_protocol`)."""

    handover: ClassVar[Handover]
    # Set only on the instance that hands its connection over (and is then dropped):
    # no per-connection attribute for the others.
    _handed_over = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._handed_over:
            # The parser and this protocol refer to each other: let both go now rather
            # than at the next collection. The connection has a new protocol.
            self.parser = None  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        if self._handed_over:
            return  # a request pipelined behind the stream: never answered
        path = self._stream_path()
        if path is None:
            super().on_headers_complete()
            return
        self._handed_over = True
        http_version = self.parser.get_http_version()
        scope: dict[str, Any] = {
            **self.scope,
            "method": "GET",
            "http_version": http_version,
            "path": path.path.decode("ascii"),
            "raw_path": path.path,
            "query_string": path.query or b"",
        }
        if (proxy := self.handover.proxy) is not None:
            _run_to_end(proxy(scope, _nothing, _nothing))  # type: ignore[arg-type]
        connection = SseConnection(self.transport, self.server_state, chunked=http_version == "1.1")
        self.connections.discard(self)
        self.transport.set_protocol(connection)
        # Neither this protocol nor its scope is referred to by the task: both go now.
        # Named: an unnamed task keeps a name of its own, "Task-<n>" (58 B while it lasts).
        task = self.loop.create_task(self.handover.serve(connection, scope), name=TASK_NAME)
        # One done callback (it also drops the task from self.tasks): a task keeps a
        # second one, and its context, in a list of their own. An empty context, shared:
        # `served` reads no context variable, and a copy of the current one is 64 B.
        task.add_done_callback(connection.served, context=DONE_CONTEXT)
        self.tasks.add(task)

    def _stream_path(self) -> Any:
        """The parsed URL of a GET /stocks this connection can hand over, else None."""
        parser = self.parser
        if parser.get_method() != b"GET" or parser.should_upgrade():
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # pipelined: the answer before it is still being written
        url = httptools.parse_url(self.url)
        return url if url.path == STOCKS_PATH else None

    # What the parser still finds after the handed-over request is not answered: the
    # connection belongs to the stream now.

    def send_400_response(self, msg: str) -> None:
        if not self._handed_over:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        if not self._handed_over:
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._handed_over:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._handed_over:  # the handed-over request's headers stay its own
            super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        if not self._handed_over:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._handed_over:
            super().on_message_complete()


def stream_protocol(serve: Serve, config: Config) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol handing GET /stocks to `serve`."""
    proxy = (
        ProxyHeadersMiddleware(_nothing, config.forwarded_allow_ips)
        if config.proxy_headers
        else None
    )
    namespace = {"handover": Handover(serve, proxy)}
    return type("StreamHandoverProtocol", (StreamHandover,), namespace)


async def _nothing(*args: object) -> None:
    """The app behind the proxy-headers middleware: the scope is all that is wanted."""


def _run_to_end(step: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends (the proxy-headers middleware in front of
    `_nothing`) to its end, here and now."""
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    raise RuntimeError("the proxy-headers middleware suspended")
