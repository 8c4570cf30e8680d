"""The chaos topology with partitions: each NATS node in a network namespace of its own
(tests.netns), a veth link between each pair carrying the cluster's routes, gateway i
beside node i (its own node on loopback, the others over the links). `cut_node(i)` sets
node i's two links down: its routes and its gateway's connections to the other nodes go
silent (no RST), while the gateway still reaches its own, leaderless node. Publishers,
clients and the run's own NATS connection reach the namespaces through loopback relays,
which no cut touches. Needs root and `ip` (tests.netns.unavailable says why not).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

from bench.processes import BIN, START_TIMEOUT, Process, http_get, wait_until_ready
from resilience.rig import Gateway
from resilience.topology import GATEWAY_ARGS, publishers
from tests.netns import Link, Namespace, Network

NATS_PORT, CLUSTER_PORT, MONITOR_PORT, HTTP_PORT = 4222, 6222, 8222, 8080


class Node(Process):
    """nats-server inside a namespace, reached from here on `port` (a relay)."""

    def __init__(self, index: int, space: Namespace, routes: list[str], directory: Path) -> None:
        argv = [str(BIN / "nats-server"), "-n", f"n{index}", "-a", "0.0.0.0"]
        argv += ["-p", str(NATS_PORT), "-m", str(MONITOR_PORT), "-js"]
        argv += ["-sd", str(directory / f"n{index}"), "--no_advertise", "--cluster_name", "chaos"]
        argv += ["--cluster", f"nats://0.0.0.0:{CLUSTER_PORT}", "--routes", ",".join(routes)]
        super().__init__(f"n{index}", space.command(*argv), directory / f"n{index}.log")
        self.port = self.monitor = 0

    async def start(self, *, piped: bool = False, env: Mapping[str, str] | None = None) -> None:
        await super().start(piped=piped, env=env)
        # The relay accepts at once whether or not the node is up: ask the node itself.
        await wait_until_ready(self.monitor, "/varz", START_TIMEOUT, self)

    async def meta_leader(self) -> str | None:
        status, body = await http_get(self.monitor, "/jsz", timeout=2)
        if status != 200:
            return None
        meta = json.loads(body).get("meta_cluster", {})
        leader = meta.get("leader")
        return leader if leader and meta.get("cluster_size") == 3 else None


class Namespaced:
    partitions = True

    def __init__(self, directory: Path, gateways: int, symbol_count: int, rate: float) -> None:
        self.directory = directory
        self.gateway_count = gateways
        self.symbol_count = symbol_count
        self.rate = rate
        self.net = Network()
        self.spaces: list[Namespace] = []
        self.links: dict[tuple[int, int], Link] = {}
        self.nodes: list[Node] = []
        self.gateways: list[Gateway] = []
        self.publishers = publishers("", symbol_count, rate, directory)  # URL set at start

    def _address(self, node: int, seen_from: int) -> str:
        link = self.links[(min(node, seen_from), max(node, seen_from))]
        return link.end_in(self.spaces[node]).address

    async def start(self) -> None:
        self.spaces = [await self.net.namespace() for _ in range(3)]
        for i, j in ((0, 1), (0, 2), (1, 2)):
            self.links[(i, j)] = await self.net.link(self.spaces[i], self.spaces[j])
        for i, space in enumerate(self.spaces):
            others = [j for j in range(3) if j != i]
            routes = [f"nats://{self._address(j, i)}:{CLUSTER_PORT}" for j in others]
            node = Node(i, space, routes, self.directory)
            node.port = await self.net.relay(space, NATS_PORT)
            node.monitor = await self.net.relay(space, MONITOR_PORT)
            self.nodes.append(node)
        await asyncio.gather(*(node.start() for node in self.nodes))
        await self.wait_healthy(60)
        urls = ",".join(self.nats_urls())
        for publisher in self.publishers:
            publisher.argv[publisher.argv.index("--nats-url") + 1] = urls
            await publisher.start()
        for i in range(self.gateway_count):
            await self._add_gateway(i)

    async def _add_gateway(self, i: int) -> None:
        """Gateway i inside node i's namespace: its node first, then the others."""
        space = self.spaces[i % 3]
        local = f"nats://127.0.0.1:{NATS_PORT}"
        others = [f"nats://{self._address(j, i % 3)}:{NATS_PORT}" for j in range(3) if j != i % 3]
        gateway = Gateway(f"gw{i}", ",".join([local, *others]), self.directory, GATEWAY_ARGS)
        inner = gateway.argv[gateway.argv.index("--port") + 1]
        gateway.argv = space.command(*gateway.argv)
        gateway.port = await self.net.relay(space, int(inner))
        self.gateways.append(gateway)
        await gateway.start()

    async def stop(self) -> None:
        for process in (*self.publishers, *self.gateways, *self.nodes):
            await process.stop()
        await self.net.close()

    async def kill_node(self, index: int) -> None:
        await self.nodes[index].stop()

    async def start_node(self, index: int) -> None:
        await self.nodes[index].start()

    async def cut_node(self, index: int) -> None:
        for (i, j), link in self.links.items():
            if index in (i, j):
                await link.cut(silenced=self.spaces[index])

    async def heal_node(self, index: int) -> None:
        for (i, j), link in self.links.items():
            if index in (i, j):
                await link.restore()

    async def wait_healthy(self, within: float) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            leaders = await asyncio.gather(*(node.meta_leader() for node in self.nodes))
            if None not in leaders and len(set(leaders)) == 1:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no single JetStream meta leader after {within} s: {leaders}")
            await asyncio.sleep(0.2)

    def nats_urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{node.port}" for node in self.nodes]

    def client_urls(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", g.port) for g in self.gateways]
