"""The benchmark with `--workers 2`: the gateway under test runs as a supervisor and two
workers; the harness counts all of them (memory, CPU, metrics summed over each worker's
ops port), and the loaders connect from addresses of their own. Speed is never asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import BenchConfig
from bench.environment import Environment, client_spec
from bench.processes import Pinning, http_get, metric, rss_bytes
from bench.workloads import seed
from tests.servers import eventually

pytestmark = pytest.mark.timeout(90)
CLIENTS = 40  # all on one worker: a chance of 2 ** -39


async def test_the_gateway_runs_two_workers_and_the_harness_counts_both() -> None:
    config = BenchConfig(loaders=2, workers=2, gc_probe=False)
    async with Environment(config, "gateway", Pinning(None, None)) as env:
        pids = env.server_pids()
        assert pids[0] == env.server.pid
        assert len(pids) >= 3  # the supervisor and two workers (and a resource tracker)
        assert env.server_rss() > rss_bytes(env.server.pid)  # the workers counted too
        assert set(env.meter().pids["server"]) == set(pids)
        await seed(env)
        opened = await env.open([client_spec(i, config) for i in range(CLIENTS)])
        assert opened["opened"] == CLIENTS, opened["statuses"]
        per_worker = []
        for port in env.metrics_ports():
            status, text = await http_get(port, "/metrics")
            assert status == 200
            per_worker.append(metric(text, "gateway_open_streams"))
        assert len(per_worker) == 2
        assert all(per_worker), per_worker  # the kernel gave each worker some
        assert (await env.gateway_gauges())["open_streams"] == CLIENTS
        tally, _ = await env.settle(config.settle_timeout)
        assert tally.received >= CLIENTS  # each got its symbols' latest prices
        assert (tally.lost, tally.duplicated, tally.unexpected) == (0, 0, 0)
    # Its workers are killed with it, at once (left to drain, they would load the next
    # workload).
    await eventually(lambda: all(map(_gone, pids)), within=2, what="every worker gone")
    # ... and gone before the loaders closed: no loader port is left in TIME_WAIT, where
    # the next workload's loaders could not bind it (those of one worker: the next
    # workload's connections from that address then went mostly to the other worker).
    assert _loader_ports_in_time_wait(env.port) == []


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie that nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(b")") + 2 :].startswith(b"Z")


def _loader_ports_in_time_wait(port: int) -> list[str]:
    """Local addresses of this host's TCP sockets in TIME_WAIT towards 127.0.0.1:`port`
    from another address (the loaders'; the server's own are on 127.0.0.1:`port`)."""
    held = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if state == "06" and remote == f"0100007F:{port:04X}" and local[:8] != "0100007F":
            held.append(local)
    return held


def test_pinning_leaves_a_cpu_for_the_rest_or_pins_nothing() -> None:
    plan = Pinning.plan(True, server_cpus=64)  # more workers than any CI machine's CPUs
    assert plan.server is None
    assert plan.others is None
