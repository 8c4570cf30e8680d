"""`python -m bench`: start everything, run the workloads, print the table, write JSON."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.client import parse_rate
from bench.compression import GATEWAY_ONLY as COMPRESSION_ONLY
from bench.compression import WORKLOADS as COMPRESSION_WORKLOADS
from bench.config import ROOT, BenchConfig, parse_args
from bench.delivery import GATEWAY_ONLY
from bench.delivery import WORKLOADS as DELIVERY_WORKLOADS
from bench.environment import Environment
from bench.processes import BenchError, Pinning, raise_open_files_limit
from bench.report import (
    delivery_table,
    gateway_lost_nothing,
    ratios,
    steps_table,
    summarise,
    table,
)
from bench.slow_reader import GATEWAY_ONLY as SLOW_ONLY
from bench.slow_reader import WORKLOADS as SLOW_WORKLOADS
from bench.storm import GATEWAY_ONLY as STORM_ONLY
from bench.storm import WORKLOADS as STORM_WORKLOADS
from bench.storm import storm_config
from bench.turnover import WORKLOADS as TURNOVER_WORKLOADS
from bench.workloads import RESUMABLE, WORKLOADS

ALL_WORKLOADS = {
    **WORKLOADS,
    **TURNOVER_WORKLOADS,
    **DELIVERY_WORKLOADS,
    **SLOW_WORKLOADS,
    **COMPRESSION_WORKLOADS,
    **STORM_WORKLOADS,
}
SKIPPED = {
    "W3": "the naive baseline keeps no history",
    **GATEWAY_ONLY,
    **SLOW_ONLY,
    **COMPRESSION_ONLY,
    **STORM_ONLY,
}

LOG_TAIL = 3000


def _git(src: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(src), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--", "gateway", "contracts")),
    }


async def machine(config: BenchConfig, pinning: Pinning, open_files: int) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "pinning": pinning.describe(),
        "open_files_limit": open_files,
        "python": platform.python_version(),
        "gateway_src": str(config.gateway_src),
        "gateway_git": _git(config.gateway_src),
        # One loader process's parsing ceiling (events/s on one core, cached timestamps):
        # compare with the deliveries/s measured to see the loader is not the limit.
        "loader_parse_events_per_s": {
            "1_event_per_read": round(await parse_rate(1)),
            "10_events_per_read": round(await parse_rate(10)),
        },
    }


async def run_once(config: BenchConfig, pinning: Pinning) -> dict[str, dict[str, Any]]:
    run: dict[str, dict[str, Any]] = {target: {} for target in config.targets}
    # Workload by workload, both targets back to back: outside noise hits both alike.
    for workload in config.workloads:
        for target in config.targets:
            if workload in SKIPPED and target not in RESUMABLE:
                run[target][workload] = {"skipped": SKIPPED[workload]}
                continue
            print(f"{workload} on {target}", flush=True)
            started = time.monotonic()
            log_tail = ""
            gc_pauses: dict[str, Any] | None = None
            try:
                own = storm_config(config) if workload in STORM_WORKLOADS else config
                async with Environment(own, target, pinning) as env:
                    try:
                        result = await ALL_WORKLOADS[workload](env, own)
                    finally:
                        log_tail = env.server.tail(LOG_TAIL)
                        gc_pauses = env.gc_pauses() if config.gc_probe else None
            except BenchError as exc:
                print(f"  {workload} on {target} failed: {exc}", file=sys.stderr, flush=True)
                result = {"error": str(exc)}
            if gc_pauses is not None:
                result["server_gc"] = gc_pauses
            if log_tail.strip():  # warnings and errors only: the servers log at warning
                result["server_log_tail"] = log_tail
            result["seconds"] = round(time.monotonic() - started, 1)
            run[target][workload] = result
    return run


async def main(config: BenchConfig) -> int:
    pinning = Pinning.plan(config.pin, config.workers)
    if pinning.others is not None:
        os.sched_setaffinity(0, pinning.others)  # children inherit; the server is re-pinned
    open_files = raise_open_files_limit()
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "schema": 1,
        "started": started.isoformat(),
        "config": config.to_json(),
        "machine": await machine(config, pinning, open_files),
        "runs": [],
    }
    for n in range(config.repeat):
        if config.repeat > 1:
            print(f"run {n + 1} of {config.repeat}", flush=True)
        report["runs"].append(await run_once(config, pinning))
    summary = summarise(report["runs"])
    report["summary"] = summary
    report["ratios"] = ratio = ratios(summary)
    report["zero_loss"] = gateway_lost_nothing(summary)
    report["finished"] = datetime.now(UTC).isoformat()
    output = config.output or ROOT / "bench" / "results" / f"{started:%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n")
    print()
    print(table(summary, ratio))
    for extra in (steps_table(summary), delivery_table(summary)):
        if extra:
            print()
            print(extra)
    print(f"\nJSON: {output}")
    failed = any("error" in r for run in report["runs"] for t in run.values() for r in t.values())
    return 0 if report["zero_loss"] and not failed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args(sys.argv[1:]))))
