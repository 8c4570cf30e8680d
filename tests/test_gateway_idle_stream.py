"""What an idle stream keeps alive: its size is the gateway's memory per connection.

A stream that waits for events is one task; every coroutine frame on its stack, and every
generator its frames hold, costs a few hundred bytes for as long as the stream is open
(docs/benchmark.md, the idle memory breakdown).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import types
from typing import Any

import pytest
from nats.js import JetStreamContext

from gateway.feed.catch_up import CatchUp
from gateway.feed.splice import WAITING
from gateway.feed.writes import Frames
from tests.aftermath import assert_unharmed
from tests.conftest import StartGateway
from tests.scrape import scrape
from tests.servers import eventually
from tests.sse_client import open_stream
from tests.ticks import event_id, publish

pytestmark = pytest.mark.timeout(60)


def stack(task: asyncio.Task[Any]) -> tuple[list[types.CoroutineType[Any, Any, Any]], Any]:
    """The coroutines on a task's stack, outermost first, and what the innermost awaits."""
    coroutines = []
    step: Any = task.get_coro()
    while isinstance(step, types.CoroutineType):
        coroutines.append(step)
        step = step.cr_await
    return coroutines, step


async def test_an_idle_live_stream_waits_in_one_coroutine_frame_and_no_generator(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    await publish(js, "AAPL")
    gateway = await start_gateway(shared_feed=True, heartbeat=30.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.settings.port)
    try:
        writer.write(b"GET /stocks?symbols=AAPL,MSFT HTTP/1.1\r\nHost: gateway\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"id: "), 10)  # the latest AAPL price
        feeds = gateway.hub._clients
        await eventually(
            lambda: [f.state for f in feeds.values()] == [WAITING], within=10, what="waiting"
        )
        [(coroutines, innermost)] = [
            (coroutines, innermost)
            for coroutines, innermost in map(stack, asyncio.all_tasks())
            if coroutines and coroutines[0].__qualname__ == "PriceStream.run"
        ]
        # The stream's frame (the request's checks took no await: the endpoint returned
        # before the task began), and the wake-up future (`await future`): the feed's
        # own methods have returned while it waits.
        assert [c.__qualname__ for c in coroutines] == ["PriceStream.run"]
        assert type(innermost).__name__ == "FutureIter"
        # What their frames refer to: locals, and the values on their stacks (the context
        # managers of their `async with` blocks among them).
        kept = gc.get_referents(*coroutines)
        generators = (types.AsyncGeneratorType, types.GeneratorType, types.CoroutineType)
        assert not [o for o in kept if isinstance(o, generators) and o not in coroutines]
        assert not [o for o in kept if isinstance(getattr(o, "gen", None), generators)], (
            "a generator-based context manager held for the life of the stream"
        )
        # Nor the last write's frames: only the shared IDLE marker.
        assert not [o for o in kept if isinstance(o, Frames) and o.body]
    finally:
        writer.close()
    await eventually(lambda: not gateway.hub.open_streams, within=10, what="stream closed")
    await assert_unharmed(gateway, js)


async def test_what_idle_streams_have_alike_is_one_object_for_all_of_them(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    """The task's name and its done callback's context, the delivery asked for (every
    tick), the function the transport hands the client's bytes to: per stream, each
    would be an object of its own for as long as the stream is open."""
    await publish(js, "AAPL")
    gateway = await start_gateway(shared_feed=True, heartbeat=30.0)
    writers = []
    try:
        for symbols in ("AAPL", "AAPL,MSFT"):
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.settings.port)
            writers.append(writer)
            writer.write(b"GET /stocks?symbols=%s HTTP/1.1\r\nHost: g\r\n\r\n" % symbols.encode())
            await asyncio.wait_for(reader.readuntil(b"id: "), 10)
        feeds = gateway.hub._clients
        await eventually(
            lambda: [f.state for f in feeds.values()] == [WAITING] * 2, within=10, what="waiting"
        )
        runs = {t: stack(t)[0][0] for t in asyncio.all_tasks() if stack(t)[0]}
        first, second = [t for t, run in runs.items() if run.__qualname__ == "PriceStream.run"]
        assert first.get_name() is second.get_name()  # not a "Task-<n>" string each
        # Each has one done callback, run in the same (empty) context: not a copy each.
        [(_, first_context)], [(_, second_context)] = first._callbacks, second._callbacks
        assert first_context is second_context
        streams = [_locals(runs[first]), _locals(runs[second])]
        assert streams[0]["self"].query.delivery is streams[1]["self"].query.delivery
        connection = streams[0]["sink"]
        assert connection.data_received is connection.data_received  # no bound method each
    finally:
        for writer in writers:
            writer.close()
    await eventually(lambda: not gateway.hub.open_streams, within=10, what="streams closed")
    await assert_unharmed(gateway, js)


def _locals(coroutine: types.CoroutineType[Any, Any, Any]) -> dict[str, Any]:
    frame = coroutine.cr_frame
    assert frame is not None  # suspended, not done
    return frame.f_locals


@pytest.mark.parametrize("start", ["from-memory", "from-jetstream"])
async def test_a_live_stream_keeps_no_catch_up_of_its_own(
    start_gateway: StartGateway, js: JetStreamContext, start: str
) -> None:
    """Its consumer and what would make one again go once it is live: a fall-back makes
    them anew (tests/test_gateway_splice.py)."""
    first = await publish(js, "AAPL")
    await publish(js, "AAPL")
    # No resume window: a resume catches up from a consumer of its own, then goes live.
    gateway = await start_gateway(shared_feed=True, heartbeat=30.0, resume_window=0)
    headers = {"Last-Event-ID": await event_id(js, first)} if start == "from-jetstream" else {}
    async with open_stream(gateway.url, {"symbols": "AAPL"}, headers) as stream:
        await stream.next_event()
        feeds = gateway.hub._clients
        await eventually(
            lambda: [f.state for f in feeds.values()] == [WAITING], within=10, what="waiting"
        )
        [feed] = feeds.values()
        kept = gc.get_referents(feed)
        assert not [o for o in kept if isinstance(o, CatchUp | functools.partial)]
        assert feed.consumer_name is None
    resumed = (await scrape(gateway))["gateway_resumes_total{source=jetstream}"]
    assert resumed == (start == "from-jetstream")
    await eventually(lambda: not gateway.hub.open_streams, within=10, what="stream closed")
    await assert_unharmed(gateway, js)
