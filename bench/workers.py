"""The gateway under test as `python -m gateway --workers N`: its processes, its ops
ports (worker i answers /readyz and /metrics on the first + i) and its summed metrics."""

from __future__ import annotations

import contextlib
import os
import socket

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


async def summed_metric(ports: list[int], name: str) -> float | None:
    """An unlabelled sample summed over the /metrics of `ports` (None: one has none)."""
    total = 0.0
    for port in ports:
        status, text = await http_get(port, "/metrics")
        value = metric(text, name) if status == 200 else None
        if value is None:
            return None
        total += value
    return total
