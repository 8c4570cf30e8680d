"""Where the chaos run's processes live: on loopback (`Loopback`), or each NATS node in a
network namespace of its own so that links can be cut (resilience.namespaces). Both give
the run the same handles: gateways and publishers to stop and start, nodes to kill and
start, the URLs the clients and the run's own NATS connection use."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from resilience.rig import Gateway, Publisher, symbols
from tests.cluster import NatsCluster

REPLICAS = "3"
# Both gateways: streams end quickly on SIGTERM, and a silent link is noticed within
# seconds (pings every second, two may go unanswered), as the partition tests set them.
GATEWAY_ARGS = ["--stream-replicas", REPLICAS, "--drain-period", "1"]
GATEWAY_ARGS += ["--nats-ping-interval", "1", "--nats-timeout", "2"]


class Topology(Protocol):
    gateways: list[Gateway]
    publishers: list[Publisher]
    partitions: bool  # whether cut_node() can work here

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def kill_node(self, index: int) -> None: ...
    async def start_node(self, index: int) -> None: ...
    async def cut_node(self, index: int) -> None: ...
    async def heal_node(self, index: int) -> None: ...
    async def wait_healthy(self, within: float) -> None: ...
    def nats_urls(self) -> list[str]: ...
    def client_urls(self) -> list[tuple[str, int]]: ...


def publishers(url: str, count: int, rate: float, directory: Path) -> list[Publisher]:
    """Publishers of the run: each its share of the symbols, on the R3 stream."""
    names = symbols(count)
    found = [Publisher(f"pub-{i}", url, names[i::2], rate, directory) for i in range(2)]
    for publisher in found:
        publisher.argv += ["--stream-replicas", REPLICAS]
    return found


class Loopback:
    """tests.cluster's 3 nodes on 127.0.0.1; gateways and publishers on every node's URL."""

    partitions = False

    def __init__(self, directory: Path, gateways: int, symbol_count: int, rate: float) -> None:
        self.cluster = NatsCluster(directory / "nats")
        url = self.cluster.urls()
        self.gateways = [Gateway(f"gw{i}", url, directory, GATEWAY_ARGS) for i in range(gateways)]
        self.publishers = publishers(url, symbol_count, rate, directory)

    async def start(self) -> None:
        await self.cluster.start()
        for process in (*self.gateways, *self.publishers):
            await process.start()

    async def stop(self) -> None:
        for process in (*self.publishers, *self.gateways):
            await process.stop()
        await self.cluster.stop()

    async def kill_node(self, index: int) -> None:
        await self.cluster.nodes[index].kill()

    async def start_node(self, index: int) -> None:
        await self.cluster.nodes[index].start()

    async def cut_node(self, index: int) -> None:
        raise NotImplementedError("partitions need network namespaces: --partitions")

    heal_node = cut_node

    async def wait_healthy(self, within: float) -> None:
        await self.cluster.wait_healthy(within=within)

    def nats_urls(self) -> list[str]:
        return self.cluster.urls().split(",")

    def client_urls(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", g.port) for g in self.gateways]
