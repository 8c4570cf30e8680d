"""W5's figures: from what the loaders saw and what was scraped around the kill, the
times to streaming again, refusals, JetStream's work and B's counters; its headlines
for the summary table, and its one-line report."""

from __future__ import annotations

from typing import Any

from bench.config import BenchConfig

TARGET_S = 3.0  # the target: every client streaming again within 3 s
LOSS_KINDS = ("lost", "undelivered", "duplicated", "unexpected", "out_of_order")
# B's counters (labelled ones by label value); absent ones are reported as None.
COUNTERS = {
    "consumers_created": ("gateway_consumer_create_seconds_count", None),
    "requests_shed": ("gateway_requests_shed_total", None),
    "resumes_memory": ("gateway_resumes_total", 'source="memory"'),
    "resumes_jetstream": ("gateway_resumes_total", 'source="jetstream"'),
    "at_capacity": ("gateway_errors_total", 'kind="at_capacity"'),
    "nats_unavailable": ("gateway_errors_total", 'kind="nats_unavailable"'),
}


def sample(text: str, name: str, labels: str | None) -> float | None:
    """A sample of a Prometheus exposition: unlabelled, or the one whose labels include
    `labels` (e.g. 'source="memory"'); None when absent."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name) :]
        if labels is None and rest.startswith(" "):
            return float(rest.split()[-1])
        if labels is not None and rest.startswith("{") and labels in rest.split("}")[0]:
            return float(rest.rsplit(" ", 1)[1])
    return None


def storm_figures(
    answers: list[dict[str, Any]], storm: dict[str, Any], after: dict[str, Any], config: BenchConfig
) -> dict[str, Any]:
    killed_at = storm["killed_at"]
    clients = config.w5_clients

    def since_kill(name: str) -> list[float]:
        return sorted(t - killed_at for a in answers for t in a[name] if t is not None)

    def total(name: str) -> int:
        return sum(a[name] for a in answers)

    statuses: dict[str, int] = {}
    failures: dict[str, int] = {}
    for answer in answers:
        for status, n in answer["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
        for kind, n in answer["failures"].items():
            failures[kind] = failures.get(kind, 0) + n
    before_jsz, after_jsz = storm["before"]["jsz"], after["jsz"]
    return {
        "clients": clients,
        "rate": config.w5_rate,
        "timeout_s": config.w5_timeout,
        "watched_s": storm["watched_s"],
        "armed": total("armed"),
        "a_before_kill": storm["before_kill"],  # A keeping up at the rate, or not
        "noticed": ranks(since_kill("lost_at"), clients),
        "streaming_again": ranks(since_kill("first_event_at"), clients),
        "first_byte_again": ranks(since_kill("answered_at"), clients),
        "attempts": total("attempts"),
        "refused_503": statuses.get("503", 0),
        "refused": statuses,
        "clients_refused": total("clients_refused"),
        "failures": failures,
        "clients_failed": total("clients_failed"),
        "dropped_after_resume": total("dropped"),
        "jetstream": {
            "api_calls": after_jsz["api"]["total"] - before_jsz["api"]["total"],
            "api_errors": after_jsz["api"]["errors"] - before_jsz["api"]["errors"],
            "consumers_created": storm["consumers_created"],
            "consumers_before": before_jsz["consumers"],
            "consumers_peak": storm["consumers_peak"],
            "consumers_after": after_jsz["consumers"],
        },
        "gateway_b": deltas(storm["before"]["gateway_b"], after["gateway_b"]),
        "cpu_percent": storm["cpu_percent"],
    }


def ranks(times: list[float], clients: int) -> dict[str, Any]:
    """When 50, 99 and 100 % of `clients` had done it (seconds after the kill; None: not
    within the storm's window), and how many did within the target and at all."""

    def by(share: float) -> float | None:
        rank = max(1, -(-clients * share // 100))  # ceil
        return round(times[int(rank) - 1], 3) if rank <= len(times) else None

    return {
        "p50_s": by(50),
        "p99_s": by(99),
        "p100_s": by(100),
        "max_s": round(times[-1], 3) if times else None,
        "within_target": sum(t <= TARGET_S for t in times),
        "by_end": len(times),
        "never": clients - len(times),
    }


def deltas(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, Any]:
    pairs = {name: (before.get(name), after.get(name)) for name in COUNTERS}
    return {n: None if a is None or b is None else round(b - a) for n, (a, b) in pairs.items()}


def w5_figures(w5: dict[str, Any], out: dict[str, Any], losses: dict[str, int]) -> None:
    """W5's headlines for the summary table (bench.report)."""
    again = w5["streaming_again"]
    out["w5_streaming_again_p50_s"] = again["p50_s"]
    out["w5_streaming_again_p99_s"] = again["p99_s"]
    out["w5_streaming_again_p100_s"] = again["p100_s"]
    out["w5_streaming_within_3s"] = again["within_target"]
    out["w5_never_streaming_again"] = again["never"]
    out["w5_noticed_p100_s"] = w5["noticed"]["p100_s"]  # the loaders' own lag, at the kill
    out["w5_a_p99_ms_before_kill"] = w5["a_before_kill"]["latency"]["p99_ms"]
    out["w5_refused_503"] = w5["refused_503"]
    out["w5_connect_failures"] = sum(w5["failures"].values())
    for name in ("api_calls", "api_errors", "consumers_created", "consumers_peak"):
        out[f"w5_jetstream_{name}"] = w5["jetstream"][name]
    for name, value in w5["gateway_b"].items():
        if value is not None and name != "consumers_created":
            out[f"w5_gateway_b_{name}"] = value
    if gc := w5.get("server_b_gc"):
        out["w5_gateway_b_gc_max_pause_ms"] = gc["max_ms"]
    for kind in LOSS_KINDS:
        losses[kind] += w5["loss"][kind]


def storm_line(result: dict[str, Any]) -> str:
    again = result["streaming_again"]
    js = result["jetstream"]
    loss = result["loss"]
    return (
        f"  W5 gateway {result['clients']} clients at {result['rate']:.0f} ticks/s: streaming "
        f"again p50 {again['p50_s']} p99 {again['p99_s']} 100% {again['p100_s']} s, "
        f"{again['within_target']} within {TARGET_S:.0f} s, {again['never']} never; "
        f"503s {result['refused_503']}, failures {sum(result['failures'].values())}; "
        f"JetStream API calls {js['api_calls']} (errors {js['api_errors']}), consumers "
        f"created {js['consumers_created']} (peak {js['consumers_peak']}); lost {loss['lost']}"
        f" duplicated {loss['duplicated']} undelivered {loss['undelivered']}"
    )
