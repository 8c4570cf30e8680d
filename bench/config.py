"""The benchmark's settings: workload sizes from flags, with a --quick set of small ones."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("W1", "W2", "W3", "W4", "W1C", "W1S", "W1Z", "W5")
TARGETS = ("gateway", "naive")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    workloads: tuple[str, ...] = WORKLOADS
    targets: tuple[str, ...] = TARGETS
    symbols: int = 50
    symbols_per_client: int = 5
    loaders: int = 4
    connect_concurrency: int = 200
    w1_clients: int = 1000
    w1_rates: tuple[float, ...] = (50, 100, 200, 500, 1000, 2000, 3000, 4000)
    w1_step_seconds: float = 10.0
    p99_limit_ms: float = 100.0
    settle_timeout: float = 10.0
    w2_connections: tuple[int, ...] = (10_000, 19_000)
    w3_events: int = 10_000
    w3_repeats: int = 3
    w4_rate: float = 200.0
    w4_seconds: float = 15.0
    w4_lifetime: float = 5.0
    w4_publish_rate: float = 50.0
    conflate_ms: int = 250
    conflate_tolerance_ms: float = 50.0
    w1c_rates: tuple[float, ...] = (1000, 3000)
    w1c_step_seconds: float = 10.0
    w1s_rate: float = 2000.0
    w1s_seconds: float = 30.0
    w1s_read_bytes: int = 4096
    w1s_read_pause: float = 0.25
    w5_clients: int = 10_000
    w5_rate: float = 1000.0
    # 10,000 clients x 5 of 500 symbols: each tick goes to 100 clients, 100k deliveries/s
    # at 1,000 ticks/s (5 of 50 would be 1M/s, past any one process before the storm).
    w5_symbols: int = 500
    w5_timeout: float = 20.0
    w5_jitter: float = 2.0
    gateway_src: Path = ROOT
    gateway_args: tuple[str, ...] = ()
    workers: int = 1
    pin: bool = True
    gc_probe: bool = True
    repeat: int = 1
    output: Path | None = None
    quick: bool = False

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["gateway_src"] = str(self.gateway_src)
        values["output"] = str(self.output) if self.output else None
        return values


# What --quick changes (a flag given explicitly still wins).
QUICK: dict[str, Any] = {
    "loaders": 2,
    "w1_clients": 200,
    "w1_rates": (100, 500),
    "w1_step_seconds": 3.0,
    "settle_timeout": 5.0,
    "w2_connections": (2000,),
    "w3_events": 2000,
    "w3_repeats": 1,
    "w4_rate": 100.0,
    "w4_seconds": 4.0,
    "w4_lifetime": 2.0,
    "w1c_rates": (500,),
    "w1c_step_seconds": 3.0,
    "w1s_seconds": 8.0,
    "w5_clients": 2000,
    "w5_timeout": 10.0,
}


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def _names(allowed: Sequence[str]) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(v.strip() for v in text.split(",") if v.strip())
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(allowed)}")
        return names

    return parse


def parse_args(argv: Sequence[str]) -> BenchConfig:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the gateway (and a naive baseline) with loaders in other processes.",
    )
    add = parser.add_argument
    add(
        "--workloads",
        type=_names(WORKLOADS),
        help=f"comma-separated, default {','.join(WORKLOADS)}",
    )
    add("--targets", type=_names(TARGETS), help="servers to measure, default gateway,naive")
    add("--quick", action="store_true", help="small sizes: a run of about two minutes")
    add("--symbols", type=int, help=f"symbols published ({defaults.symbols})")
    add("--symbols-per-client", type=int, help=f"({defaults.symbols_per_client})")
    add("--loaders", type=int, help=f"load-generator processes ({defaults.loaders})")
    add(
        "--connect-concurrency",
        type=int,
        help="connects in flight when opening as fast as possible",
    )
    add("--w1-clients", type=int, help=f"W1 clients ({defaults.w1_clients})")
    add("--w1-rates", type=_floats, help="W1 publish rates, ticks/s in total, e.g. 200,500,1000")
    add("--w1-step-seconds", type=float, help=f"W1 seconds per rate ({defaults.w1_step_seconds})")
    add("--p99-limit-ms", type=float, help="W1 stops after a step with a p99 above this")
    add("--settle-timeout", type=float, help="seconds to wait for deliveries to catch up")
    add("--w2-connections", type=_ints, help="W2 idle connection counts, e.g. 10000,19000")
    add("--w3-events", type=int, help=f"W3 missed events to replay ({defaults.w3_events})")
    add("--w3-repeats", type=int, help=f"W3 resumes measured ({defaults.w3_repeats})")
    add("--w4-rate", type=float, help=f"W4 connects per second ({defaults.w4_rate})")
    add("--w4-seconds", type=float, help=f"W4 seconds of connecting ({defaults.w4_seconds})")
    add("--w4-lifetime", type=float, help=f"W4 seconds each client stays ({defaults.w4_lifetime})")
    add("--w4-publish-rate", type=float, help="W4 ticks/s published meanwhile")
    add("--conflate-ms", type=int, help=f"W1C/W1S ?conflate= ({defaults.conflate_ms})")
    add(
        "--conflate-tolerance-ms",
        type=float,
        help="a conflated symbol's events may arrive this much closer than the interval "
        f"(receive-time jitter; {defaults.conflate_tolerance_ms})",
    )
    add("--w1c-rates", type=_floats, help="W1C ticks/s, each run exact then conflated")
    add(
        "--w1c-step-seconds", type=float, help=f"W1C seconds per step ({defaults.w1c_step_seconds})"
    )
    add("--w1s-rate", type=float, help=f"W1S ticks/s ({defaults.w1s_rate})")
    add("--w1s-seconds", type=float, help=f"W1S seconds per slow client ({defaults.w1s_seconds})")
    add("--w1s-read-bytes", type=int, help=f"W1S bytes per read ({defaults.w1s_read_bytes})")
    add(
        "--w1s-read-pause",
        type=float,
        help=f"W1S seconds between reads ({defaults.w1s_read_pause})",
    )
    add("--w5-clients", type=int, help=f"W5 clients on the server killed ({defaults.w5_clients})")
    add("--w5-rate", type=float, help=f"W5 ticks/s published throughout ({defaults.w5_rate})")
    add(
        "--w5-symbols",
        type=int,
        help=f"W5 symbols published, each client on --symbols-per-client ({defaults.w5_symbols})",
    )
    add(
        "--w5-timeout",
        type=float,
        help=f"W5 seconds after the kill that clients keep trying ({defaults.w5_timeout})",
    )
    add(
        "--w5-jitter",
        type=float,
        help="W5 most seconds of random wait added to a Retry-After, as the page's client "
        f"adds up to its retry interval ({defaults.w5_jitter})",
    )
    add(
        "--gateway-src",
        type=Path,
        help="directory whose gateway/ and contracts/ to run (default: this checkout), "
        "e.g. a `git worktree` of an older commit for before/after figures",
    )
    add(
        "--gateway-arg",
        action="append",
        dest="gateway_args",
        help="extra flag for python -m gateway (repeat), e.g. --gateway-arg=--pull-batch=512",
    )
    add(
        "--workers",
        type=int,
        help="the gateway's --workers (1); above 1 the loaders connect from addresses of "
        "their own (127.0.0.2, ...), past the 28k ports of one, and the gateway is pinned "
        "to as many CPUs if more exist, else not at all",
    )
    add("--no-pin", dest="pin", action="store_false", default=None, help="no CPU pinning")
    add(
        "--no-gc-probe",
        dest="gc_probe",
        action="store_false",
        default=None,
        help="do not load bench/gcprobe into the server (it reports garbage-collection pauses)",
    )
    add("--repeat", type=int, help="whole runs; the summary gives medians (1)")
    add("--output", type=Path, help="JSON file (default bench/results/<UTC time>.json)")
    args = vars(parser.parse_args(list(argv)))
    chosen: dict[str, Any] = dict(QUICK) if args["quick"] else {}
    chosen.update({k: v for k, v in args.items() if v is not None})
    if "gateway_args" in chosen:
        chosen["gateway_args"] = tuple(chosen["gateway_args"])
    config = BenchConfig(**chosen)
    if config.symbols_per_client > config.symbols or config.loaders < 1 or config.repeat < 1:
        parser.error("need symbols-per-client <= symbols, loaders >= 1 and repeat >= 1")
    if config.workers < 1:
        parser.error("need workers >= 1")
    return config
