"""Accepting in bursts (gateway.http.accept), under uvloop as `python -m gateway` runs: libuv
accepts one connection per turn of the event loop, the gateway all that are queued (up to
what may be incomplete) in one. Counted in turns of a real server's loop, not in time."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvloop

from gateway.app import build_app
from gateway.server import GatewayServer, server_config
from gateway.settings import Settings
from tests.servers import eventually, free_port

QUEUED = 50  # connections completed by the kernel before the server's loop has a turn
TURNS = 3


async def queue_then_turn(**overrides: Any) -> tuple[int, int]:
    """A gateway (its NATS unreachable: accepting needs none) with QUEUED connections in its
    accept queue; after TURNS turns of its loop, how many it has accepted, and how many of
    the clients it has closed."""
    settings = Settings(nats_url=f"nats://127.0.0.1:{free_port()}", port=free_port(), **overrides)
    app = build_app(settings)
    server = GatewayServer(server_config(settings, app, log_level="warning"), app)
    serving = asyncio.create_task(server.serve())
    clients: list[socket.socket] = []
    try:
        await eventually(lambda: server.started, within=10, what="gateway started")
        # Blocking connects: the server's loop gets no turn until all are queued.
        address = ("127.0.0.1", settings.port)
        clients = [socket.create_connection(address, timeout=5) for _ in range(QUEUED)]
        for client in clients:
            client.settimeout(None)  # blocking again: MSG_DONTWAIT reads say "nothing yet"
        for _ in range(TURNS):
            await asyncio.sleep(0)
        accepted = len(server.server_state.connections)
        await asyncio.sleep(0)  # the closes of the last turn reach the sockets
        return accepted, sum(_closed(client) for client in clients)
    finally:
        for client in clients:
            client.close()
        server.should_exit = True
        await serving


def _closed(client: socket.socket) -> bool:
    try:
        return client.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False


def test_connections_queued_in_the_kernel_are_accepted_in_one_turn() -> None:
    accepted, closed = uvloop.run(queue_then_turn())
    assert (accepted, closed) == (QUEUED, 0)


def test_a_burst_accepts_no_more_than_may_still_send_their_headers() -> None:
    # Ten may be incomplete: the other forty wait in the kernel's queue, rather than being
    # accepted to close the ten that have only just connected.
    accepted, closed = uvloop.run(queue_then_turn(max_incomplete_requests=10))
    assert (accepted, closed) == (10, 0)
