"""Faults while clients stream: SIGTERM of a replica, NATS restarted. Every client ends up
with every tick exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from contracts.messages import MSG_ID_HEADER
from tests.processes import GatewayProcess
from tests.publishing import SteadyPublisher
from tests.resuming_client import ResumingClient
from tests.servers import NatsServer, eventually
from tests.ticks import client_consumers

SYMBOLS = ["AAPL", "MSFT", "BRK.B"]

StartProcess = Callable[..., Coroutine[Any, Any, GatewayProcess]]


@pytest.fixture
async def gateway_processes(nats_url: str) -> AsyncIterator[StartProcess]:
    started: list[GatewayProcess] = []

    async def start(*args: str) -> GatewayProcess:
        process = GatewayProcess(nats_url, "--inactive-threshold", "5", *args)
        started.append(process)
        await process.start()
        return process

    try:
        yield start
    finally:
        for process in started:
            await process.stop()


async def start_clients(
    tg: asyncio.TaskGroup,
    js: JetStreamContext,
    publisher: SteadyPublisher,
    clients: list[ResumingClient],
) -> asyncio.Task[None]:
    """Clients first get the latest tick per symbol; publish those first, so that what each
    client must receive is exactly everything the publisher stored."""
    for symbol in SYMBOLS:
        await publisher.publish_one(symbol)
    for client in clients:
        tg.create_task(client.run())
    await eventually(
        lambda: all(len(c.session.events) == len(SYMBOLS) for c in clients),
        within=10,
        what="clients got the latest prices",
    )
    return tg.create_task(publisher.run())


async def test_sigterm_ends_streams_cleanly_and_clients_resume_on_another_replica(
    gateway_processes: StartProcess, js: JetStreamContext
) -> None:
    leaving = await gateway_processes("--drain-period", "2")
    staying = await gateway_processes()
    publisher = SteadyPublisher(js, SYMBOLS, rate=50)
    clients = [ResumingClient([leaving.url, staying.url]) for _ in range(4)]
    async with asyncio.TaskGroup() as tg:
        publishing = await start_clients(tg, js, publisher, clients)
        await eventually(
            lambda: all(len(c.session.events) >= 5 for c in clients),
            within=10,
            what="clients streaming from the first replica",
        )
        assert leaving.process is not None
        leaving.process.send_signal(signal.SIGTERM)
        # During the drain: not ready, and new streams refused with 503 at once.
        async with httpx.AsyncClient() as http:
            await eventually(
                lambda: _status(http, f"{leaving.url}/readyz", 503),
                within=2,
                what="readiness 503 during the drain",
            )
            refused = await http.get(f"{leaving.url}/stocks")
        assert refused.status_code == 503
        assert "retry-after" in refused.headers
        async with asyncio.timeout(20):
            assert await leaving.process.wait() == 0
        count = len(publisher.sequences)
        await eventually(
            lambda: len(publisher.sequences) >= count + 50,
            within=10,
            what="more ticks after the failover",
        )
        publisher.stop()
        await publishing  # its last tick may still be in flight
        await eventually(
            lambda: all(c.session.sequences == sorted(publisher.sequences) for c in clients),
            within=10,
            what="clients caught up",
        )
        for client in clients:
            client.stop()
    for client in clients:
        assert client.session.sequences == sorted(publisher.sequences)
        assert any(ending.endswith(": end") for ending in client.session.endings), (
            "the drained stream ended cleanly, not cut"
        )
        assert not client.session.resets
    await eventually(lambda: _no_consumers(js), within=5, what="no client consumer left")


async def _status(http: httpx.AsyncClient, url: str, code: int) -> bool:
    try:
        return (await http.get(url)).status_code == code
    except httpx.TransportError:
        return False


async def _no_consumers(js: JetStreamContext) -> bool:
    return not await client_consumers(js)


async def test_nats_restart_mid_stream_delivers_every_tick_exactly_once(
    nats_server: NatsServer, gateway_processes: StartProcess, js: JetStreamContext
) -> None:
    gateway = await gateway_processes()
    publisher = SteadyPublisher(js, SYMBOLS, rate=40)
    client = ResumingClient([gateway.url])
    async with asyncio.TaskGroup() as tg:
        publishing = await start_clients(tg, js, publisher, [client])
        await eventually(lambda: len(client.session.events) >= 20, within=10, what="streaming")
        await nats_server.stop()
        # An outage long enough that the publisher retries; the client waits.
        await eventually(lambda: publisher.retries > 0, within=10, what="a publish retried")
        await nats_server.start()
        count = len(publisher.sequences)
        await eventually(
            lambda: len(publisher.sequences) >= count + 40,
            within=20,
            what="publishing again after the restart",
        )
        publisher.stop()
        await publishing  # its last tick may still be in flight
        await eventually(
            lambda: client.session.sequences == sorted(publisher.sequences),
            within=20,
            what="client has every tick",
        )
        client.stop()
    assert publisher.retries > 0, "the outage was seen by the publisher"
    assert client.session.sequences == sorted(publisher.sequences)
    assert not client.session.resets


async def test_publisher_process_survives_a_nats_restart_without_loss_or_duplicate(
    nats_server: NatsServer, gateway_processes: StartProcess, js: JetStreamContext
) -> None:
    gateway = await gateway_processes()
    publisher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "publisher",
        "--source",
        "pub-restart",
        "--symbols",
        ",".join(SYMBOLS),
        "--rate",
        "10",
        "--publish-retries",
        "8",
        env={**os.environ, "NATS_URL": nats_server.url},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    client = ResumingClient([gateway.url])
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(client.run())
            await eventually(
                lambda: len(client.session.events) >= 30,
                within=15,
                what="streaming the publisher's ticks",
            )
            await nats_server.stop()
            # An outage that the gateway has seen (the publisher's ticks meanwhile are
            # held and retried under the same ids).
            async with httpx.AsyncClient() as http:
                await eventually(
                    lambda: _status(http, f"{gateway.url}/readyz", 503),
                    within=10,
                    what="the gateway not ready without NATS",
                )
            await nats_server.start()
            count = len(client.session.events)
            await eventually(
                lambda: len(client.session.events) >= count + 30,
                within=30,
                what="ticks flowing again",
            )
            publisher.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await publisher.wait() == 0
            stored = await _stored(js)
            await eventually(
                lambda: client.session.sequences[-1] == stored[-1][0],
                within=10,
                what="client caught up",
            )
            client.stop()
    finally:
        if publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
    sequences = [seq for seq, _ in stored]
    counters = [int(msg_id.rsplit(":", 1)[1]) for _, msg_id in stored]
    assert counters == list(range(counters[0], counters[0] + len(counters))), (
        "every tick the publisher made is stored, once, in order"
    )
    first = client.session.sequences[0]
    assert client.session.sequences == [s for s in sequences if s >= first]


async def _stored(js: JetStreamContext) -> list[tuple[int, str]]:
    """(sequence, Nats-Msg-Id) of every message in the stream."""
    info = await js.stream_info("PRICES")
    stored = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg("PRICES", seq)
        assert msg.headers is not None
        stored.append((seq, msg.headers[MSG_ID_HEADER]))
    return stored


async def test_a_gateway_stopped_while_nats_is_down_exits_cleanly(
    nats_server: NatsServer, gateway_processes: StartProcess
) -> None:
    gateway = await gateway_processes("--drain-period", "0")
    await nats_server.stop()
    await eventually(lambda: _not_ready(gateway.url), within=10, what="the gateway sees NATS gone")
    # Its NATS connection is reconnecting, and cannot be drained: it is closed instead.
    assert await gateway.signal(signal.SIGTERM) == 0
    log = gateway.log.read_text()
    assert "Traceback" not in log, log[-2000:]
    assert "shutdown failed" not in log


async def _not_ready(url: str) -> bool:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{url}/readyz")).status_code == 503
