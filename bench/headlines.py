"""Headlines: one target's run (workload -> result) as flat figures, losses summed by kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.compression import w1z_figures
from bench.storm_figures import w5_figures

LOSS_KINDS = (
    "lost",
    "undelivered",
    "duplicated",
    "unexpected",
    "out_of_order",
    # Conflated clients (W1C, W1S): a symbol's events closer than the interval less the
    # tolerance, and a symbol whose last published tick never arrived.
    "too_soon",
    "last_tick_missing",
)


def headlines(result: dict[str, Any]) -> dict[str, Any]:
    """Flat figures of one target's run (workload name -> its result)."""
    out: dict[str, Any] = {}
    losses = dict.fromkeys(LOSS_KINDS, 0)
    for workload, required, figures in WORKLOAD_FIGURES:
        if (data := result.get(workload)) and required in data:
            figures(data, out, losses)
    for workload, figures_of in result.items():
        if gc := figures_of.get("server_gc"):
            out[f"{workload.lower()}_gc_max_pause_ms"] = gc["max_ms"]
            out[f"{workload.lower()}_gc_pause_total_s"] = gc["total_s"]
    out.update(losses)
    out["errors"] = sorted(w for w, r in result.items() if "error" in r)
    return out


def _count_loss(losses: dict[str, int], loss: dict[str, int]) -> None:
    for kind in LOSS_KINDS:
        losses[kind] += loss.get(kind, 0)


def _w1(w1: dict[str, Any], out: dict[str, Any], losses: dict[str, int]) -> None:
    out["w1_max_deliveries_per_s"] = w1["max_deliveries_per_s"]
    out["w1_connect_p99_ms"] = w1["connect"]["p99_ms"]
    _count_loss(losses, w1["snapshot_loss"])
    for step in w1["steps"]:
        rate = int(step["rate_target"])
        out[f"w1_{rate}_deliveries_per_s"] = step["deliveries_per_s"]
        out[f"w1_{rate}_p50_ms"] = step["latency"]["p50_ms"]
        out[f"w1_{rate}_p99_ms"] = step["latency"]["p99_ms"]
        out[f"w1_{rate}_max_ms"] = step["latency"]["max_ms"]
        out[f"w1_{rate}_server_cpu_percent"] = step["cpu_percent"]["server"]
        out[f"w1_{rate}_loaders_cpu_percent"] = step["cpu_percent"]["loaders"]
        out[f"w1_{rate}_other_core_cpu_percent"] = round(
            step["cpu_percent"]["loaders"]
            + step["cpu_percent"]["publisher"]
            + step["cpu_percent"]["nats"],
            1,
        )
        out[f"w1_{rate}_server_rss_mb"] = step["server_rss_mb"]
        _count_loss(losses, step["loss"])
    out["w1_loaders_cpu_max_percent"] = max(
        (s["cpu_percent"]["loaders"] for s in w1["steps"]), default=None
    )


def _w2(w2: dict[str, Any], out: dict[str, Any], losses: dict[str, int]) -> None:
    for level in w2["levels"]:
        n = level["target"]
        out[f"w2_{n}_open"] = level["open"]
        out[f"w2_{n}_rss_per_connection_bytes"] = level["rss_per_connection_bytes"]
        out[f"w2_{n}_server_rss_mb"] = level["server_rss_mb"]
        out[f"w2_{n}_idle_server_cpu_percent"] = level["cpu_percent_idle"]["server"]
        out[f"w2_{n}_idle_nats_cpu_percent"] = level["cpu_percent_idle"]["nats"]
    if w2["levels"]:
        first = w2["levels"][0]["connect"]
        out["w2_connect_rate_per_s"] = first["rate_per_s"]
        out["w2_connect_p99_ms"] = first["p99_ms"]
    _count_loss(losses, w2["loss"])


def _w3(w3: dict[str, Any], out: dict[str, Any], losses: dict[str, int]) -> None:
    out["w3_catch_up_s"] = w3["catch_up_s_median"]
    out["w3_exact"] = w3["zero_loss"]
    for run in w3["runs"]:
        _count_loss(losses, {"lost": run["lost"], "unexpected": run["unexpected"]})


