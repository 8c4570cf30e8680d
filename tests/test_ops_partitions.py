"""Partitions: a link that goes silent (no RST), between a gateway and NATS, or between a
NATS node and the rest of its cluster. The cut-off gateway notices within a bounded time,
says it is not ready and ends its streams; its clients resume on another replica with
every stored tick exactly once; the gateway recovers by itself when the link comes back.

Processes run in network namespaces of their own (tests.netns); the tests' clients reach
them through relays on loopback, which no cut touches.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from contracts.stream import StreamSettings, ensure_stream
from tests.netns import Link, Namespace, Network, unavailable
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


@pytest.fixture
async def network() -> AsyncIterator[Network]:
    if reason := unavailable():
        if os.environ.get("CI"):
            pytest.fail(f"partition tests cannot run in CI: {reason}")
        pytest.skip(reason)
    async with Network() as net:
        yield net


async def _status(url: str) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(f"{url}/readyz")).status_code
    except httpx.TransportError:
        return None


async def _connects(url: str) -> NATS | None:
    try:
        return await nats.connect(url, connect_timeout=1, max_reconnect_attempts=-1)
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
    net: Network, namespace: Namespace, nats_url: str, tmp: Path, name: str
) -> str:
    """A gateway inside `namespace`; its URL as this machine reaches it."""
    argv = [sys.executable, "-m", "gateway", "--port", str(HTTP_PORT)]
    argv += ["--gateway-id", name, *GATEWAY_ARGS]
    await net.start(namespace, argv, tmp / f"{name}.log", {"NATS_URL": nats_url})
    url = f"http://127.0.0.1:{await net.relay(namespace, HTTP_PORT)}"
    await eventually(lambda: _ready(url), within=20, what=f"gateway {name} ready")
    return url


async def _ready(url: str) -> bool:
    return await _status(url) == 200


async def _not_ready(url: str) -> bool:
    return await _status(url) == 503


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
    """Stop publishing; every client then has every stored tick once, in stream order."""
    publisher.stop()
    await publishing
    stored = sorted(publisher.sequences)
    info = await js.stream_info(StreamSettings().name)
    assert info.state.messages == len(stored), "the stream holds only the publisher's ticks"
    assert info.state.last_seq == stored[-1]
    await eventually(
        lambda: all(c.session.sequences == stored for c in clients),
        within=20,
        what="clients have every stored tick",
    )
    for client in clients:
        client.stop()
        assert client.session.sequences == stored  # no loss, no duplicate, in order
        assert not client.session.resets


SERVER = (
    "import socket,time\ns=socket.create_server(('0.0.0.0',5000))\nc,_=s.accept()\ntime.sleep(60)"
)
PROBE = """
import json, socket, sys, time
address = (sys.argv[1], 5000)
for _ in range(100):  # until the server listens
    try:
        connection = socket.create_connection(address, timeout=5)
        break
    except OSError:
        time.sleep(0.1)
print("connected", flush=True)
sys.stdin.readline()  # the link is cut now
connection.settimeout(2)
connection.sendall(b"x")
seen = {}
try:
    seen["recv"] = repr(connection.recv(1))
except OSError as exc:
    seen["recv"] = type(exc).__name__
try:
    socket.create_connection(address, timeout=2)
    seen["connect"] = "connected"
except OSError as exc:
    seen["connect"] = type(exc).__name__
