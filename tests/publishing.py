"""A test-side publisher loop that keeps every tick exactly once across NATS outages:
each tick keeps its Nats-Msg-Id through retries, so JetStream stores it once."""

from __future__ import annotations

import asyncio
import itertools

from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from contracts.messages import message_id
from contracts.symbols import subject_for
from tests.ticks import make_tick


class SteadyPublisher:
    def __init__(
        self,
        js: JetStreamContext,
        symbols: list[str],
        rate: float,
        source: str = "steady",
        extra: dict[str, str] | None = None,
        burst: int = 1,
    ) -> None:
        self.js = js
        self.symbols = symbols
        self.burst = burst  # ticks published concurrently each interval, for high rates
        self.interval = burst / rate
        self.source = source
        self.extra = extra or {}
        self.sequences: set[int] = set()  # stream sequences of what was stored
        self.symbols_by_sequence: dict[int, str] = {}
        self.retries = 0
        self.stopping = asyncio.Event()
        self._ids = itertools.count(1)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        for n in itertools.count(1):
            if self.stopping.is_set():
                return
            if self.burst == 1:
                await self.publish_one(self.symbols[n % len(self.symbols)])
            else:
                await asyncio.gather(
                    *(
                        self.publish_one(self.symbols[(n + i) % len(self.symbols)])
                        for i in range(self.burst)
                    )
                )
            next_at += self.interval
            if (delay := next_at - loop.time()) > 0:
                await asyncio.sleep(delay)

    async def publish_one(self, symbol: str) -> None:
        n = next(self._ids)
        tick = make_tick(symbol, f"{100 + n % 50}.{n % 100:02d}", self.source)
        if self.extra:
            tick = tick.model_copy(update=self.extra)
        sequence = await self._publish(
            subject_for(symbol), tick.encode(), message_id(self.source, n)
        )
        self.symbols_by_sequence[sequence] = symbol

    async def _publish(self, subject: str, body: bytes, msg_id: str) -> int:
        while True:
            try:
                ack = await self.js.publish(
                    subject, body, timeout=1.0, headers={"Nats-Msg-Id": msg_id}
                )
                self.sequences.add(ack.seq)
                return ack.seq
            except (NatsError, TimeoutError):
                self.retries += 1
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.stopping.set()
