"""What the partition tests share: processes in network namespaces (tests.netns), the
gateway's timing under test, and the exactness check against what JetStream stored."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from contracts.stream import StreamSettings
from tests.netns import Namespace, Network, unavailable
from tests.publishing import SteadyPublisher
from tests.resuming_client import ResumingClient
from tests.servers import BIN, eventually

SYMBOLS = ["AAPL", "MSFT", "BRK.B"]
NATS_PORT, HTTP_PORT = 4222, 8080  # inside namespaces of their own: never taken
# Tight settings for the cut-off gateway, and the bounds docs/operations.md derives from
# them: not ready once a readiness check times out (2 s) past its 1 s cache; streams
# ended within ping interval + 3 x nats-timeout + 3 s (a consumer delete given up, and
# the live feed's restarts).
PING, NATS_TIMEOUT = 1.0, 2.0
READY_BOUND = 2.0 + 1.0
END_BOUND = PING + 3 * NATS_TIMEOUT + 3.0
SLACK = 4.0  # a shared, loaded machine: scheduling, not the gateway's bound
GATEWAY_ARGS = ["--inactive-threshold", "5", "--nats-timeout", str(NATS_TIMEOUT)]
GATEWAY_ARGS += ["--nats-ping-interval", str(PING)]
GATEWAY_ARGS += ["--ensure-stream", "false"]  # the test provisions it, as in prod


@asynccontextmanager
async def network_or_skip() -> AsyncIterator[Network]:
    """A Network; the test skips where namespaces cannot be made (fails in CI)."""
    if reason := unavailable():
        if os.environ.get("CI"):
            pytest.fail(f"partition tests cannot run in CI: {reason}")
        pytest.skip(reason)
    async with Network() as net:
        yield net


async def readiness(url: str) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(f"{url}/readyz")).status_code
    except httpx.TransportError:
        return None


async def _connects(url: str) -> NATS | None:
    try:
        return await nats.connect(url.split(","), connect_timeout=1, max_reconnect_attempts=-1)
    except (nats.errors.Error, OSError, TimeoutError):
        return None


async def start_nats(
    net: Network, namespace: Namespace, tmp: Path, *flags: str
) -> asyncio.subprocess.Process:
    store = tmp / namespace.name
    argv = [str(BIN / "nats-server"), "-a", "0.0.0.0", "-p", str(NATS_PORT), "-js"]
    argv += ["-sd", str(store), "--no_advertise", *flags]
    return await net.start(namespace, argv, tmp / f"{namespace.name}.log")


async def start_gateway(
    net: Network, namespace: Namespace, nats_url: str, tmp: Path, name: str, *args: str
) -> str:
    """A gateway inside `namespace` (GATEWAY_ARGS, then `args`); its URL as this machine
    reaches it."""
    argv = [sys.executable, "-m", "gateway", "--port", str(HTTP_PORT)]
    argv += ["--gateway-id", name, *GATEWAY_ARGS, *args]
    await net.start(namespace, argv, tmp / f"{name}.log", {"NATS_URL": nats_url})
    url = f"http://127.0.0.1:{await net.relay(namespace, HTTP_PORT)}"
    await eventually(lambda: ready(url), within=20, what=f"gateway {name} ready")
    return url


async def ready(url: str) -> bool:
    return await readiness(url) == 200


async def not_ready(url: str) -> bool:
    return await readiness(url) == 503


async def stream_clients(
    tg: asyncio.TaskGroup, publisher: SteadyPublisher, clients: list[ResumingClient]
) -> asyncio.Task[None]:
    """The latest tick per symbol first, so each client must get exactly what the
    publisher stored; then the clients, then steady publishing."""
    for symbol in SYMBOLS:
        await publisher.publish_one(symbol)
    for client in clients:
        tg.create_task(client.run())
    await eventually(
        lambda: all(len(c.session.events) == len(SYMBOLS) for c in clients),
        within=20,
        what="clients got the latest prices",
    )
    publishing = tg.create_task(publisher.run())
    await eventually(
        lambda: all(len(c.session.events) >= len(SYMBOLS) + 10 for c in clients),
        within=20,
        what="clients streaming",
    )
    return publishing


async def finish_exactly(
    js: JetStreamContext,
    publisher: SteadyPublisher,
    publishing: asyncio.Task[None],
    clients: list[ResumingClient],
) -> None:
    """Stop publishing; every client then has every stored tick once, in stream order, and
    was told why its stream ended."""
    publisher.stop()
    await publishing
    stored = sorted(publisher.sequences)
    info = await js.stream_info(StreamSettings().name)
    assert info.state.messages == len(stored), "the stream holds only the publisher's ticks"
    assert info.state.last_seq == stored[-1]
    await eventually(
        lambda: all(c.session.sequences == stored for c in clients),
        within=30,
        what="clients have every stored tick",
    )
    for client in clients:
        client.stop()
        assert client.session.sequences == stored  # no loss, no duplicate, in order
        assert not client.session.resets
        told = [c for c in client.session.comments if c.startswith("stream ended: ")]
        assert told, "the cut-off gateway said why the stream ended"
        assert all(c.endswith("; reconnect to resume") for c in told)


async def connected(url: str) -> NATS:
    nc: NATS | None = None

    async def connects() -> bool:
        nonlocal nc
        nc = await _connects(url)
        return nc is not None

    await eventually(connects, within=15, what=f"NATS answers at {url}")
    assert nc is not None
    return nc
