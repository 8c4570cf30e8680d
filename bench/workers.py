"""The gateway under test as `python -m gateway --workers N`: its processes, its ops
ports (worker i answers /readyz and /metrics on the first + i) and its summed metrics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

from bench.processes import free_port, http_get, metric


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports."""
    while True:
        first = free_port()
        if first + count > 65536:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return first


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (a supervisor's workers, multiprocessing's
    resource tracker), read from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            parents[int(entry)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
    tree = [pid]
    for parent in tree:  # grows while it is walked: breadth first
        tree.extend(child for child, of in parents.items() if of == parent)
    return tree


def exited(pid: int) -> bool:
    """Whether `pid` has exited: gone, or a zombie nobody has reaped yet (its files, and
    so its sockets, are closed before it becomes one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(b")") + 2 :].split()[0] in (b"Z", b"X")


async def wait_exited(pids: list[int], timeout: float) -> bool:
    """Wait until every one of `pids` has exited, at most `timeout` seconds; whether
    they all did."""
    deadline = time.monotonic() + timeout
    while not all(exited(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def per_port_metric(ports: list[int], name: str) -> list[float | None]:
    """An unlabelled sample from the /metrics of each of `ports` (None: none there)."""
    values: list[float | None] = []
    for port in ports:
        status, text = await http_get(port, "/metrics")
        values.append(metric(text, name) if status == 200 else None)
    return values


async def summed_metric(ports: list[int], name: str) -> float | None:
    """An unlabelled sample summed over the /metrics of `ports` (None: one has none)."""
    values = await per_port_metric(ports, name)
    return None if None in values else sum(v for v in values if v is not None)
