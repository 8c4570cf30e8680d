"""The summary: headline figures per target (medians over runs), ratios, the printed table."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from bench.headlines import DELIVERY_FIGURES, headlines
from bench.stats import median

# Headlines where the gateway is compared with the naive baseline, and which way is better.
RATIOS = {
    "w1_max_deliveries_per_s": "higher",
    "w2_connect_rate_per_s": "higher",
    "w4_connect_p99_ms": "lower",
}


def summarise(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per target, each headline's median over runs (bools: all; lists: union)."""
    summary: dict[str, dict[str, Any]] = {}
    targets = {t for run in runs for t in run}
    for target in sorted(targets):
        per_run = [headlines(run[target]) for run in runs if target in run]
        keys = list(dict.fromkeys(k for h in per_run for k in h))
        merged: dict[str, Any] = {}
        for key in keys:
            values = [h.get(key) for h in per_run]
            if any(isinstance(v, list) for v in values):
                merged[key] = sorted({x for v in values if v for x in v})
            elif any(isinstance(v, bool) for v in values):
                merged[key] = all(v is True for v in values)
            else:
                merged[key] = median(values)
        summary[target] = merged
    return summary


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """gateway / naive for each comparable headline."""
    gateway, naive = summary.get("gateway", {}), summary.get("naive", {})
    out: dict[str, float | None] = {}
    for key in RATIOS:
        a, b = gateway.get(key), naive.get(key)
        out[key] = round(a / b, 2) if a is not None and b else None
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        return ",".join(value) or "none"
    return str(value)


STEP_KEY = re.compile(r"w1_(\d+)_(.+)")
DELIVERY_KEY = re.compile(r"w1c_(\d+)_(exact|conflated|ratio)_(.+)")
WORKLOAD_KEY = re.compile(r"w\d[a-z]?_")
STEP_COLUMNS = {
    "deliveries_per_s": "del/s",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "max_ms": "max ms",
    "server_cpu_percent": "server %",
    "loaders_cpu_percent": "loaders %",
    "other_core_cpu_percent": "other core %",
    "server_rss_mb": "RSS MB",
}


def table(summary: dict[str, dict[str, Any]], ratio: dict[str, float | None]) -> str:
    """The headlines, one column per target; W1's per-rate figures are in `steps_table`."""
    targets = sorted(summary)
    seen = dict.fromkeys(
        k
        for t in targets
        for k in summary[t]
        if not STEP_KEY.fullmatch(k) and not DELIVERY_KEY.fullmatch(k)
    )
    # Workload by workload (w1_..., w2_...), then the loss counts and errors.
    keys = sorted(seen, key=lambda k: k[1] if WORKLOAD_KEY.match(k) else "9")
    head = ["figure (median)", *targets] + (["gateway/naive"] if len(targets) > 1 else [])
    rows = [head]
    for key in keys:
        row = [key, *(_cell(summary[t].get(key)) for t in targets)]
        if len(targets) > 1:
            row.append(_cell(ratio.get(key)))
        rows.append(row)
    return _render(rows)


def steps_table(summary: dict[str, dict[str, Any]]) -> str:
    """W1 by publish rate: one row per target and rate."""
    rows = [["W1 target", "ticks/s", *STEP_COLUMNS.values()]]
    for target in sorted(summary):
        figures = summary[target]
        rates = sorted({int(m[1]) for k in figures if (m := STEP_KEY.fullmatch(k))})
        for rate in rates:
            cells = [_cell(figures.get(f"w1_{rate}_{name}")) for name in STEP_COLUMNS]
            rows.append([target, f"{rate:,}", *cells])
    return _render(rows) if len(rows) > 1 else ""


def delivery_table(summary: dict[str, dict[str, Any]]) -> str:
    """W1C by publish rate: exact, conflated and conflated/exact, one row each."""
    figures = summary.get("gateway", {})
    rates = sorted({int(m[1]) for k in figures if (m := DELIVERY_KEY.fullmatch(k))})
    rows = [["W1C ticks/s", "delivery", *DELIVERY_FIGURES.values()]]
    for rate in rates:
        for mode in ("exact", "conflated", "ratio"):
            cells = [_cell(figures.get(f"w1c_{rate}_{mode}_{name}")) for name in DELIVERY_FIGURES]
            label = "conflated/exact" if mode == "ratio" else mode
            rows.append([f"{rate:,}", label, *cells])
    return _render(rows) if len(rows) > 1 else ""


def _render(rows: Iterable[list[str]]) -> str:
    rows = list(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def gateway_lost_nothing(summary: dict[str, dict[str, Any]]) -> bool:
    figures = summary.get("gateway", {})
    faults = ("lost", "duplicated", "unexpected", "out_of_order", "too_soon", "last_tick_missing")
    return not any(figures.get(k) for k in faults)
