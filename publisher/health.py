"""The publisher's probe endpoint (--health-port): `GET /healthz` is 200 while the event loop
answers (liveness), `GET /readyz` is 200 while it is connected to NATS and publishing, else
503 with the reason (readiness). Plain HTTP/1.1, one request per connection; for kubelet's
probes inside the pod network, not for the internet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

logger = logging.getLogger(__name__)

MAX_HEAD = 8192  # bytes of request line and headers
READ_TIMEOUT = 5.0  # seconds to send them: an idle socket is closed
Readiness = Callable[[], str | None]  # None when ready, else why not


def _answer(status: int, reason: str, body: str) -> bytes:
    data = (body + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + data


def respond(request_line: bytes, readiness: Readiness) -> bytes:
    """The answer to one request line (`GET /readyz HTTP/1.1`)."""
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return _answer(400, "Bad Request", "bad request")
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if method != b"GET":
        return _answer(405, "Method Not Allowed", "GET only")
    if target == b"/healthz":
        return _answer(200, "OK", "ok")
    if target == b"/readyz":
        why_not = readiness()
        if why_not is None:
            return _answer(200, "OK", "ready")
        return _answer(503, "Service Unavailable", why_not)
    return _answer(404, "Not Found", "not found")


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, readiness: Readiness
) -> None:
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        answer = respond(head.split(b"\r\n", 1)[0], readiness)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        answer = _answer(400, "Bad Request", "incomplete request")
    except ConnectionError:
        answer = b""
    try:
        if answer:
            writer.write(answer)
            await writer.drain()
    except ConnectionError:
        pass  # the prober went away: nothing to tell it
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def health_server(host: str, port: int, readiness: Readiness) -> AsyncIterator[None]:
    """Serve the probes on host:port for the duration of the block (port 0: none)."""
    if not port:
        yield
        return
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, readiness), host, port, limit=MAX_HEAD
    )
    logger.info("health endpoint listening", extra={"host": host, "port": port})
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