def _w4(w4: dict[str, Any], out: dict[str, Any], losses: dict[str, int]) -> None:
    out["w4_opened"] = w4["connect"]["opened"]
    out["w4_connect_p50_ms"] = w4["connect"]["p50_ms"]
    out["w4_connect_p99_ms"] = w4["connect"]["p99_ms"]
    out["w4_connect_max_ms"] = w4["connect"]["max_ms"]
    out["w4_server_cpu_percent"] = w4["cpu_percent"]["server"]
    if "after" in w4:
        out["w4_streams_left"] = w4["after"]["open_streams"]
        out["w4_consumers_left"] = w4["after"]["nats_consumers"]
    _count_loss(losses, w4["loss"])


DELIVERY_FIGURES = {
    "deliveries_per_s": "del/s",
    "server_cpu_percent": "server %",
    "cpu_us_per_tick": "CPU us/tick",
    "cpu_us_per_delivery": "CPU us/del",
    "bytes_per_tick": "B/tick",
    "p99_ms": "p99 ms",
    "conflated_away": "conflated away",
}


def _conflated_loss(loss: dict[str, Any]) -> dict[str, int]:
    """A conflated client's faults: skipped ticks are its due, a missing last tick is not."""
    out = {k: loss.get(k, 0) for k in ("lost", "duplicated", "unexpected", "out_of_order")}
    out["too_soon"] = loss.get("too_soon", 0)
    out["last_tick_missing"] = loss.get("undelivered", 0)
    return out


def _w1c(w1c: dict[str, Any], out: dict[str, Any], losses: dict[str, int]) -> None:
    gaps = []
    for step in w1c["steps"]:
        rate = int(step["rate_target"])
        for mode in ("exact", "conflated"):
            figures = step[mode]
            for name in DELIVERY_FIGURES:
                value = figures["latency"]["p99_ms"] if name == "p99_ms" else figures.get(name)
                out[f"w1c_{rate}_{mode}_{name}"] = value
        for name, value in step["ratios"].items():
            out[f"w1c_{rate}_ratio_{name}"] = value
        _count_loss(losses, step["exact"]["loss"])
        _count_loss(losses, _conflated_loss(step["conflated"]["loss"]))
        if (gap := step["conflated"]["loss"].get("min_gap_ms")) is not None:
            gaps.append(gap)
    out["w1c_conflated_min_gap_ms"] = min(gaps, default=None)
    out["w1c_conflated_gaps_under"] = sum(
        s["conflated"]["loss"].get("gaps_under", 0) for s in w1c["steps"]
    )


def _w1s(w1s: dict[str, Any], out: dict[str, Any], losses: dict[str, int]) -> None:
    for mode in ("conflated", "exact"):
        run = w1s[mode]
        out[f"w1s_{mode}_rss_slope_mb_per_min"] = run["rss"]["slope_mb_per_min"]
        out[f"w1s_{mode}_rss_max_minus_min_mb"] = run["rss"]["max_minus_min_mb"]
        out[f"w1s_{mode}_closed_by_server"] = run["closed_by_server"]
        out[f"w1s_{mode}_live_fallbacks"] = run["live_fallbacks"]
        out[f"w1s_{mode}_slow_client_disconnects"] = run["slow_client_disconnects"]
    _count_loss(losses, _conflated_loss(w1s["conflated"]["loss"]))
    exact = dict(w1s["exact"]["loss"])
    exact.pop("undelivered", None)  # a slow exact client that fell behind is the expected case
    _count_loss(losses, exact)


Figures = Callable[[dict[str, Any], dict[str, Any], dict[str, int]], None]
# Each workload's figures, in the order they are printed, if its result has `required`.
WORKLOAD_FIGURES: tuple[tuple[str, str, Figures], ...] = (
    ("W1", "steps", _w1),
    ("W2", "levels", _w2),
    ("W3", "runs", _w3),
    ("W4", "connect", _w4),
    ("W1C", "steps", _w1c),
    ("W1S", "conflated", _w1s),
    ("W1Z", "steps", w1z_figures),
    ("W5", "streaming_again", w5_figures),
)
