"""uvicorn's server, with the hub drained first when it shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Iterator
from types import FrameType

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.app import GatewayApp
from gateway.http.accept import Acceptor
from gateway.http.handover import stream_protocol
from gateway.http.limits import HeaderLimit, bounded_http_protocol
from gateway.settings import Settings

logger = logging.getLogger(__name__)


def server_config(settings: Settings, app: ASGIApp, **overrides: object) -> uvicorn.Config:
    """uvicorn's config for the gateway, shared by the command and the tests."""
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,  # keep the process's JSON handler
        "access_log": False,  # the gateway logs one line per stream itself
        # Streams end over --drain-period; then a margin for the last writes and consumer
        # deletes before uvicorn cancels what is left.
        "timeout_graceful_shutdown": int(settings.drain_period) + 5,
        "lifespan": "on",
        # No WebSocket route: a handshake is answered as the plain request it also is.
        "ws": "none",
        "server_header": False,  # which server and version is nobody's business
        # The Acceptor (gateway.http.accept) takes no more at a time than may be incomplete.
        "backlog": settings.backlog,
    }
    config = uvicorn.Config(app, **(options | overrides))  # type: ignore[arg-type]
    # GET /stocks leaves uvicorn's ASGI way once its headers are read (gateway.http.handover).
    base = (
        stream_protocol(app.stocks.serve_connection, config)
        if isinstance(app, GatewayApp)
        else None
    )
    # The live feeds' flushes yield while many of its connections wait (gateway.feed.flushing).
    waiting = app.hub.waiting if isinstance(app, GatewayApp) else None
    config.http = header_bounds(settings, base or HttpToolsProtocol, waiting)
    return config


def header_bounds(
    settings: Settings,
    base: type[HttpToolsProtocol],
    incomplete: dict[HeaderLimit, float] | None = None,
) -> type[HttpToolsProtocol]:
    return bounded_http_protocol(
        settings.max_header_bytes,
        base,
        header_timeout=settings.header_timeout,
        max_incomplete=settings.max_incomplete_requests,
        incomplete=incomplete,
    )


class GatewayServer(uvicorn.Server):
    """On SIGTERM/SIGINT uvicorn stops accepting and waits for open responses to finish;
    SSE responses never finish by themselves, so the hub drains them first."""

    def __init__(
        self, config: uvicorn.Config, app: GatewayApp, ops_socket: socket.socket | None = None
    ) -> None:
        super().__init__(config)
        self.hub = app.hub  # the app's lifespan runs it; the server only drains it
        self.ops_socket = ops_socket  # bound already (a worker's), else bound at startup

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.started:
            return
        self._accept_in_bursts()
        port = self.hub.settings.ops_port
        if not port:
            return
        # The ops port is one more listening socket of this server (started, stopped and
        # drained with the main one); the app routes by the local port (gateway.app).
        # Its connections take uvicorn's own protocol, header-bounded: no handover, so
        # a GET /stocks there is routed, and a 404, like anything but the ops paths.
        config = self.config
        protocol = header_bounds(self.hub.settings, HttpToolsProtocol)
        state = self.lifespan.state
        loop = asyncio.get_running_loop()

        def connection() -> HttpToolsProtocol:
            return protocol(config, self.server_state, state)

        try:
            if self.ops_socket is not None:
                server = await loop.create_server(
                    connection, sock=self.ops_socket, backlog=config.backlog
                )
            else:
                server = await loop.create_server(
                    connection, host=config.host, port=port, backlog=config.backlog
                )
        except OSError as exc:  # as uvicorn does when it cannot bind the main port
            logger.error("cannot listen on the ops port", extra={"port": port, "error": str(exc)})
            for listening in self.servers:
                listening.close()
            await self.lifespan.shutdown()
            sys.exit(1)
        self.servers.append(server)

    def _accept_in_bursts(self) -> None:
        """The listening sockets uvicorn opened are accepted on by an Acceptor each
        (gateway.http.accept) instead of libuv's one connection per turn of the loop."""
        config, state = self.config, self.lifespan.state
        protocol = config.http_protocol_class

        def connection() -> asyncio.Protocol:
            return protocol(config, self.server_state, state)  # type: ignore[call-arg]

        def room(now: float, most: int) -> int:
            return protocol.room(now, most) if issubclass(protocol, HeaderLimit) else most

        acceptors = []
        for server in self.servers:
            # A copy of each socket: closing the server closes its own.
            acceptors += [
                Acceptor(socket.fromfd(sock.fileno(), sock.family, sock.type), connection, room)
                for sock in server.sockets
            ]
            server.close()
        self.servers = acceptors  # type: ignore[assignment]  # close() and wait_closed()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Still listening while draining: readiness and new /stocks answer 503 at once.
        await self.hub.drain()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A second signal of either kind ends at once (uvicorn only does so for SIGINT).
        if self.should_exit:
            self.force_exit = True
            # A signal handler runs between two steps of the loop: hand the work to it.
            with contextlib.suppress(RuntimeError):  # no loop running: nothing to end
                asyncio.get_running_loop().call_soon_threadsafe(self.hub.force)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the signal after a graceful stop, so the process would die
            # of SIGTERM; a completed drain is a success, and Kubernetes expects exit 0.
            self._captured_signals.clear()
