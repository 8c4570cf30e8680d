"""Prometheus metrics of one gateway process (its own registry, so tests can run several)."""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Error kinds, the values of gateway_errors_total{kind=...}.
BAD_REQUEST = "bad_request"
AT_CAPACITY = "at_capacity"
TOO_MANY_STREAMS = "too_many_streams"
NATS_UNAVAILABLE = "nats_unavailable"
INVALID_MESSAGE = "invalid_message"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
CONSUMER_LOST = "consumer_lost"
OVERLOADED = "overloaded"
# Where a resumed stream caught up from, the values of gateway_resumes_total{source=...}.
FROM_MEMORY = "memory"
FROM_JETSTREAM = "jetstream"
# Why a stored message was skipped, the values of gateway_messages_skipped_total{reason=...}.
OVERSIZED = "oversized"
TOO_DEEP = "too_deep"
MALFORMED = "malformed"
NOT_A_TICK = "not_a_tick"
WRONG_SUBJECT = "wrong_subject"
SKIP_REASONS = (OVERSIZED, TOO_DEEP, MALFORMED, NOT_A_TICK, WRONG_SUBJECT)
INTERNAL = "internal"


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.open_streams = Gauge("gateway_open_streams", "SSE streams open now", registry=r)
        self.streams_by_delivery = Gauge(
            "gateway_open_streams_by_delivery",
            "SSE streams open now, by whether they are conflated and delayed",
            ["conflated", "delayed"],
            registry=r,
        )
        self.events_conflated = Counter(
            "gateway_events_conflated",
            "live events a conflated stream never sent: a later tick of the symbol replaced them",
            registry=r,
        )
        self.writes = WriteCounts()
        r.register(self.writes)
        self.consumers_open = Gauge(
            "gateway_consumers_open", "JetStream consumers this process holds", registry=r
        )
        self.consumer_create_seconds = Histogram(
            "gateway_consumer_create_seconds",
            "time to create a client's consumer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_delete_seconds = Histogram(
            "gateway_consumer_delete_seconds",
            "time to delete a client's consumer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("gateway_errors", "errors by kind", ["kind"], registry=r)
        self.slow_client_disconnects = Counter(
            "gateway_slow_client_disconnects",
            "streams ended because the client did not read",
            registry=r,
        )
        self.resets_sent = Counter(
            "gateway_resets_sent", "event: reset sent, by reason", ["reason"], registry=r
        )
        self.live_fallbacks = Counter(
            "gateway_live_fallbacks",
            "live clients that fell behind their buffer and went back to their own consumer",
            registry=r,
        )
        self.deliveries_lost = Counter(
            "gateway_deliveries_lost",
            "times a consumer's deliveries were lost on the way (a NATS node died holding "
            "them); each time the feed or stream ended before the gap and was taken up again",
            registry=r,
        )
        self.streams_ended = Counter(
            "gateway_streams_ended", "streams ended, by reason", ["reason"], registry=r
        )
        self.messages_skipped = Counter(
            "gateway_messages_skipped",
            "stored messages not sent because they are no valid tick, by reason (counted where "
            "framed: once by the live feed, or by each catching-up client)",
            ["reason"],
            registry=r,
        )
        self.asyncio_tasks = Gauge(
            "gateway_asyncio_tasks",
            "asyncio tasks alive in the process, counted at scrape time (a leak shows as growth)",
            registry=r,
        )
        self.asyncio_tasks.set_function(_asyncio_tasks)
        self.resumes = Counter(
            "gateway_resumes",
            "streams opened with a Last-Event-ID, by where they caught up from: the live "
            "feed's memory (no consumer) or a JetStream consumer of their own",
            ["source"],
            registry=r,
        )
        self.requests_shed = Counter(
            "gateway_requests_shed",
            "streams refused with 503 and a Retry-After because catch-up consumers were "
            "asked for faster than --catch-up-rate",
            registry=r,
        )
        for source in (FROM_MEMORY, FROM_JETSTREAM):
            self.resumes.labels(source)
        for conflated in ("false", "true"):
            for delayed in ("false", "true"):
                self.streams_by_delivery.labels(conflated, delayed)
        for reason in SKIP_REASONS:
            self.messages_skipped.labels(reason)
        for kind in (
            BAD_REQUEST,
            AT_CAPACITY,
            TOO_MANY_STREAMS,
            NATS_UNAVAILABLE,
            INVALID_MESSAGE,
            UNAUTHORIZED,
            FORBIDDEN,
            CONSUMER_LOST,
            OVERLOADED,
            INTERNAL,
        ):
            self.errors.labels(kind)  # present at 0, so dashboards and alerts see them

    def render(self) -> bytes:
        return generate_latest(self.registry)


_LAG_BOUNDS = (*(repr(bound) for bound in LAG_BUCKETS), "+Inf")  # as Histogram writes them


class WriteCounts:
    """gateway_events_sent_total and gateway_publish_to_send_seconds, kept as plain numbers:
    every write to a client adds to them, and prometheus_client's Counter and Histogram
    take a lock per call (2.3 us against 0.55 us per write, measured). Read when scraped,
    in the loop that writes them."""

    __slots__ = ("_lag_sum", "_lags", "events")

    def __init__(self) -> None:
        self.events = 0
        self._lags = [0] * (len(LAG_BUCKETS) + 1)  # per bucket, the last one +Inf
        self._lag_sum = 0.0

    def add(self, events: int, published: float | None) -> None:
        """A write of `events` events, the oldest tick in it stamped `published`."""
        self.events += events
        if published is not None:
            lag = time.time() - published
            if lag < 0.0:
                lag = 0.0  # a publisher's clock ahead of ours
            self._lags[bisect_left(LAG_BUCKETS, lag)] += 1  # le: the bound is inclusive
            self._lag_sum += lag

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "gateway_events_sent", "price events written to clients", value=self.events
        )
        buckets, count = [], 0
        for bound, n in zip(_LAG_BOUNDS, self._lags, strict=True):
            count += n
            buckets.append((bound, float(count)))
        yield HistogramMetricFamily(
            "gateway_publish_to_send_seconds",
            "tick timestamp to the write of its bytes (the oldest event of each write)",
            buckets=buckets,
            sum_value=self._lag_sum,
        )


def _asyncio_tasks() -> float:
    """Tasks of the running loop; 0 when rendered outside one (a scrape runs in the loop)."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return 0.0
