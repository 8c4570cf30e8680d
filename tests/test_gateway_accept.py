"""Accepting in bursts (gateway.http.accept), under uvloop as `python -m gateway` runs: libuv
accepts one connection per turn of the event loop, the gateway all that are queued (up to
what may be incomplete) in one. Counted in turns of a real server's loop, not in time."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from gateway.app import build_app
from gateway.http.accept import BURST, BURST_PERIOD, Acceptor
from gateway.server import GatewayServer, server_config
from gateway.settings import Settings
from tests.servers import eventually, free_port

QUEUED = 50  # connections completed by the kernel before the server's loop has a turn
TURNS = 3


async def queue_then_turn(
    queued: int = QUEUED, hold: float = 0.0, **overrides: Any
) -> tuple[int, int]:
    """A gateway (its NATS unreachable: accepting needs none) with `queued` connections in
    its accept queue, its loop held up `hold` seconds more; after TURNS turns of its loop,
    how many it has accepted, and how many of the clients it has closed."""
    settings = Settings(nats_url=f"nats://127.0.0.1:{free_port()}", port=free_port(), **overrides)
    app = build_app(settings)
    server = GatewayServer(server_config(settings, app, log_level="warning"), app)
    serving = asyncio.create_task(server.serve())
    clients: list[socket.socket] = []
    try:
        await eventually(lambda: server.started, within=10, what="gateway started")
        # Blocking connects: the server's loop gets no turn until all are queued.
        address = ("127.0.0.1", settings.port)
        clients = [socket.create_connection(address, timeout=5) for _ in range(queued)]
        for client in clients:
            client.settimeout(None)  # blocking again: MSG_DONTWAIT reads say "nothing yet"
        time.sleep(hold)  # noqa: ASYNC251 - holding the loop up, as a busy turn does
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


def test_a_loop_held_up_takes_a_burst_for_each_period_it_missed() -> None:
    # More than TURNS bursts' worth, queued while the loop was held up five periods: all
    # are taken in its next turn (a storm is not left to the kernel's queue, which drops
    # the handshakes it has no room for).
    queued = BURST * TURNS + 50
    accepted, closed = uvloop.run(queue_then_turn(queued, hold=5 * BURST_PERIOD))
    assert (accepted, closed) == (queued, 0)


@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_accepted_connections_send_at_once_on_either_loop(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """TCP_NODELAY on every accepted connection, as the loops' own servers set it: without
    it, a response written in two writes (head, then body) waits on the client's delayed
    ACK. asyncio's loop sets it only for sockets that say IPPROTO_TCP, and a listener made
    without a protocol says 0 (the in-process security fuzz ran twice as long)."""

    async def nodelay_of_an_accepted_connection() -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        made: asyncio.Future[asyncio.BaseTransport] = asyncio.get_running_loop().create_future()

        class Seen(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                made.set_result(transport)

        acceptor = Acceptor(listener, Seen, lambda _now, most: most)
        client = socket.create_connection(listener.getsockname(), timeout=5)
        try:
            async with asyncio.timeout(5):
                transport = await made
            sock = transport.get_extra_info("socket")
            nodelay = int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()
            return nodelay
        finally:
            client.close()
            acceptor.close()

    loop = new_loop()
    try:
        assert loop.run_until_complete(nodelay_of_an_accepted_connection()) != 0
    finally:
        loop.close()
