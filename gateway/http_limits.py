"""uvicorn's httptools protocol with a bound on request header bytes.

httptools has no limit of its own (uvicorn's `h11_max_incomplete_event_size` applies to
h11 only), so a client could make the gateway buffer headers without end.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def bounded_http_protocol(max_header_bytes: int) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol answering 431 problem+json past `max_header_bytes`."""

    body = json.dumps(
        {
            "type": "/problems/http-431",
            "title": "Request Header Fields Too Large",
            "status": 431,
            "detail": f"request line and headers exceed {max_header_bytes} bytes",
        }
    ).encode()
    response = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/problem+json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _header_bytes = 0
        _in_headers = True

        def data_received(self, data: bytes) -> None:
            if self._in_headers:
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    self.transport.write(response)
                    self.transport.close()
                    return
            super().data_received(data)

        def on_message_begin(self) -> None:
            self._in_headers = True
            self._header_bytes = 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_headers = False
            super().on_headers_complete()

    return BoundedHttpToolsProtocol
