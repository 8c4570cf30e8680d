"""W1Z: the bytes on the wire and the gateway's CPU per delivery, plain and gzipped.

W1Z runs W1C's fan-out (`w1_clients` clients x 5 of 50 symbols, exact delivery) at each of
`w1c_rates` for `w1c_step_seconds`: first every client plain (no Accept-Encoding), then
every client asking for gzip, fresh clients each time, back to back in one environment.
The loaders count the socket bytes they read (HTTP framing included) and decode the gzip
body (bench.wire) to check every event as usual.

`python -m bench.compression` measures the compressor alone instead: the memory of 1,000
compressors (tracemalloc) and the compression ratio on tick frames for candidate windows
and memory levels, the table docs/benchmark.md quotes for the gateway's choice.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.config import BenchConfig
from bench.delivery import fan_out_step
from bench.environment import Environment
from bench.publisher import symbol_name
from bench.workloads import seed

MODES = ("plain", "gzip")
HEADERS = {"plain": {}, "gzip": {"Accept-Encoding": "gzip"}}
FIGURES = (
    "deliveries_per_s",
    "server_cpu_percent",
    "cpu_us_per_delivery",
    "bytes_per_tick",
    "bytes_per_delivery",
)
LOSS_KINDS = ("lost", "undelivered", "duplicated", "unexpected", "out_of_order")


async def w1z_gzip(env: Environment, config: BenchConfig) -> dict[str, Any]:
    """W1Z: W1's clients plain, then all asking for gzip, at each rate of w1c_rates."""
    await seed(env)
    steps: list[dict[str, Any]] = []
    first_id = 0
    for rate in config.w1c_rates:
        step: dict[str, Any] = {"rate_target": rate}
        for mode in MODES:
            step[mode] = await fan_out_step(env, config, rate, 0, first_id, headers=HEADERS[mode])
            first_id += config.w1_clients
        step["ratios"] = {
            name: _ratio(step["gzip"].get(name), step["plain"].get(name)) for name in FIGURES
        }
        steps.append(step)
        print(_line(env.target, step), flush=True)
    losses = [s[mode]["loss"] for s in steps for mode in MODES]
    return {
        "clients": config.w1_clients,
        "steps": steps,
        "zero_loss": not any(loss.get(kind) for loss in losses for kind in LOSS_KINDS),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def w1z_figures(w1z: dict[str, Any], out: dict[str, Any], losses: dict[str, int]) -> None:
    """W1Z's headlines for the summary table (bench.headlines)."""
    for step in w1z["steps"]:
        rate = int(step["rate_target"])
        for mode in MODES:
            for name in (*FIGURES, "p99_ms"):
                value = step[mode]["latency"][name] if name == "p99_ms" else step[mode][name]
                out[f"w1z_{rate}_{mode}_{name}"] = value
            for kind in LOSS_KINDS:
                losses[kind] += step[mode]["loss"].get(kind, 0)
        for name, value in step["ratios"].items():
            out[f"w1z_{rate}_ratio_{name}"] = value


def _line(target: str, step: dict[str, Any]) -> str:
    parts = []
    for mode in MODES:
        s = step[mode]
        parts.append(
            f"{mode} {s['deliveries_per_s']} del/s cpu {s['server_cpu_percent']}%"
            f" {s['cpu_us_per_delivery']} us/delivery {s['bytes_per_tick']} B/tick"
            f" {s['bytes_per_delivery']} B/delivery p99 {s['latency']['p99_ms']} ms"
            f" undelivered {s['loss']['undelivered']} lost {s['loss']['lost']}"
        )
    ratios = step["ratios"]
    return (
        f"  W1Z {target:7} {step['rate_target']:>6.0f} ticks/s: {'; '.join(parts)};"
        f" gzip/plain bytes {ratios['bytes_per_tick']}, CPU/delivery"
        f" {ratios['cpu_us_per_delivery']}"
    )


WORKLOADS = {"W1Z": w1z_gzip}
GATEWAY_ONLY = {"W1Z": "the naive baseline does not compress"}


# -- The compressor alone: memory and ratio by window and memory level

CANDIDATES = ((15, 8), (13, 4), (12, 5), (12, 1), (11, 4), (11, 2), (11, 1), (10, 2), (9, 1))
WRITE_SIZES = (1, 5, 20)  # events per write: one at a quiet moment, more under load


def tick_frames(count: int, symbols: int = 5, seed_: int = 1) -> list[bytes]:
    """`count` stockUpdate frames as the gateway writes them: the publisher's random walk
    over `symbols` bench symbols, ids of one incarnation, timestamps a few ms apart."""
    from gateway.feed import sse
    from publisher.ticks import PriceWalk

    now = [datetime(2026, 12, 5, 14, 30, tzinfo=UTC)]
    rng = random.Random(seed_)

    def clock() -> datetime:
        now[0] += timedelta(microseconds=rng.randint(1_000, 500_000))
        return now[0]

    names = [symbol_name(i * 10) for i in range(symbols)]
    walk = PriceWalk(names, "bench-publisher", seed=seed_, clock=clock)
    return [
        sse.price_frame(
            b"mip8k2x1c0-%d" % (4_000_000 + 7 * i), walk.tick(rng.choice(names)).encode()
        )
        for i in range(count)
    ]


def ratio(frames: list[bytes], wbits: int, mem_level: int, per_write: int) -> float:
    """Compressed / plain bytes of `frames`, `per_write` events per sync-flushed write."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, 16 + wbits, mem_level)
    plain = coded = 0
    for i in range(0, len(frames), per_write):
        body = b"".join(frames[i : i + per_write])
        plain += len(body)
        coded += len(deflate.compress(body) + deflate.flush(zlib.Z_SYNC_FLUSH))
    return coded / plain


def memory(frame: bytes, wbits: int, mem_level: int, count: int = 1000) -> float:
    """Bytes per compressor, each after one flushed write (zlib allocates through
    Python's raw allocator, which tracemalloc sees)."""
    gc.collect()
    tracemalloc.start()
    try:
        compressors = [
            zlib.compressobj(6, zlib.DEFLATED, 16 + wbits, mem_level) for _ in range(count)
        ]
        for deflate in compressors:
            deflate.compress(frame)
            deflate.flush(zlib.Z_SYNC_FLUSH)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return used / count


def main() -> None:
    frames = tick_frames(2000)
    plain = sum(map(len, frames)) / len(frames)
    print(f"{len(frames)} tick frames, {plain:.0f} bytes each on average")
    sizes = " ".join(f"{n:>3} ev/write" for n in WRITE_SIZES)
    print(f"wbits memLevel  KB/stream  ratio at {sizes}")
    for wbits, mem_level in CANDIDATES:
        kb = memory(frames[0], wbits, mem_level) / 1024
        ratios = " ".join(f"{ratio(frames, wbits, mem_level, n):>12.3f}" for n in WRITE_SIZES)
        print(f"{wbits:>5} {mem_level:>8}  {kb:>9.1f}  {ratios}")


if __name__ == "__main__":
    main()