print(json.dumps(seen), flush=True)
"""


async def test_a_cut_link_is_silent_not_reset(network: Network) -> None:
    """What the partition tests rely on: across a cut link an established connection
    neither ends nor errs, and a new one times out rather than being refused."""
    inner, outer = await network.namespace(), await network.namespace()
    link = await network.link(inner, outer)
    await network.start(inner, [sys.executable, "-c", SERVER], Path(os.devnull))
    address = link.end_in(inner).address
    probe = await asyncio.create_subprocess_exec(
        *outer.command(sys.executable, "-c", PROBE, address),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    network.processes.append(probe)
    assert probe.stdin is not None
    assert probe.stdout is not None
    async with asyncio.timeout(15):
        assert await probe.stdout.readline() == b"connected\n"
    await link.cut(silenced=outer)
    probe.stdin.write(b"cut\n")
    async with asyncio.timeout(15):
        seen = json.loads(await probe.stdout.readline())
    assert seen == {"recv": "TimeoutError", "connect": "TimeoutError"}


async def test_a_gateway_cut_off_from_nats_ends_its_streams_and_recovers(
    network: Network, tmp_path: Path
) -> None:
    """NATS in one namespace, gateway A in another, one veth link between them; gateway
    B, the publisher and the clients reach NATS and both gateways over loopback relays."""
    nats_ns, a_ns = await network.namespace(), await network.namespace()
    link = await network.link(nats_ns, a_ns)
    await start_nats(network, nats_ns, tmp_path)
    nats_url = f"nats://127.0.0.1:{await network.relay(nats_ns, NATS_PORT)}"
    nc = await _connected(nats_url)
    try:
        js = nc.jetstream()
        await ensure_stream(js, StreamSettings())
        a_url = await start_gateway(
            network, a_ns, f"nats://{link.end_in(nats_ns).address}:{NATS_PORT}", tmp_path, "a"
        )
        await network.start(
            nats_ns,  # gateway B: NATS's own namespace, a path the cut leaves alone
            [sys.executable, "-m", "gateway", "--port", str(HTTP_PORT), *GATEWAY_ARGS],
            tmp_path / "b.log",
            {"NATS_URL": f"nats://127.0.0.1:{NATS_PORT}"},
        )
        b_url = f"http://127.0.0.1:{await network.relay(nats_ns, HTTP_PORT)}"
        await eventually(lambda: _ready(b_url), within=20, what="gateway b ready")
        await _cut_and_restore(js, link, a_ns, a_url, b_url)
    finally:
        await nc.close()


async def _connected(url: str) -> NATS:
    nc: NATS | None = None

    async def connects() -> bool:
        nonlocal nc
        nc = await _connects(url)
        return nc is not None

    await eventually(connects, within=15, what=f"NATS answers at {url}")
    assert nc is not None
    return nc


async def _cut_and_restore(
    js: JetStreamContext, link: Link, a_ns: Namespace, a_url: str, b_url: str
) -> None:
    publisher = SteadyPublisher(js, SYMBOLS, rate=40)
    clients = [ResumingClient([a_url, b_url]) for _ in range(3)]
    async with asyncio.TaskGroup() as tg:
        publishing = await stream_clients(tg, publisher, clients)
        loop = asyncio.get_running_loop()
        await link.cut(silenced=a_ns)
        cut_at = loop.time()
        await eventually(lambda: _not_ready(a_url), within=READY_BOUND + SLACK, what="a not ready")
        not_ready_after = loop.time() - cut_at
        await eventually(
            lambda: all(f"{a_url}: end" in c.session.endings for c in clients),
            within=END_BOUND + SLACK,
            what="a ended its streams",
        )
        ended_after = loop.time() - cut_at
        count = len(publisher.sequences)
        await eventually(
            lambda: len(publisher.sequences) >= count + 40, within=10, what="more ticks"
        )
        await link.restore()
        await eventually(lambda: _ready(a_url), within=20, what="a ready again by itself")
        fresh = ResumingClient([a_url])  # a new stream served by A, live
        tg.create_task(fresh.run())
        await eventually(
            lambda: len(fresh.session.events) >= len(SYMBOLS) + 10,
            within=10,
            what="a serving a new stream",
        )
        fresh.stop()
        assert fresh.session.endings == [], "a's new stream kept going"
        await finish_exactly(js, publisher, publishing, clients)
    for client in clients:
        assert any("reconnect to resume" in comment for comment in client.session.comments)
    print(f"not ready after {not_ready_after:.1f} s, streams ended after {ended_after:.1f} s")
