"""One worker of `--workers N`: its own listening socket on the shared port
(SO_REUSEPORT, so the kernel spreads connections over the workers), and orders from its
supervisor over a pipe instead of signals."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection

import uvicorn

from contracts.logs import configure_logging
from gateway.app import GatewayApp
from gateway.process import serve
from gateway.server import GatewayServer
from gateway.settings import Settings

logger = logging.getLogger("gateway")

STARTED = b"started"  # worker -> supervisor: listening, on both its ports
# supervisor -> worker: drain, as SIGTERM does for a single process; the second: at once.
STOP = b"stop"


def worker_settings(settings: Settings, index: int, restarts: int) -> Settings:
    """Worker `index`'s settings: its ops port, and a gateway id of its own, new on each
    restart, so that no consumer name of a dead worker is ever reused."""
    suffix = f"-w{index}" + (f"-r{restarts}" if restarts else "")
    return dataclasses.replace(
        settings,
        workers=1,
        gateway_id=settings.gateway_id + suffix,
        ops_port=settings.ops_port + index,
    )


def bound_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A socket bound to (host, port). With `reuse_port` (SO_REUSEPORT) every worker binds
    the HTTP port with a socket of its own, and the kernel balances new connections over
    their accept queues; binding still fails while a process without SO_REUSEPORT (or of
    another user) holds the port."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class WorkerServer(GatewayServer):
    """GatewayServer taking its orders from the supervisor's pipe: STOP drains, a second
    STOP ends at once, and the pipe's end (the supervisor killed) drains too."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: GatewayApp,
        ops_socket: socket.socket | None = None,
        *,
        channel: Connection,
    ) -> None:
        super().__init__(config, app, ops_socket)
        self.channel = channel

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            asyncio.get_running_loop().add_reader(self.channel.fileno(), self._order)
            self.channel.send_bytes(STARTED)

    def _order(self) -> None:
        try:
            self.channel.recv_bytes()
        except (EOFError, OSError):
            # No supervisor left to restart or stop this worker: drain rather than serve
            # on unsupervised, holding the port.
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
            if self.should_exit:
                return
            logger.warning("supervisor gone: draining")
        self.handle_exit(signal.SIGTERM, None)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals are the supervisor's: a Ctrl-C reaches the whole process group, and
        # systemd signals every process of the unit, so a worker acting on them too would
        # take the supervisor's drain order for a second signal and end at once.
        yield


def run_worker(settings: Settings, index: int, channel: Connection) -> None:
    """The worker process's entry point (multiprocessing's spawn)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    configure_logging(settings.log_level, {"worker": index})
    # Both ports are bound before anything starts: a worker that cannot have them exits
    # at once, with nothing to stop.
    try:
        sock = bound_socket(settings.host, settings.port, reuse_port=True)
        ops = bound_socket(settings.host, settings.ops_port)
    except OSError as exc:
        logger.error("cannot listen", extra={"error": str(exc)})
        sys.exit(1)
    server = functools.partial(WorkerServer, ops_socket=ops, channel=channel)
    sys.exit(serve(settings, sockets=[sock], server_class=server))
