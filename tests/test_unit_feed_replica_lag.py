"""A client's consumer that reads a copy of the stream behind the live feed's.

An R1 consumer of a replicated stream is placed on any replica and delivers from that
replica's copy, which may not have the newest messages yet: it can report nothing
pending while the live feed (on another replica) has already handed over more. Here the
copy is a mirror started past the tick the client would miss, on a real nats-server: the
mirror keeps the stream's sequences, and never has that tick (a replica gets it late).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig, StreamSource

from gateway.feed.splice import CATCHING_UP
from tests.client_feeds import Client, next_write, rig
from tests.feeds import STREAM
from tests.servers import eventually
from tests.ticks import publish

COPY = "PRICES_COPY"


async def behind_copy(js: JetStreamContext, first: int) -> None:
    """A copy of the stream from sequence `first` on, once it has all of that."""
    await js.add_stream(
        StreamConfig(
            name=COPY,
            mirror=StreamSource(name=STREAM, opt_start_seq=first),
            storage=StorageType.MEMORY,
        )
    )
    last = (await js.stream_info(STREAM)).state.last_seq
    await eventually(lambda: copied(js, last), within=5, what=f"the copy holding up to {last}")


async def copied(js: JetStreamContext, last: int) -> bool:
    return (await js.stream_info(COPY)).state.last_seq >= last


@asynccontextmanager
async def lagging(
    nats_url: str, nc: NATS, js: JetStreamContext, **overrides: Any
) -> AsyncIterator[Client]:
    """A client of AAPL resuming after one AAPL tick, whose consumer reads a copy that
    lacks the next one (the feed has handed both over, and an MSFT tick after them)."""
    async with rig(nats_url, nc, js, **overrides) as r:
        had = await publish(js, "AAPL")
        missing = await publish(js, "AAPL")
        other = await publish(js, "MSFT")
        await eventually(lambda: r.live.position == other, within=5, what="the feed at MSFT")
        await behind_copy(js, missing + 1)
        try:
            yield await r.client("AAPL", after=had, consumer_stream=COPY)
        finally:
            await js.delete_stream(COPY)


@pytest.mark.parametrize(
    "resume_window",
    [60.0, 0.0],
    ids=["the feed's memory holds the tick", "no memory: the stream's leader is asked"],
)
async def test_a_client_whose_consumers_copy_lacks_a_tick_is_not_live_without_it(
    nats_url: str, nc: NATS, js: JetStreamContext, resume_window: float
) -> None:
    async with (
        lagging(nats_url, nc, js, resume_window=resume_window) as client,
        client.feed as feed,
    ):
        async with asyncio.timeout(5):
            assert await next_write(feed, 1.0) is None  # a heartbeat's wait, nothing sent
        # Its consumer has nothing pending (past the client's id its copy has MSFT only),
        # yet the client goes on catching up: live now, it would never get the tick.
        assert feed.state is CATCHING_UP
