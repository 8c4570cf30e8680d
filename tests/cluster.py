"""The deployment's topology as real processes: a 3-node NATS JetStream cluster with routes
(optionally running a deployed nats.conf), and publisher processes configured by env."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx
import nats
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from contracts.errors import StreamConfigError
from contracts.nats_options import tls_context
from contracts.stream import StreamSettings, ensure_stream
from tests.nats_pki import MOUNT, Pki, write_pki
from tests.servers import BIN, eventually, free_port

CLUSTER_NAME = "test"


class PortTakenError(OSError):
    """A node could not listen: another process took a port between free_port() and bind."""


class ConfigShapeError(AssertionError):
    """The NATS config no longer has a line the local rewrite expects."""


def local_config(
    template: str, node: NatsNode, nodes: list[NatsNode], tls_root: Path | None = None
) -> str:
    """A Kubernetes `nats.conf` made to run here: every address on loopback with the node's
    own ports, the store and pid file in its directory, routes to the other processes, the
    TLS Secrets' mount point at `tls_root`. Everything else (JetStream limits, sync_interval,
    lame duck, users, TLS settings) stays as deployed."""

    def sub(pattern: str, replacement: str, text: str, flags: int = re.M) -> str:
        text, count = re.subn(pattern, lambda _: replacement, text, flags=flags)
        if not count:
            raise ConfigShapeError(f"no line matches {pattern!r} in the NATS config")
        return text

    text = sub(r"^listen:\s*\S+", f"listen: 127.0.0.1:{node.port}", template)
    text = sub(r"^http:\s*\S+", f"http: 127.0.0.1:{node.monitor_port}", text)
    text = sub(r"^pid_file:\s*\S+", f'pid_file: "{node.directory / "nats.pid"}"', text)
    text = sub(r"^[ \t]*store_dir:\s*\S+", f'  store_dir: "{node.store}"', text)
    if MOUNT in text:
        if tls_root is None:
            raise ConfigShapeError(f"the NATS config reads TLS files under {MOUNT}: pass tls_root")
        text = re.sub(rf"{re.escape(MOUNT)}(/\S+)", lambda m: f'"{tls_root}{m[1]}"', text)
    if re.search(r"^cluster\s*\{", text, re.M):
        text = sub(r"^[ \t]+listen:\s*\S+", f"  listen: 127.0.0.1:{node.cluster_port}", text)
        routes = re.findall(r"nats://nats-(\d+)\.[\w.-]+:\d+", text)
        if sorted(int(i) for i in routes) != list(range(len(nodes))):
            raise ConfigShapeError(f"routes {routes} are not one per node of {len(nodes)}")
        for i, other in enumerate(nodes):
            text = sub(
                rf"nats://nats-{i}\.[\w.-]+:\d+", f"nats://127.0.0.1:{other.cluster_port}", text
            )
    return text


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def stream_ensured(js: JetStreamContext, stream: StreamSettings) -> bool:
    """Whether the cluster has `stream` as it should be: False while it elects a leader."""
    try:
        await ensure_stream(js, stream)
    except (NatsError, TimeoutError, StreamConfigError):
        return False
    return True


class NatsNode:
    """One `nats-server` of the cluster; stop, kill and start keep its ports and store."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.port = self.cluster_port = self.monitor_port = 0  # set by the cluster
        self.store = directory / "jetstream"
        self.log = directory / "nats.log"
        self.config: Path | None = None  # a nats.conf to run, else plain flags
        self.env: dict[str, str] = {}
        self.routes: list[str] = []
        self.process: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        server = str(BIN / "nats-server")
        if self.config is not None:
            return [server, "-c", str(self.config), "-l", str(self.log)]
        return [
            server,
            "-n",
            self.name,
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
            "-js",
            "-sd",
            str(self.store),
            "--cluster_name",
            CLUSTER_NAME,
            "--cluster",
            f"nats://127.0.0.1:{self.cluster_port}",
            "--routes",
            ",".join(self.routes),
            "-l",
            str(self.log),
        ]

    async def start(self) -> None:
        assert self.process is None, f"{self.name} already running"
        self.store.mkdir(parents=True, exist_ok=True)
        logged = self.log.stat().st_size if self.log.exists() else 0
        self.process = await asyncio.create_subprocess_exec(
            *self.command(),
            env={**os.environ, "SERVER_NAME": self.name, **self.env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        process = self.process

        async def accepts() -> bool:
            if process.returncode is not None:
                self.process = None
                with self.log.open("rb") as log:
                    log.seek(logged)
                    if b"address already in use" in log.read():
                        raise PortTakenError(f"{self.name}: a port was taken; see {self.log}")
                raise AssertionError(f"{self.name} exited; see {self.log}")
            return await _accepts(self.port)

        await eventually(accepts, within=15, what=f"{self.name} accepts on {self.port}")

    async def meta_leader(self) -> str | None:
        """The JetStream meta leader this node knows of, once the cluster has all its peers."""
        url = f"http://127.0.0.1:{self.monitor_port}/jsz"
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                meta = (await http.get(url)).json().get("meta_cluster", {})
        except (httpx.TransportError, ValueError):
            return None
        leader = meta.get("leader")
        return leader if leader and meta.get("cluster_size") == len(self.routes) + 1 else None

    async def kill(self) -> None:
        """SIGKILL: no lame duck, no flush, as when a node's machine dies."""
        await self._end(signal.SIGKILL)

    async def stop(self) -> None:
        await self._end(signal.SIGTERM)

    async def _end(self, signum: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signum)
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None


class NatsCluster:
    """Three nodes routed to each other, each with its own store and ports. With `config`
    (the text of a deployed nats.conf) and `env` (the variables it references), every node
    runs that configuration, rewritten by `local_config`; when it reads TLS files, `pki` is a
    throwaway PKI of the same shape, and clients connect with their own certificates."""

    def __init__(
        self,
        directory: Path,
        size: int = 3,
        *,
        config: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.nodes = [NatsNode(f"n{i}", directory / f"n{i}") for i in range(size)]
        self._config = config
        self.pki: Pki | None = None
        if config is not None and MOUNT in config:
            self.pki = write_pki(directory / "pki")
        for node in self.nodes:
            node.env = dict(env or {})
        self._assign_ports()

    def _assign_ports(self) -> None:
        ports: set[int] = set()
        while len(ports) < 3 * len(self.nodes):
            ports.add(free_port())
        spare = sorted(ports)
        for node in self.nodes:
            node.port, node.cluster_port, node.monitor_port = spare[:3]
            spare = spare[3:]
        for node in self.nodes:
            node.routes = [
                f"nats://127.0.0.1:{other.cluster_port}"
                for other in self.nodes
                if other is not node
            ]
            if self._config is not None:
                node.directory.mkdir(parents=True, exist_ok=True)
                node.config = node.directory / "nats.conf"
                tls_root = self.pki.root if self.pki else None
                node.config.write_text(local_config(self._config, node, self.nodes, tls_root))

    def urls(self, user: str | None = None, password: str | None = None) -> str:
        """NATS_URL for clients: every node, so a client survives the loss of any one."""
        auth = f"{user}:{password}@" if user else ""
        return ",".join(f"nats://{auth}127.0.0.1:{node.port}" for node in self.nodes)

    async def start(self) -> None:
        """Start every node; if another process took one of the free ports meanwhile (this
        machine runs other tests), start again on new ones."""
        for attempt in range(3):
            taken = False
            try:
                async with asyncio.TaskGroup() as tg:
                    for node in self.nodes:
                        tg.create_task(node.start())
            except* PortTakenError:
                if attempt == 2:
                    raise
                taken = True
            if not taken:
                break
            await self.stop()
            self._assign_ports()
        await self.wait_healthy()

    async def wait_healthy(self, within: float = 30) -> None:
        async def one_leader() -> bool:
            leaders = await asyncio.gather(*(node.meta_leader() for node in self.nodes))
            return None not in leaders and len(set(leaders)) == 1

        await eventually(one_leader, within=within, what="every NATS node knows one meta leader")

    def tls_env(self, user: str) -> dict[str, str]:
        """NATS_TLS_* for a program running as `user` (none when the config has no TLS)."""
        return self.pki.client_env(user) if self.pki else {}

    async def connect(
        self, name: str, user: str | None = None, password: str | None = None
    ) -> NATS:
        tls = self.tls_env(user or "admin")
        return await nats.connect(
            self.urls(user, password).split(","),
            name=name,
            tls=tls_context(tls["NATS_TLS_CA"], tls["NATS_TLS_CERT"], tls["NATS_TLS_KEY"])
            if tls
            else None,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            connect_timeout=2,
        )

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))


def _log_file(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


class PublisherProcess:
    """`python -m publisher`, configured by environment variables as its Deployment is."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = {**os.environ, **env}
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, *args: str) -> None:
        with _log_file(self.log) as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "publisher",
                *args,
                env=self.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )

    async def stop(self, timeout: float = 20) -> int:
        """SIGTERM, as Kubernetes stops a pod; returns the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                return await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
