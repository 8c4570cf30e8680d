"""`python -m resilience.chaos` (`make chaos`): faults against a 3-node cluster, histories checked.

A 3-node NATS cluster (tests.cluster) with the stream at 3 replicas, two gateways and two
publishers on every node's URL, clients spread over both gateways (reconnecting to the
next one with Last-Event-ID), and a seeded schedule of faults (resilience.schedule)
played in real time. Then everything is started again, publishing stops, every client
catches up, and every client's history is checked against what the stream stored. Exit 1
if any history is not exact or a gateway died on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats

from resilience.crowd import Crowd, Mix
from resilience.history import judge, read_stored
from resilience.namespaces import Namespaced
from resilience.rig import SIGTERM_STATUS, STREAM, SUBJECTS, cancel_on_sigterm, symbols
from resilience.schedule import PARTITION, Fault, Shape, plan
from resilience.topology import REPLICAS, Loopback, Topology


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m resilience.chaos", description=__doc__)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seconds", type=float, default=180.0, help="how long faults are played")
    p.add_argument("--gateways", type=int, default=2)
    p.add_argument("--symbols", type=int, default=10)
    p.add_argument("--rate", type=float, default=5.0, help="ticks/s per symbol")
    p.add_argument("--steady", type=int, default=30)
    p.add_argument("--resuming", type=int, default=30)
    p.add_argument("--churn", type=float, default=1.0, help="short-lived clients per second")
    p.add_argument("--symbols-per-client", type=int, default=3)
    p.add_argument(
        "--partitions",
        action="store_true",
        help="nodes in network namespaces, and node partitions among the faults (root, ip)",
    )
    p.add_argument("--plan-only", action="store_true", help="print the schedule and exit")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--keep", type=Path, help="a new directory to keep logs and stores in")
    args = p.parse_args(argv)
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        p.error(f"--keep {args.keep}: not empty (a run starts from empty stores)")
    return args


class Chaos:
    def __init__(self, args: argparse.Namespace, directory: Path) -> None:
        self.args = args
        where = Namespaced if args.partitions else Loopback
        self.topology: Topology = where(directory, args.gateways, args.symbols, args.rate)
        shape = Shape(args.seconds, args.gateways, 3, 2, partitions=args.partitions)
        self.faults = plan(args.seed, shape)
        self.played: list[str] = []
        self.died: list[str] = []  # gateways that exited without being told to
        self.stopped: set[str] = set()  # gateways down on purpose until started again
        self.coming_back: dict[str, asyncio.Task[None]] = {}  # restarts under way, by name

    async def run(self) -> dict[str, Any]:
        try:
            await self.topology.start()
            args = self.args
            mix = Mix(args.steady, args.resuming, 0, args.churn, args.symbols_per_client)
            urls = self.topology.client_urls()
            # The crowd once the gateways' addresses are known (relays, with namespaces).
            return await self._load(Crowd(urls, symbols(args.symbols), mix, args.seed))
        finally:
            await self.topology.stop()

    async def _load(self, crowd: Crowd) -> dict[str, Any]:
        # Its own connection rides out node kills quietly: the report says what happened.
        nc = await nats.connect(
            self.topology.nats_urls(),
            name="chaos",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            error_cb=_quiet,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(crowd.run())
                await self._play()
                await self.topology.wait_healthy(60)
                for publisher in self.topology.publishers:
                    await publisher.stop(signal.SIGTERM)
                stored = await read_stored(nc.jetstream(), STREAM, SUBJECTS)
                settled = await crowd.settle(stored)
                crowd.stop()
            return self._report(crowd, judge(crowd.histories(), stored), settled)
        finally:
            await nc.close()

    async def _play(self) -> None:
        """Each fault at its time; restarts run beside; returns once all are back up."""
        started = time.monotonic()
        async with asyncio.TaskGroup() as restarts:
            for fault in self.faults:
                await asyncio.sleep(max(0.0, started + fault.at - time.monotonic()))
                self._notice_deaths()
                self.played.append(f"{time.monotonic() - started:7.1f} s  {fault.describe()}")
                await self._strike(fault, restarts)
            await asyncio.sleep(max(0.0, started + self.args.seconds - time.monotonic()))
        self._notice_deaths()

    async def _strike(self, fault: Fault, restarts: asyncio.TaskGroup) -> None:
        topology = self.topology
        if fault.kind == "publisher-restart":
            await topology.publishers[fault.target].restart(signal.Signals[fault.signal])
            return
        start: Callable[[], Awaitable[None]]
        if fault.kind.startswith("nats"):
            name = f"n{fault.target}"
            await self._back(name)
            if fault.kind == PARTITION:
                await topology.cut_node(fault.target)
                start = functools.partial(topology.heal_node, fault.target)
            else:
                await topology.kill_node(fault.target)
                start = functools.partial(topology.start_node, fault.target)
        else:
            gateway = topology.gateways[fault.target]
            name = gateway.name
            await self._back(name)
            self.stopped.add(name)
            await gateway.stop(signal.Signals[fault.signal])
            start = gateway.start
        self.coming_back[name] = restarts.create_task(self._later(fault.down, start, name))

    async def _back(self, name: str) -> None:
        """Wait until `name` is up again from an earlier fault (a slow start-up under load
        makes a fault late rather than hit a process still starting)."""
        if (task := self.coming_back.pop(name, None)) is not None:
            await asyncio.shield(task)

    async def _later(self, seconds: float, start: Callable[[], Awaitable[None]], name: str) -> None:
        await asyncio.sleep(seconds)
        await start()
        self.stopped.discard(name)

    def _notice_deaths(self) -> None:
        """A gateway that exited without being told to is a failure (noted once; it stays
        down until a fault of the schedule stops and starts it again)."""
        for gateway in self.topology.gateways:
            process = gateway.process
            if process is None or process.returncode is None or gateway.name in self.stopped:
                continue
            death = f"{gateway.name}: exit {process.returncode}"
            if death not in self.died:
                self.died.append(death)

    def _report(self, crowd: Crowd, verdict: Any, settled: float) -> dict[str, Any]:
        passed = verdict.exact and not self.died
        lines = [
            f"chaos: seed {self.args.seed}, {self.args.seconds:.0f} s, {len(self.faults)} faults, "
            f"{self.args.gateways} gateways, 3 NATS nodes (stream R{REPLICAS}), 2 publishers, "
            + ("nodes in network namespaces" if self.args.partitions else "all on loopback"),
            "faults played (actual time, planned time, what):",
            *self.played,
            crowd.describe(),
            f"clients caught up {settled:.1f} s after publishing stopped",
            verdict.describe(),
            *(f"  {trace}" for trace in verdict.traces),
            f"gateways that died on their own: {', '.join(self.died) or 'none'}",
            f"verdict: {'PASS' if passed else 'FAIL'}",
        ]
        return {
            "passed": passed,
            "exact": verdict.exact,
            "seed": self.args.seed,
            "faults": [f.describe() for f in self.faults],
            "tally": verdict.tally.__dict__,
            "resets": verdict.resets,
            "unjustified_resets": verdict.unjustified_resets,
            "died": self.died,
            "lines": lines,
        }


async def _quiet(error: Exception) -> None:
    pass


async def main(argv: list[str] | None = None) -> int:
    cancel_on_sigterm()
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="chaos-") as scratch:
        directory = args.keep or Path(scratch)  # logs and stores, kept with --keep
        directory.mkdir(parents=True, exist_ok=True)
        chaos = Chaos(args, directory)
        print(f"schedule (seed {args.seed}):", *(f.describe() for f in chaos.faults), sep="\n")
        if args.plan_only:
            return 0
        report = await chaos.run()
    print("\n".join(report["lines"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except asyncio.CancelledError:  # by SIGTERM, every process of the run stopped
        sys.exit(SIGTERM_STATUS)
