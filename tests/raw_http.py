"""A raw HTTP/1.1 client for hostile-input tests: sends any bytes, reads one answer.

httpx (h11) refuses to send malformed requests; this sends exactly what it is given.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field

# What uvicorn (httptools) answers by itself to bytes it cannot parse as HTTP.
PARSER_REJECTION = b"Invalid HTTP request received."
READ_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """One answer as far as it was read. `status` is None when the server closed (or reset)
    the connection without answering."""

    status: int | None
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    @property
    def content_type(self) -> str:
        return self.header("content-type") or ""

    @property
    def parser_rejection(self) -> bool:
        """uvicorn's own plain-text 400 for a request that is not valid HTTP."""
        return self.status == 400 and self.body.strip() == PARSER_REJECTION


def exchange(
    port: int, request: bytes, *, patience: float | None = None, timeout: float = 5.0
) -> RawAnswer:
    """Send `request` on a new connection and read one answer.

    With `patience`, a server still silent after that many seconds is taken to be waiting
    for the rest of an incomplete request: the sending side is closed, so it sees the end
    instead of waiting for its own timeout. An event stream is read to its first chunk;
    anything else to its end. A read that takes longer than `timeout` raises TimeoutError.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may answer early (a 431) and close: then read what it sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_answer(sock, request, patience)


def read_answer(sock: socket.socket, request: bytes, patience: float | None = None) -> RawAnswer:
    """Read the answer to `request` from `sock` (see exchange)."""
    reader = _Reader(sock, patience)
    head = reader.until(b"\r\n\r\n")
    if head is None:
        return RawAnswer(None, raw=reader.buffer)
    status, headers = _parse_head(head)
    body = _read_body(reader, request, status, headers)
    return RawAnswer(status, headers, body, head + body)


class _Reader:
    def __init__(self, sock: socket.socket, patience: float | None) -> None:
        self.sock = sock
        self.timeout = sock.gettimeout()
        self.patient = patience is not None
        if patience is not None:
            sock.settimeout(patience)
        self.buffer = b""
        self.closed = False

    def fill(self) -> bool:
        """Read more; False once the peer closed (or reset) the connection."""
        if self.closed:
            return False
        try:
            data = self.sock.recv(READ_SIZE)
        except TimeoutError:
            if not self.patient:
                raise
            self.patient = False
            self.sock.settimeout(self.timeout)
            self.sock.shutdown(socket.SHUT_WR)
            return self.fill()
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buffer += data
        return True

    def until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            if not self.fill():
                return None
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size and self.fill():
            pass
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def rest(self) -> bytes:
        while self.fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


def _parse_head(head: bytes) -> tuple[int, dict[str, list[str]]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers: dict[str, list[str]] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers


def _read_body(
    reader: _Reader, request: bytes, status: int, headers: dict[str, list[str]]
) -> bytes:
    closing = headers.get("connection", [""])[0].lower() == "close"
    if request.startswith(b"HEAD ") and closing:
        # uvicorn's own 400 has a body even for HEAD; the server closes after it.
        return reader.rest()
    if request.startswith(b"HEAD ") or status in (204, 304) or 100 <= status < 200:
        return b""
    if "content-length" in headers:
        return reader.exactly(int(headers["content-length"][0]))
    if headers.get("transfer-encoding", [""])[0].lower() == "chunked":
        size_line = reader.until(b"\r\n")
        if size_line is None:
            return b""
        first = reader.exactly(int(size_line.split(b";")[0], 16))
        if headers.get("content-type", [""])[0].startswith("text/event-stream"):
            return first  # a stream never ends: its first chunk is enough
        return first + reader.rest()  # not expected from the gateway, but readable
    return reader.rest()
