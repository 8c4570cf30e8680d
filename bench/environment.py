"""One measured set-up (bench.stack) as the workloads use it: clients opened on the
loaders, ticks published and accounted to them, their figures gathered.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats

from bench.checking import Tally
from bench.config import BenchConfig
from bench.processes import BenchError, Controlled, Pinning
from bench.publisher import symbol_name
from bench.stack import Stack
from bench.stats import Histogram
from bench.workers import summed_metric

STREAM = "PRICES"


def client_spec(ident: int, config: BenchConfig, **extra: Any) -> dict[str, Any]:
    """Client `ident` asks for `symbols_per_client` symbols spread evenly over all of them,
    so every symbol has the same number of clients."""
    stride = config.symbols // config.symbols_per_client
    symbols = sorted(
        {(ident + k * stride) % config.symbols for k in range(config.symbols_per_client)}
    )
    query = ",".join(symbol_name(s) for s in symbols)
    return {"id": ident, "path": f"/stocks?symbols={query}", "symbols": symbols, **extra}


class Environment(Stack):
    """`async with Environment(config, target, pinning)`: everything started, then killed."""

    def __init__(self, config: BenchConfig, target: str, pinning: Pinning) -> None:
        super().__init__(config, target, pinning)
        self.last_key = 0
        self.subscribers = [0] * config.symbols  # open-ended count of clients per symbol

    def key_of(self, tick: list[int]) -> int:
        """What the event id carries: the stream sequence, or the naive's publish counter."""
        counter, sequence, _ = tick
        return counter if self.target == "naive" else sequence

    async def publish(
        self,
        *,
        rate: float = 0.0,
        seconds: float = 0.0,
        count: int = 0,
        symbols: list[int] | None = None,
        window: int = 10_000,
    ) -> dict[str, Any]:
        """Publish (see bench.publisher), then tell the loaders what was stored."""
        answer = await self.publisher.request(
            timeout=seconds + 120,
            op="run",
            rate=rate,
            seconds=seconds,
            count=count,
            symbols=symbols,
            window=window,
        )
        if answer["unacked"] or answer["failed"]:
            raise BenchError(f"publisher: {answer['unacked']} unacked, {answer['failed']} failed")
        ticks = [[self.key_of(t), t[2]] for t in answer["ticks"]]
        answer["stored"] = ticks  # (key, symbol) of every stored tick
        if ticks:
            self.last_key = max(self.last_key, max(k for k, _ in ticks))
        await self.each(op="published", ticks=ticks)
        answer["keys"] = sorted(k for k, _ in ticks)
        answer["deliveries_due"] = sum(self.subscribers[t[2]] for t in answer["ticks"])
        del answer["ticks"]
        return answer

    async def each(self, timeout: float = 120.0, **command: Any) -> list[dict[str, Any]]:
        """The same request to every loader."""
        return list(
            await asyncio.gather(*(loader.request(timeout, **command) for loader in self.loaders))
        )

    async def open(
        self,
        specs: list[dict[str, Any]],
        *,
        rate: float | None = None,
        lifetime: float | None = None,
    ) -> dict[str, Any]:
        """Open clients spread over the loaders; connect times and statuses, merged."""
        n = len(self.loaders)
        shares = [specs[i::n] for i in range(n)]
        for spec in specs:
            for symbol in spec.get("symbols", ()):
                self.subscribers[symbol] += lifetime is None
        answers = await asyncio.gather(
            *(
                loader.request(
                    timeout=600,
                    op="open",
                    conns=share,
                    rate=rate / n if rate else None,
                    concurrency=max(1, self.config.connect_concurrency // n),
                    lifetime=lifetime,
                )
                for loader, share in zip(self.loaders, shares, strict=True)
                if share
            )
        )
        statuses: dict[str, int] = {}
        for answer in answers:
            for status, count in answer["statuses"].items():
                statuses[status] = statuses.get(status, 0) + count
        return {
            "opened": sum(a["opened"] for a in answers),
            "statuses": statuses,
            "connect_s": [c for a in answers for c in a["connect_s"]],
            "seconds": max(a["seconds"] for a in answers),
        }

    def loader_of(self, ident: int) -> Controlled:
        """The loader `open` gave client `ident` to, when idents count up from 0 per call."""
        return self.loaders[ident % len(self.loaders)]

    async def stats(self) -> dict[str, Any]:
        answers = await self.each(op="stats")
        hist = Histogram()
        for answer in answers:
            hist.merge(answer["hist"], answer["max_latency"])
        merged: dict[str, Any] = {"hist": hist}
        for name in (
            "window_events",
            "window_bytes",
            "open",
            "closed_by_server",
            "body_ended",
            "resets",
        ):
            merged[name] = sum(a[name] for a in answers)
        errors: dict[str, int] = {}
        for answer in answers:
            for error, count in answer["errors"].items():
                errors[error] = errors.get(error, 0) + count
        merged["errors"] = errors
        return merged

    async def check(self, final: bool) -> Tally:
        total = Tally()
        for answer in await self.each(op="check", final=final):
            total.add(Tally(**answer))
        return total

    async def settle(self, timeout: float) -> tuple[Tally, float]:
        """Wait until every open client has every published event of its symbols (or the
        timeout: then what is missing counts as lost); the tally and the seconds waited."""
        started = time.monotonic()
        while True:
            tally = await self.check(final=False)
            waited = time.monotonic() - started
            if not tally.pending:
                return tally, waited
            if waited > timeout:
                return await self.check(final=True), waited
            await asyncio.sleep(0.1)

    async def gateway_counters(self, names: tuple[str, ...]) -> dict[str, float | None]:
        """Unlabelled samples of the gateway's /metrics (None: absent, or no answer)."""
        ports = self.metrics_ports()
        return {name: await summed_metric(ports, name) for name in names}

    async def gateway_gauges(self) -> dict[str, float | None]:
        """Open streams and consumers as the gateway and NATS see them (gateway only)."""
        ports = self.metrics_ports()
        gauges: dict[str, float | None] = {
            "open_streams": await summed_metric(ports, "gateway_open_streams"),
            "consumers_open": await summed_metric(ports, "gateway_consumers_open"),
        }
        nc = await nats.connect(self.nats_url, name="bench")
        try:
            info = await nc.jetstream().stream_info(STREAM)
            gauges["nats_consumers"] = info.state.consumer_count
        finally:
            await nc.close()
        return gauges
