"""uvicorn's httptools protocol with bounds on request headers: their bytes, the time
they take to arrive, and how many connections may be sending them at once.

httptools has no limit of its own (uvicorn's `h11_max_incomplete_event_size` applies to
h11 only), so a client could make the gateway buffer headers without end; and uvicorn
has no header timeout, so idle sockets, or a header line every few seconds, held a file
descriptor each for as long as the client liked (slowloris).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import is_ssl
from uvicorn.server import ServerState

# Seconds a connection may send nothing complete before a newcomer may take its place
# past --max-incomplete-requests (its --header-timeout still applies).
EVICTABLE_AFTER = 1.0


class HeaderLimit(HttpToolsProtocol):
    """HttpToolsProtocol answering 431 problem+json past `max_header_bytes` (set by
    `bounded_http_protocol`)."""

    max_header_bytes: ClassVar[int]
    refusal: ClassVar[bytes]  # the whole 431 answer
    header_timeout: ClassVar[float]
    max_incomplete: ClassVar[int]
    # The connections whose current request headers are incomplete, with the loop time
    # they began, oldest first; one per class, that is per listening port. One timer for
    # all of them, at the oldest's deadline: none to make and cancel per connection.
    incomplete: ClassVar[dict[HeaderLimit, float]]
    sweep: ClassVar[list[asyncio.TimerHandle | None]]  # that timer, while one is due
    # Slots, not instance attributes: uvicorn's protocol sets 28, and CPython 3.11
    # gives an instance with 30 or more a full dict, ~1.3 KB more per connection.
    __slots__ = ("_header_bytes", "_in_headers", "_refused", "_unparsed_bytes")

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Two counts: the parsed request line and headers of the current message
        # (exact, checked once they are complete), and the bytes read while a header
        # section is still incomplete (httptools buffers a header until it ends, so
        # this bounds that buffer, to the limit plus one read).
        self._header_bytes = 0
        self._unparsed_bytes = 0
        self._in_headers = True
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvicorn's, but with the addresses the transport took when it was made: uvicorn's
        # helpers ask it for a "socket", a new socket object and a system call per address
        # (~12 of a new stream's ~200 µs under uvloop), for the same two tuples.
        self.connections.add(self)
        self.transport = transport
        self.flow = FlowControl(transport)
        self.server = _local_address(transport.get_extra_info("sockname"))
        self.client = _remote_address(transport.get_extra_info("peername"))
        self.scheme = "https" if is_ssl(transport) else "http"
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%sHTTP connection made", prefix)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        """Start the clock on a request's headers; past the bound, the connection that
        has waited longest goes."""
        incomplete = self.incomplete
        if self in incomplete:
            return
        loop = self.loop
        incomplete[self] = loop.time()
        if len(incomplete) > self.max_incomplete:
            next(iter(incomplete))._too_slow()
        if self.sweep[0] is None:
            self.sweep[0] = loop.call_later(self.header_timeout, self._sweep, loop)

    @classmethod
    def _sweep(cls, loop: asyncio.AbstractEventLoop) -> None:
        """Close the connections past their deadline; then wait for the next oldest."""
        cls.sweep[0] = None
        incomplete = cls.incomplete
        expired = loop.time() - cls.header_timeout
        while incomplete:
            oldest, since = next(iter(incomplete.items()))
            if since > expired:
                cls.sweep[0] = loop.call_at(since + cls.header_timeout, cls._sweep, loop)
                return
            oldest._too_slow()

    @classmethod
    def room(cls, now: float, most: int) -> int:
        """How many more connections may be accepted now (up to `most`): the free places,
        else those of connections without complete headers for EVICTABLE_AFTER seconds,
        which the newcomers close. A storm's clients that have only just connected are
        not closed for the next ones: those wait in the kernel's accept queue."""
        free = cls.max_incomplete - len(cls.incomplete)
        if free > 0:
            return min(free, most)
        stale, evictable = now - EVICTABLE_AFTER, 0
        for since in cls.incomplete.values():  # oldest first
            if since > stale or evictable == most:
                break
            evictable += 1
        return evictable

    def _headers_done(self) -> None:
        self.incomplete.pop(self, None)

    def _too_slow(self) -> None:
        self._headers_done()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_headers:
            self._unparsed_bytes += len(data)
        super().data_received(data)
        if self._refused or (self._in_headers and self._unparsed_bytes > self.max_header_bytes):
            self._refuse()

    def on_message_begin(self) -> None:
        self._await_headers()  # the next request on a kept-alive connection
        self._in_headers = True
        self._header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return  # a request pipelined behind the refused one
        self._headers_done()
        self._in_headers = False
        self._unparsed_bytes = 0
        if self._header_bytes > self.max_header_bytes:
            self._refused = True  # answered once the parser returns
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def _refuse(self) -> None:
        self._refused = True
        if self.transport.get_protocol() is not self:
            return  # handed over to a stream (gateway.http.handover): not ours to answer
        self.transport.write(self.refusal)
        self.transport.close()


def _local_address(info: object) -> tuple[str, int | None] | None:
    """As uvicorn's get_local_addr has it (a Unix socket's is its path)."""
    if isinstance(info, tuple):
        return (str(info[0]), int(info[1]))
    return (info, None) if isinstance(info, str) else None


def _remote_address(info: object) -> tuple[str, int] | None:
    """As uvicorn's get_remote_addr has it (None for a Unix socket's peer)."""
    return (str(info[0]), int(info[1])) if isinstance(info, tuple) else None


def bounded_http_protocol(
    max_header_bytes: int,
    base: type[HttpToolsProtocol] = HttpToolsProtocol,
    *,
    header_timeout: float = 10.0,
    max_incomplete: int = 8192,
    incomplete: dict[HeaderLimit, float] | None = None,
) -> type[HttpToolsProtocol]:
    """`base` (an HttpToolsProtocol) with HeaderLimit's bounds: `max_header_bytes`, headers
    complete within `header_timeout` seconds, at most `max_incomplete` connections
    sending them at once, kept in `incomplete` (a new dict if None)."""
    body = json.dumps(
        {
            "type": "/problems/http-431",
            "title": "Request Header Fields Too Large",
            "status": 431,
            "detail": f"request line and headers exceed {max_header_bytes} bytes",
        }
    ).encode()
    refusal = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/problem+json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )
    bases = (HeaderLimit,) if base is HttpToolsProtocol else (HeaderLimit, base)
    namespace = {
        "__slots__": (),
        "max_header_bytes": max_header_bytes,
        "refusal": refusal,
        "header_timeout": header_timeout,
        "max_incomplete": max_incomplete,
        "incomplete": {} if incomplete is None else incomplete,
        "sweep": [None],
    }
    return type("BoundedHttpToolsProtocol", bases, namespace)
