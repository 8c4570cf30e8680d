"""`python -m resilience.soak` (`make soak`): one gateway under churn for a long time.

One nats-server, one gateway, two publishers; long-lived clients (steady, resuming every
few seconds, slow readers) and a stream of short-lived ones, for `--seconds` (default 30
minutes) after a warm-up; one publisher restarted every `--publisher-restart` seconds
(SIGTERM or SIGKILL, seeded). Every `--sample-interval` seconds the gateway's RSS, open
descriptors, asyncio tasks, open streams and the stream's JetStream consumers are sampled.
Then publishing stops, every client catches up, and the run fails (exit 1) if any sampled
series trends upward over its second half (resilience.trend) or any client's history is
not exact against the stream (resilience.history).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from resilience.crowd import Crowd, Mix
from resilience.history import judge as judge_histories
from resilience.history import read_stored
from resilience.rig import (
    SIGTERM_STATUS,
    STREAM,
    SUBJECTS,
    Gateway,
    Nats,
    Publisher,
    cancel_on_sigterm,
    counters,
    sample,
    symbols,
)
from resilience.trend import TOLERANCES, Trend
from resilience.trend import judge as judge_trend


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m resilience.soak", description=__doc__)
    p.add_argument("--seconds", type=float, default=1800.0, help="sampled run length")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before sampling starts")
    p.add_argument("--sample-interval", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--rate", type=float, default=4.0, help="ticks/s per symbol")
    p.add_argument("--steady", type=int, default=60)
    p.add_argument("--resuming", type=int, default=60)
    p.add_argument("--slow", type=int, default=4)
    p.add_argument("--churn", type=float, default=3.0, help="short-lived clients per second")
    p.add_argument("--symbols-per-client", type=int, default=3)
    p.add_argument("--publisher-restart", type=float, default=60.0, help="seconds between")
    p.add_argument(
        "--gateway-args",
        default="--send-timeout 4 --max-pending-bytes 65536",
        help="extra gateway flags",
    )
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    if "--workers" in args.gateway_args:
        p.error("the soak samples one gateway process: leave --workers at its default, 1")
    return args


class Soak:
    def __init__(self, args: argparse.Namespace, directory: Path) -> None:
        self.args = args
        self.names = symbols(args.symbols)
        self.nats = Nats(directory)
        self.gateway = Gateway("soak", self.nats.url, directory, args.gateway_args.split())
        self.publishers = [
            Publisher(f"pub-{i}", self.nats.url, self.names[i::2], args.rate, directory)
            for i in range(2)
        ]
        mix = Mix(args.steady, args.resuming, args.slow, args.churn, args.symbols_per_client)
        self.crowd = Crowd([("127.0.0.1", self.gateway.port)], self.names, mix, args.seed)
        self.rng = random.Random(args.seed + 1)
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.restarts: list[str] = []
        self.done = asyncio.Event()
        self.counters: dict[str, float] = {}
        self.gateway_env: dict[str, str] = {}  # e.g. PYTHONPATH, to inject a leak in a test

    async def run(self) -> dict[str, Any]:
        try:  # stopped on every way out, even while still starting
            await self.nats.start()
            await self.gateway.start(env=self.gateway_env)
            for publisher in self.publishers:
                await publisher.start()
            return await self._load()
        finally:
            for process in (*self.publishers, self.gateway):
                await process.stop(signal.SIGKILL)
            await self.nats.stop(signal.SIGTERM)

    async def _load(self) -> dict[str, Any]:
        nc = await nats.connect(self.nats.url, name="soak")
        try:
            js = nc.jetstream()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.crowd.run())
                tg.create_task(self._restarts())
                await asyncio.sleep(self.args.warmup)
                await self._sample(js)
                self.done.set()
                for publisher in self.publishers:
                    await publisher.stop(signal.SIGTERM)
                stored = await read_stored(js, STREAM, SUBJECTS)
                settled = await self.crowd.settle(stored)
                self.gateway.check_alive()
                self.counters = await counters(self.gateway)
                self.crowd.stop()
            return self._report(judge_histories(self.crowd.histories(), stored), settled)
        finally:
            await nc.close()

    async def _sample(self, js: Any) -> None:
        """Sample until the run's time is up (the first sample at its start)."""
        started = time.monotonic()
        while True:
            self.gateway.check_alive()
            self.samples.append((time.monotonic() - started, await sample(self.gateway, js)))
            left = self.args.seconds - (time.monotonic() - started)
            if left <= 0:
                return
            await asyncio.sleep(min(self.args.sample_interval, left))

    async def _restarts(self) -> None:
        every = self.args.publisher_restart
        while every and not self.done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await self.done.wait()
            if not self.done.is_set():
                publisher = self.rng.choice(self.publishers)
                sig = self.rng.choice((signal.SIGTERM, signal.SIGKILL))
                self.restarts.append(f"{publisher.name} {sig.name}")
                await publisher.restart(sig)

    def trends(self) -> list[Trend]:
        found = []
        for name, tolerance in TOLERANCES.items():
            series = [(t, v[name]) for t, v in self.samples if name in v]
            times, values = [t for t, _ in series], [v for _, v in series]
            found.append(judge_trend(name, times, values, tolerance))
        return found

    def _report(self, verdict: Any, settled: float) -> dict[str, Any]:
        trends = self.trends()
        leaking = [t.name for t in trends if t.upward]
        passed = verdict.exact and not leaking
        lines = [
            f"soak: {self.args.seconds:.0f} s sampled every {self.args.sample_interval:.0f} s "
            f"after {self.args.warmup:.0f} s of warm-up, seed {self.args.seed}",
            self.crowd.describe(),
            f"publisher restarts: {len(self.restarts)} ({', '.join(self.restarts) or 'none'})",
            f"clients caught up {settled:.1f} s after publishing stopped",
            "gateway: " + ", ".join(f"{k} {v:.0f}" for k, v in self.counters.items()),
            verdict.describe(),
            *(f"  {trace}" for trace in verdict.traces),
            *(trend.describe() for trend in trends),
            f"verdict: {'PASS' if passed else 'FAIL'}"
            + (f" (upward: {', '.join(leaking)})" if leaking else ""),
        ]
        return {
            "passed": passed,
            "exact": verdict.exact,
            "upward": leaking,
            "tally": verdict.tally.__dict__,
            "resets": verdict.resets,
            "unjustified_resets": verdict.unjustified_resets,
            "trends": [_trend(t) for t in trends],
            "samples": [{"t": round(t, 1), **v} for t, v in self.samples],
            "restarts": self.restarts,
            "gateway_counters": self.counters,
            "lines": lines,
        }


def _trend(trend: Trend) -> dict[str, Any]:
    return {
        "name": trend.name,
        "level": trend.level,
        "slope_per_s": trend.slope_per_s,
        "growth": trend.growth,
        "allowed": trend.allowed,
        "upward": trend.upward,
    }


async def main(argv: list[str] | None = None) -> int:
    cancel_on_sigterm()
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        report = await Soak(args, Path(directory)).run()
    print("\n".join(report["lines"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except asyncio.CancelledError:  # by SIGTERM, every process of the run stopped
        sys.exit(SIGTERM_STATUS)
