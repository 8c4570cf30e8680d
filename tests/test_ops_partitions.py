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
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from contracts.stream import StreamSettings, ensure_stream
from tests.cluster import stream_ensured
from tests.netns import Link, Namespace, Network
from tests.partitions import (
    END_BOUND,
    GATEWAY_ARGS,
    HTTP_PORT,
    NATS_PORT,
    READY_BOUND,
    SLACK,
    SYMBOLS,
    connected,
    finish_exactly,
    network_or_skip,
    not_ready,
    ready,
    start_gateway,
    start_nats,
    stream_clients,
)
from tests.publishing import SteadyPublisher
from tests.resuming_client import ResumingClient
from tests.servers import eventually


@pytest.fixture
async def network() -> AsyncIterator[Network]:
    async with network_or_skip() as net:
        yield net


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
    nc = await connected(nats_url)
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
        await eventually(lambda: ready(b_url), within=20, what="gateway b ready")
        bounds = Bounds(not_ready=READY_BOUND + SLACK, stores=10, ready_again=20)
        print(await _partition_and_heal(js, [link], a_ns, (a_url, b_url), bounds))
    finally:
        await nc.close()


CLUSTER_PORT = 6222


@pytest.mark.parametrize("shared_feed", ["true", "false"], ids=["live-feed", "own-consumers"])
async def test_a_nats_node_cut_off_from_its_cluster_and_its_gateway(
    network: Network, tmp_path: Path, shared_feed: str
) -> None:
    """Three NATS nodes in three namespaces, a link between each pair, stream replicas 3.
    The node leading the stream is cut off from the other two (its routes go silent) while
    the publisher keeps publishing to those two: gateway g0 beside it still talks to it,
    but JetStream there loses its leadership; gateway g1 is beside a majority node. Both
    ways of feeding clients: the live feed, or each client's own consumer."""
    spaces = [await network.namespace() for _ in range(3)]
    links = {(i, j): await network.link(spaces[i], spaces[j]) for i, j in ((0, 1), (0, 2), (1, 2))}

    def address(i: int, seen_from: int) -> str:
        link = links[(min(i, seen_from), max(i, seen_from))]
        return link.end_in(spaces[i]).address

    for i, space in enumerate(spaces):
        routes = [f"nats://{address(j, i)}:{CLUSTER_PORT}" for j in range(3) if j != i]
        await start_nats(
            network, space, tmp_path, "-n", f"n{i}", "--cluster_name", "partition",
            "--cluster", f"nats://0.0.0.0:{CLUSTER_PORT}", "--routes", ",".join(routes),
        )  # fmt: skip
    relays = [f"nats://127.0.0.1:{await network.relay(s, NATS_PORT)}" for s in spaces]
    cut = await _stream_leader(",".join(relays))
    rest = [i for i in range(3) if i != cut]
    nc = await connected(",".join(relays[i] for i in rest))  # the publisher's: the majority
    try:
        local = f"nats://127.0.0.1:{NATS_PORT}"
        mode = ("--shared-feed", shared_feed)
        g0 = await start_gateway(network, spaces[cut], local, tmp_path, "g0", *mode)
        g1_nats = f"{local},nats://{address(rest[1], rest[0])}:{NATS_PORT}"
        g1 = await start_gateway(network, spaces[rest[0]], g1_nats, tmp_path, "g1", *mode)
        cut_links = [links[(min(cut, i), max(cut, i))] for i in rest]
        js = nc.jetstream()
        bounds = Bounds(not_ready=END_BOUND + SLACK, stores=60, ready_again=30)
        print(await _partition_and_heal(js, cut_links, spaces[cut], (g0, g1), bounds))
        assert (await js.stream_info(StreamSettings().name)).config.num_replicas == 3
    finally:
        await nc.close()


async def _stream_leader(urls: str) -> int:
    """Once the cluster has the stream (replicas 3) and it has a leader: which node."""
    nc = await connected(urls)
    leader: list[str] = []

    async def led() -> bool:
        if not await stream_ensured(nc.jetstream(), StreamSettings(replicas=3)):
            return False
        cluster = (await nc.jetstream().stream_info(StreamSettings().name)).cluster
        leader[:] = [cluster.leader] if cluster and cluster.leader else []
        return bool(leader)

    try:
        await eventually(led, within=30, what="the cluster has the stream, and it a leader")
    finally:
        await nc.close()
    return int(leader[0].removeprefix("n"))


@dataclass(frozen=True)
class Bounds:
    """Seconds each stage may take: the cut side not ready, the publisher storing 40 more
    ticks while cut (a majority electing new leaders takes seconds), ready again."""

    not_ready: float
    stores: float
    ready_again: float


async def _partition_and_heal(
    js: JetStreamContext,
    links: list[Link],
    silenced: Namespace,
    urls: tuple[str, str],
    bounds: Bounds,
) -> str:
    """Cut `links` (silent on `silenced`'s side) while 3 clients stream from the first
    gateway of `urls` (the one cut off) and ticks are published; it must become not ready
    and end its streams (they resume on the other), then, restored, serve again by itself;
    every history exact. Returns the measured times."""
    cut_off, other = urls
    publisher = SteadyPublisher(js, SYMBOLS, rate=40)
    clients = [ResumingClient([cut_off, other]) for _ in range(3)]
    async with asyncio.TaskGroup() as tg:
        publishing = await stream_clients(tg, publisher, clients)
        loop = asyncio.get_running_loop()
        for link in links:
            await link.cut(silenced=silenced)
        cut_at = loop.time()
        await eventually(lambda: not_ready(cut_off), within=bounds.not_ready, what="not ready")
        not_ready_after = loop.time() - cut_at
        await eventually(
            lambda: all(f"{cut_off}: end" in c.session.endings for c in clients),
            within=END_BOUND + SLACK,
            what="its streams ended",
        )
        ended_after = loop.time() - cut_at
        count = len(publisher.sequences)
        await eventually(
            lambda: len(publisher.sequences) >= count + 40, within=bounds.stores, what="stored"
        )
        for link in links:
            await link.restore()
        await eventually(lambda: ready(cut_off), within=bounds.ready_again, what="ready again")
        fresh = ResumingClient([cut_off])  # a new stream served by it, live
        tg.create_task(fresh.run())
        await eventually(
            lambda: len(fresh.session.events) >= len(SYMBOLS) + 10,
            within=10,
            what="serving a new stream",
        )
        fresh.stop()
        # Right after a heal JetStream may still refuse a new consumer for a moment (a 503
        # with Retry-After, retried); once streaming, the new stream must keep going.
        ended = [e for e in fresh.session.endings if not e.endswith(": 503")]
        assert ended == [], "its new stream kept going"
        await finish_exactly(js, publisher, publishing, clients)
    return f"not ready after {not_ready_after:.1f} s, streams ended after {ended_after:.1f} s"
