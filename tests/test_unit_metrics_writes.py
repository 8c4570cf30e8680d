"""The per-write metrics kept as plain numbers expose what prometheus_client's own Counter
and Histogram would for the same writes."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.metrics import LAG_BUCKETS, Metrics

# Lags well inside their buckets, so the microseconds between stamping and adding do not
# move one across a bound; one past the last bound, one write without a tick time.
WRITES = [(3, 0.0004), (1, 0.003), (2, 0.003), (5, 0.2), (1, 0.7), (4, 45.0), (2, None)]


def _lines(exposition: bytes, *names: str) -> list[str]:
    return [
        line
        for line in exposition.decode().splitlines()
        if line.startswith(names) and not line.startswith(f"{names[0]}_created")
    ]


def test_write_counts_expose_what_a_counter_and_histogram_would() -> None:
    metrics = Metrics()
    registry = CollectorRegistry()
    sent = Counter("gateway_events_sent", "price events written to clients", registry=registry)
    lags = Histogram(
        "gateway_publish_to_send_seconds",
        "tick timestamp to the write of its bytes (the oldest event of each write)",
        buckets=LAG_BUCKETS,
        registry=registry,
    )
    for events, lag in WRITES:
        metrics.writes.add(events, None if lag is None else time.time() - lag)
        sent.inc(events)
        if lag is not None:
            lags.observe(lag)
    ours, theirs = metrics.render(), generate_latest(registry)
    counter = ("gateway_events_sent_total",)
    assert _lines(ours, *counter) == _lines(theirs, *counter)
    buckets = ("gateway_publish_to_send_seconds_bucket", "gateway_publish_to_send_seconds_count")
    assert _lines(ours, *buckets) == _lines(theirs, *buckets)
    assert b"gateway_publish_to_send_seconds_sum 45.9" in ours


def test_a_tick_stamped_ahead_of_our_clock_counts_as_no_lag() -> None:
    metrics = Metrics()
    metrics.writes.add(1, time.time() + 5.0)  # the publisher's clock 5 s ahead
    exposition = metrics.render()
    assert b'gateway_publish_to_send_seconds_bucket{le="0.001"} 1.0' in exposition
    assert b"gateway_publish_to_send_seconds_sum 0.0" in exposition
