"""A real LiveFeed for unit tests of gateway.feed, and what they observe it with."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sized
from contextlib import asynccontextmanager
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from gateway.feed.framer import TickFramer
from gateway.feed.live import LiveFeed
from gateway.feed.outbox import Outbox
from gateway.metrics import Metrics
from gateway.settings import Settings

STREAM = "PRICES"
_EVENT_ID = re.compile(rb"^id: [0-9a-z]+-([0-9]+)$", re.MULTILINE)


def feed_settings(nats_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "gateway_id": "unit",
        "inactive_threshold": 5.0,
        "coalesce": 0.0,
    }
    return Settings(**(values | overrides))


@asynccontextmanager
async def running_live_feed(
    nc: NATS, js: JetStreamContext, settings: Settings, metrics: Metrics, waiting: Sized = ()
) -> AsyncIterator[LiveFeed]:
    """A LiveFeed following the stream inside the block; its task is cancelled on exit.
    `waiting`: the connections its flushes count as waiting for their answer."""
    framer = TickFramer(settings.max_message_bytes, metrics)
    feed = LiveFeed(nc, js, settings, metrics, framer, waiting=waiting)
    async with asyncio.TaskGroup() as tasks:
        running = tasks.create_task(feed.run())
        try:
            async with asyncio.timeout(10):
                await feed.running.wait()
            yield feed
        finally:
            running.cancel()  # run() follows the stream until cancelled


def sequences(frames: bytes) -> list[int]:
    """The stream sequences in the event ids of `frames`, in order."""
    return [int(s) for s in _EVENT_ID.findall(frames)]


def held(outbox: Outbox) -> list[int]:
    """The sequences of the events an outbox holds."""
    return [e.sequence for e in outbox.events or ()]


class RecordingReader:
    """An outbox's reader that writes nothing: it records each time it is told events are
    due (with the sequences the outbox held then) and each reason it is stopped for."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.dues: list[list[int]] = []
        self.stops: list[str] = []
        outbox.reader = self

    def on_due(self, now: float) -> None:
        self.dues.append(held(self.outbox))

    def stop(self, reason: str) -> None:
        self.stops.append(reason)
