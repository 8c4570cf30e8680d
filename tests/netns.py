"""Network namespaces for partition tests: processes on links that can go silent.

A `Network` creates uniquely named namespaces and veth links between them, with addresses
from 10.0.0.0/8 that exist only inside those namespaces; nothing is added to this machine's
own namespace. `Link.cut()` sets one end down: the other side's packets are then dropped
without a RST or an ICMP error, its established connections hang and its new connections
time out, as across a real partition. `Network.relay()` lets the tests' own clients reach a
process inside a namespace (tests.netns_relay) on a path no cut touches. Closing the network
kills what it started and deletes its namespaces (their links go with them), on every exit.

Needs root and iproute2's `ip`; `unavailable()` says why not.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PR_SET_PDEATHSIG = 1


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "no `ip` (apt-get install -y iproute2; CI installs it)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"pt{secrets.token_hex(3)}probe"  # e.g. a container without CAP_SYS_ADMIN
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], check=True)
    return None


def _die_with_parent() -> None:
    """In a child before exec: SIGKILL when the test process dies, however it dies, so
    that no server or relay outlives a killed test run (it survives exec)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


async def ip(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {err.decode().strip()}")


async def _mac(end: End) -> str:
    process = await asyncio.create_subprocess_exec(
        "ip", "-n", end.namespace.name, "-j", "link", "show", "dev", end.device,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    address: str = json.loads(out)[0]["address"]
    return address


@dataclass(frozen=True)
class Namespace:
    name: str

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


@dataclass(frozen=True)
class End:
    namespace: Namespace
    device: str
    address: str  # without the prefix length


@dataclass(frozen=True)
class Link:
    """A veth pair; each end has an address of one /30 inside its namespace."""

    a: End
    b: End

    def end_in(self, namespace: Namespace) -> End:
        return self.a if self.a.namespace == namespace else self.b

    def peer_of(self, namespace: Namespace) -> End:
        return self.b if self.a.namespace == namespace else self.a

    async def cut(self, silenced: Namespace) -> None:
        """Silence the link as seen from `silenced`: the far end goes down, so what
        `silenced` sends is dropped and its connects time out (no RST, no unreachable)."""
        far = self.peer_of(silenced)
        await ip("-n", far.namespace.name, "link", "set", far.device, "down")

    async def restore(self) -> None:
        for end in (self.a, self.b):
            await ip("-n", end.namespace.name, "link", "set", end.device, "up")


class Network:
    """`async with Network() as net:` namespaces, links and processes, all removed after."""

    def __init__(self) -> None:
        self._tag = secrets.token_hex(3)  # in every name: parallel runs never collide
        self._subnet = (random.randrange(256), random.randrange(256))
        self._links = 0
        self.namespaces: list[Namespace] = []
        self.processes: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Network:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def namespace(self) -> Namespace:
        namespace = Namespace(f"pt{self._tag}n{len(self.namespaces)}")
        await ip("netns", "add", namespace.name)
        self.namespaces.append(namespace)
        await ip("-n", namespace.name, "link", "set", "lo", "up")
        return namespace

    async def link(self, first: Namespace, second: Namespace) -> Link:
        number = self._links
        self._links += 1
        if number >= 64:
            raise ValueError("at most 64 links per network (one /24 of /30s)")
        x, y = self._subnet
        ends = [
            End(namespace, f"v{self._tag}{number}{side}", f"10.{x}.{y}.{4 * number + i}")
            for i, (namespace, side) in enumerate(((first, "a"), (second, "b")), start=1)
        ]
        a, b = ends
        await ip(
            "link", "add", a.device, "netns", a.namespace.name,
            "type", "veth", "peer", "name", b.device, "netns", b.namespace.name,
        )  # fmt: skip
        for end in ends:
            await ip(
                "-n", end.namespace.name, "addr", "add", f"{end.address}/30", "dev", end.device
            )
            await ip("-n", end.namespace.name, "link", "set", end.device, "up")
        # Each end knows the other's MAC for good: with the far end down, an ARP query
        # going unanswered would fail connects at once (EHOSTUNREACH), not silently.
        for end, other in ((a, b), (b, a)):
            mac = await _mac(other)
            await ip(
                "-n", end.namespace.name, "neigh", "replace", other.address,
                "lladdr", mac, "dev", end.device, "nud", "permanent",
            )  # fmt: skip
        return Link(a, b)

    async def start(
        self,
        namespace: Namespace,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
    ) -> asyncio.subprocess.Process:
        """A process inside `namespace`, killed when the network closes."""
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                *namespace.command(*argv),
                env={**os.environ, **(env or {})},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=_die_with_parent,
            )
        self.processes.append(process)
        return process

    async def relay(self, namespace: Namespace, port: int, host: str = "127.0.0.1") -> int:
        """A port on this machine's loopback that reaches host:port inside `namespace`."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.netns_relay", namespace.name, host, str(port),
            stdout=asyncio.subprocess.PIPE, preexec_fn=_die_with_parent,
        )  # fmt: skip
        self.processes.append(process)
        assert process.stdout is not None
        async with asyncio.timeout(10):
            line = await process.stdout.readline()
        if not line.strip():
            raise OSError(f"the relay into {namespace.name} did not start")
        return int(line)

    async def close(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()
            await process.wait()
        self.processes.clear()
        for namespace in self.namespaces:
            try:
                await ip("netns", "delete", namespace.name)
            except OSError as exc:  # one left behind must not hide the others' removal
                print(f"netns: {exc}", file=sys.stderr)
        self.namespaces.clear()
