"""Many fresh clients joining while ticks flow: each gets its snapshot, then live, with
every event once and in stream order (the splice under churn)."""

from __future__ import annotations

import asyncio
import random

from nats.js import JetStreamContext

from tests.conftest import StartGateway
from tests.publishing import SteadyPublisher
from tests.sse_client import open_stream

SYMBOLS = [f"S{i}" for i in range(50)]


async def test_clients_joining_while_ticks_flow_get_each_event_once_in_order(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(shared_feed=True)
    publisher = SteadyPublisher(js, SYMBOLS, rate=400, burst=4)
    for symbol in SYMBOLS:
        await publisher.publish_one(symbol)
    rng = random.Random(7)
    problems: list[str] = []

    async def client(n: int) -> None:
        symbols = rng.sample(SYMBOLS, 5)
        async with open_stream(gateway.url, {"symbols": ",".join(symbols)}) as stream:
            seen: list[int] = []
            while True:
                try:
                    event = await stream.next_event(timeout=0.6)
                except TimeoutError:
                    break
                seen.append(event.sequence)
                if len(seen) > 40:
                    break
        if seen != sorted(set(seen)):
            problems.append(f"client {n} {symbols}: {seen}")

    async with asyncio.TaskGroup() as tg:
        publishing = tg.create_task(publisher.run())
        for batch in range(6):
            async with asyncio.TaskGroup() as clients:
                for i in range(40):
                    clients.create_task(client(batch * 40 + i))
        publisher.stop()
        await publishing
    assert not problems, "\n".join(problems[:5])
