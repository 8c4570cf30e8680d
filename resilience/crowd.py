"""The clients of a run: long-lived ones, a stream of short-lived ones, and the final
settling (every client caught up with the stream) before their histories are judged."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from resilience.clients import Behaviour, Client, Counters
from resilience.history import History, Stored

SETTLE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Mix:
    """How many clients of each kind, and how each picks its symbols."""

    steady: int
    resuming: int
    slow: int
    churn_per_s: float  # short-lived clients started per second
    symbols_per_client: int


class Crowd:
    def __init__(
        self, urls: Sequence[tuple[str, int]], names: Sequence[str], mix: Mix, seed: int
    ) -> None:
        self.urls = list(urls)
        self.names = list(names)
        self.mix = mix
        self.rng = random.Random(seed)
        self.counters = Counters()
        self.clients: list[Client] = []
        self.stopping = asyncio.Event()

    def _client(self, behaviour: Behaviour, lifetime: float = 0.0) -> Client:
        symbols = self.rng.sample(self.names, min(self.mix.symbols_per_client, len(self.names)))
        if behaviour == "slow":
            symbols = self.names  # every tick: its buffers fill while it does not read
        rng = random.Random(self.rng.getrandbits(64))
        client = Client(self.urls, sorted(symbols), behaviour, rng, self.counters, lifetime)
        self.clients.append(client)
        return client

    async def run(self) -> None:
        """Every client and the churn until stop(); returns once all have ended."""
        async with asyncio.TaskGroup() as tg:
            kinds: list[Behaviour] = ["steady", "resuming", "slow"]
            counts = (self.mix.steady, self.mix.resuming, self.mix.slow)
            for behaviour, count in zip(kinds, counts, strict=True):
                for _ in range(count):
                    tg.create_task(self._client(behaviour).run())
            if self.mix.churn_per_s:
                tg.create_task(self._churn(tg))
            await self.stopping.wait()
            for client in self.clients:
                client.stop()

    async def _churn(self, tg: asyncio.TaskGroup) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.rng.expovariate(self.mix.churn_per_s)):
                    await self.stopping.wait()
            if not self.stopping.is_set():
                tg.create_task(self._client("churn", self.rng.uniform(0.5, 8.0)).run())

    def stop(self) -> None:
        self.stopping.set()

    def histories(self) -> list[History]:
        return [client.history for client in self.clients]

    def lagging(self, stored: Stored) -> list[Client]:
        """Long-lived clients that have not yet received the last stored tick of their symbols."""
        behind = []
        for client in self.clients:
            if client.behaviour == "churn":
                continue
            due = 0
            for symbol in client.symbols:
                number = stored.index.get(symbol)
                keys = stored.log.by_symbol.get(number, []) if number is not None else []
                due = max(due, keys[-1] if keys else 0)
            if due and (client.history.last or 0) < due:
                behind.append(client)
        return behind

    async def settle(self, stored: Stored, within: float = SETTLE_TIMEOUT) -> float:
        """Wait (bounded) until no long-lived client lags; the seconds waited."""
        for client in self.clients:
            client.calm.set()
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            if not self.lagging(stored) or waited > within:
                return waited
            await asyncio.sleep(0.2)

    def describe(self) -> str:
        c = self.counters
        kinds: dict[str, int] = {}
        for client in self.clients:
            kinds[client.behaviour] = kinds.get(client.behaviour, 0) + 1
        return (
            f"clients {kinds}: {c.connects} connections, {c.ended_by_gateway} ended by a "
            f"gateway, {c.dropped_by_client} dropped by the client, {c.refused} refused or "
            f"broken, answers {c.statuses or 'all 200'}"
        )
