"""A NATS node dies while it carries deliveries to the gateway.

The live feed's consumer runs on one node of a 3-node cluster, the gateway is connected to
another. What the consumer has handed to that node and the node has not yet passed on dies
with it: JetStream counts it delivered (the feed does not acknowledge), so a consumer that
merely carried on after the reconnect would skip it. The feed must notice the gap in the
consumer's delivery sequence and take those messages again; clients see every tick once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from contracts.stream import StreamSettings
from tests.cluster import NatsCluster, NatsNode, stream_ensured
from tests.processes import GatewayProcess
from tests.resuming_client import ResumingClient
from tests.servers import eventually
from tests.ticks import publish

SYMBOLS = ("AAPL", "MSFT", "GOOG", "NVDA")
STREAM = StreamSettings(replicas=3)
FROZEN = 0.8  # s the node holds deliveries before it dies: below the feed's silence probe
GATEWAY_ARGS = ("--nats-ping-interval", "2", "--heartbeat", "1")


@dataclass
class Placement:
    gateway: GatewayProcess
    node: NatsNode  # the gateway's node: neither the stream leader nor the feed's consumer


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "nats")
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


async def _hosts(js: JetStreamContext, gateway_id: str) -> set[str]:
    """The nodes of the stream leader and of the gateway's live-feed consumer, once that
    consumer is there."""
    async with asyncio.timeout(10):
        while True:
            info = await js.stream_info(STREAM.name)
            for consumer in await js.consumers_info(STREAM.name):
                if consumer.name.startswith(f"live-{gateway_id}-") and consumer.cluster:
                    assert info.cluster is not None
                    return {str(info.cluster.leader), str(consumer.cluster.leader)}
            await asyncio.sleep(0.05)


async def _place(cluster: NatsCluster, js: JetStreamContext) -> Placement:
    """A gateway connected to a node that carries deliveries but holds neither the stream
    nor the feed's consumer (JetStream places them; try until they fall elsewhere)."""
    for attempt in range(12):
        node = cluster.nodes[attempt % len(cluster.nodes)]
        gateway_id = f"loss{attempt}"
        gateway = GatewayProcess(
            f"nats://127.0.0.1:{node.port}",
            *GATEWAY_ARGS,
            "--gateway-id",
            gateway_id,
            env={"STREAM_REPLICAS": "3"},
        )
        await gateway.start()
        if node.name not in await _hosts(js, gateway_id):
            return Placement(gateway, node)
        await gateway.stop()
    raise AssertionError("JetStream kept placing the stream or the feed on the gateway's node")


async def _publish_until(js: JetStreamContext, stop: asyncio.Event) -> None:
    """~100 ticks a second round the symbols; a tick whose ack is lost is sent again under
    the same message id (JetStream keeps one)."""
    count = 0
    while not stop.is_set():
        count += 1
        symbol = SYMBOLS[count % len(SYMBOLS)]
        while True:
            try:
                await publish(js, symbol, f"{100 + count % 50}.25", msg_id=f"loss-{count}")
                break
            except (NatsError, TimeoutError):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.01)


async def test_deliveries_lost_with_a_dead_node_are_taken_again(cluster: NatsCluster) -> None:
    admin = await cluster.connect("node-loss-test")
    placement: Placement | None = None
    publisher: NATS | None = None
    try:
        js = admin.jetstream(timeout=5)
        await eventually(
            lambda: stream_ensured(js, STREAM), within=30, what="PRICES stream with 3 replicas"
        )
        placement = await _place(cluster, js)
        survivors = [n for n in cluster.nodes if n is not placement.node]
        publisher = await nats.connect(
            [f"nats://127.0.0.1:{n.port}" for n in survivors], max_reconnect_attempts=-1
        )
        pub_js = publisher.jetstream(timeout=2)
        client = ResumingClient([placement.gateway.url])
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(client.run())
            # Streaming before the ticks start, so its history is every one of them.
            await publish(pub_js, SYMBOLS[0], msg_id="loss-first")
            await eventually(lambda: bool(client.session.events), within=10, what="a first tick")
            publishing = tg.create_task(_publish_until(pub_js, stop))
            await eventually(lambda: len(client.session.events) >= 50, within=10, what="ticks")
            # The node stops passing deliveries on, then dies with what it holds.
            assert placement.node.process is not None
            placement.node.process.send_signal(signal.SIGSTOP)
            await asyncio.sleep(FROZEN)
            await placement.node.kill()
            await eventually(
                lambda: "NATS reconnected" in placement.gateway.log.read_text(),
                within=15,
                what="the gateway reconnected to another node",
            )
            await asyncio.sleep(1.0)
            stop.set()
            await publishing
            last = (await pub_js.stream_info(STREAM.name)).state.last_seq
            await eventually(
                lambda: bool(client.session.events) and client.session.sequences[-1] >= last,
                within=15,
                what=f"the client reaching {last}",
            )
            client.stop()
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{placement.gateway.url}/metrics")).text
        # Else the node took nothing with it, and the run proved nothing.
        assert re.search(r"^gateway_deliveries_lost_total [1-9]", metrics, re.M), metrics[-400:]
        received = client.session.sequences
        first = received[0]
        missing = sorted(set(range(first, last + 1)) - set(received))
        assert not missing, f"{len(missing)} ticks never reached the client: {missing[:20]}"
        assert received == list(range(first, last + 1)), "a tick came twice or out of order"
    finally:
        if publisher is not None:
            await publisher.close()
        if placement is not None:
            await placement.gateway.stop()
        with contextlib.suppress(NatsError):
            await admin.close()
