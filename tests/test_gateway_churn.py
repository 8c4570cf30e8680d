"""Many fresh clients joining while ticks flow: each gets its snapshot, then live, with
every event once and in stream order (the splice under churn)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from nats.js import JetStreamContext

from tests.conftest import StartGateway
from tests.publishing import SteadyPublisher
from tests.sse_client import open_stream

SYMBOLS = [f"S{i}" for i in range(50)]
PER_CLIENT = 5  # symbols each client asks for: its snapshot is one event per symbol
LIVE_EVENTS = 20  # what each client must get after its snapshot
EVENT_WITHIN = 5.0  # ticks of its symbols flow at ~40/s: a gap this long is a stall


@dataclass
class Seen:
    client: int
    symbols: list[str]
    events: list[tuple[int, str]] = field(default_factory=list)  # (sequence, symbol in data)
    stalled: bool = False


async def test_clients_joining_while_ticks_flow_get_each_event_once_in_order(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(shared_feed=True)
    publisher = SteadyPublisher(js, SYMBOLS, rate=400, burst=4)
    for symbol in SYMBOLS:
        await publisher.publish_one(symbol)
    rng = random.Random(7)
    everyone: list[Seen] = []

    async def client(n: int) -> None:
        seen = Seen(n, rng.sample(SYMBOLS, PER_CLIENT))
        everyone.append(seen)
        async with open_stream(gateway.url, {"symbols": ",".join(seen.symbols)}) as stream:
            while len(seen.events) < PER_CLIENT + LIVE_EVENTS:
                try:
                    event = await stream.next_event(timeout=EVENT_WITHIN)
                except TimeoutError:
                    seen.stalled = True
                    return
                seen.events.append((event.sequence, event.json()["symbol"]))

    async with asyncio.TaskGroup() as tg:
        publishing = tg.create_task(publisher.run())
        for batch in range(6):
            async with asyncio.TaskGroup() as clients:
                for i in range(40):
                    clients.create_task(client(batch * 40 + i))
        publisher.stop()
        await publishing
    # Every publish has been acknowledged: this is all the stream holds.
    stored = publisher.symbols_by_sequence
    problems = [p for seen in everyone if (p := problem(seen, stored)) is not None]
    assert len(everyone) == 240
    assert not problems, f"{len(problems)} of 240 clients:\n" + "\n".join(problems[:5])


def problem(seen: Seen, stored: dict[int, str]) -> str | None:
    """What is wrong with what one client got, or None: its snapshot (the latest stored
    price of each of its symbols when it joined), then every later tick of its symbols."""
    name = f"client {seen.client} {seen.symbols}"
    sequences = [sequence for sequence, _ in seen.events]
    if seen.stalled:
        return f"{name}: nothing for {EVENT_WITHIN}s after {len(sequences)} events {sequences}"
    wrong = [(q, symbol) for q, symbol in seen.events if stored.get(q) != symbol]
    if wrong:
        return f"{name}: events that are not the stored tick of that sequence: {wrong[:3]}"
    snapshot, live = sequences[:PER_CLIENT], sequences[PER_CLIENT:]
    if sorted(stored[q] for q in snapshot) != sorted(seen.symbols) or snapshot != sorted(snapshot):
        return f"{name}: snapshot {snapshot} is not one price of each symbol, in stream order"
    joined = snapshot[-1]  # the snapshot is what was stored by then
    stale = [
        (later, symbol)
        for q, symbol in seen.events[:PER_CLIENT]
        for later in stored
        if stored[later] == symbol and q < later <= joined
    ]
    if stale:
        return f"{name}: snapshot {snapshot} is older than stored ticks {stale[:3]}"
    expected = sorted(q for q in stored if stored[q] in seen.symbols and q > joined)
    if live != expected[: len(live)]:
        return f"{name}: live {live} where the stream holds {expected[: len(live)]}"
    return None
