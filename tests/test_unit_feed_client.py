"""gateway.feed.client on its own, against a real nats-server: a client's feed wired as
Hub._feed_for wires it (a real LiveFeed, real PullConsumers), without HTTP. The splice from
its own consumer to the live feed and back, its end, and its release on every exit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from gateway.errors import NatsUnavailableError, StreamEndedError
from gateway.feed.client import ClientFeed
from gateway.feed.outbox import LiveEvent
from gateway.feed.splice import (
    CATCHING_UP,
    CLIENT_CLOSED,
    DRAINING,
    ENDED,
    LIVE,
    TOKEN_EXPIRED,
    WAITING,
)
from gateway.metrics import Metrics
from tests.client_feeds import Client, Rig, next_write, read, rig
from tests.feeds import STREAM, held, sequences
from tests.servers import eventually
from tests.ticks import client_consumers, make_tick, publish, publish_raw


async def read_exactly(feed: ClientFeed, js: JetStreamContext, expected: list[int]) -> None:
    """The next events are `expected` and nothing else: a tick published after them (of
    every client's subject) comes next, with no repeat before it."""
    sentinel = await publish(js, "AAPL", "9.99")
    assert await read(feed, len(expected) + 1) == [*expected, sentinel]


async def publish_mix(js: JetStreamContext, symbols: list[str]) -> list[tuple[str, int]]:
    return [(symbol, await publish(js, symbol, f"1.{i:03d}")) for i, symbol in enumerate(symbols)]


def of(stored: list[tuple[str, int]], *symbols: str) -> list[int]:
    return [seq for symbol, seq in stored if not symbols or symbol in symbols]


def padded_tick(symbol: str, pad: int) -> bytes:
    """A valid tick of about `pad` bytes more than usual (an extra field, forwarded)."""
    return make_tick(symbol).encode()[:-1] + b',"pad":"' + b"x" * pad + b'"}'


def sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


async def test_a_fresh_client_gets_the_latest_of_each_symbol_then_every_tick_once(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    async with rig(nats_url, nc, js, pull_batch=2) as r:
        stored = await publish_mix(js, ["AAPL", "MSFT", "TSLA"] * 40)
        latest = sorted([of(stored, "AAPL")[-1], of(stored, "MSFT")[-1]])
        client = await r.client("AAPL", "MSFT")
        async with client.feed as feed:
            # Stored once its consumer exists: both sources have them, the splice sends
            # each once.
            during = of(await publish_mix(js, ["AAPL", "TSLA", "MSFT", "AAPL"]), "AAPL", "MSFT")
            got = await read(feed, 1)
            assert feed.state is CATCHING_UP
            during += of(await publish_mix(js, ["MSFT", "TSLA", "AAPL"]), "AAPL", "MSFT")
            got += await read(feed, len(latest) + len(during) - len(got))
            assert got == latest + during
            assert feed.state is LIVE
            live = of(await publish_mix(js, ["TSLA", "AAPL", "MSFT"]), "AAPL", "MSFT")
            assert await read(feed, len(live)) == live
            await read_exactly(feed, js, [])
            assert feed.sent == len(latest) + len(during) + len(live) + 1


async def test_a_client_is_live_once_caught_up_and_its_consumer_is_deleted_then(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    async with rig(nats_url, nc, js) as r:
        stored = await publish_mix(js, ["AAPL", "MSFT"] * 3)
        client = await r.client(after=of(stored)[1])
        async with client.feed as feed:
            assert feed.state is CATCHING_UP
            assert await client_consumers(js) == [client.consumer]
            assert await read(feed, 4) == of(stored)[2:]
            assert feed.state is LIVE
            with pytest.raises(NotFoundError):
                await js.consumer_info(STREAM, client.consumer)
            assert await client_consumers(js) == []
            assert sample(r.metrics, "gateway_consumers_open") == 0


@pytest.mark.parametrize("symbols", [("AAPL", "MSFT"), ()], ids=["two-symbols", "all"])
async def test_a_client_resuming_after_a_sequence_gets_exactly_the_ticks_after_it(
    nats_url: str, nc: NATS, js: JetStreamContext, symbols: tuple[str, ...]
) -> None:
    async with rig(nats_url, nc, js, pull_batch=16) as r:
        stored = await publish_mix(js, ["AAPL", "MSFT", "TSLA"] * 50)
        after = stored[30][1]
        expected = [seq for seq in of(stored, *symbols) if seq > after]
        client = await r.client(*symbols, after=after)
        async with client.feed as feed:
            got = await read(feed, 1)
            assert feed.state is CATCHING_UP
            expected += of(await publish_mix(js, ["TSLA", "AAPL", "MSFT"]), *symbols)
            got += await read(feed, len(expected) - len(got))
            assert got == expected
            assert feed.state is LIVE
            await read_exactly(feed, js, [])


async def test_a_tick_stored_while_the_consumer_is_created_reaches_the_client(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    async with rig(nats_url, nc, js) as r:
        last = await publish(js, "AAPL")
        stored: list[int] = []

        async def store_one() -> None:
            # After the consumer took its snapshot (nothing pending: the client goes live
            # at once), and handed over by the live feed before the entry returns.
            stored.append(await publish(js, "AAPL"))
            await eventually(lambda: r.live.position == stored[0], within=5, what="fanned out")

        client = await r.client("AAPL", after=last, then=store_one)
        async with client.feed as feed:
            assert stored
            assert await read(feed, 1, within=5) == stored
            assert feed.state is LIVE


async def test_a_live_client_whose_outbox_overflows_falls_back_to_its_own_consumer(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    async with rig(nats_url, nc, js, max_pending_bytes=64 * 1024, pull_batch=8) as r:
        first = await publish(js, "AAPL")
        client = await r.client("AAPL")
        assert client.outbox is not None
        async with client.feed as feed:
            assert await read(feed, 1) == [first]
            assert feed.state is LIVE
            # About 130 KiB of frames while the writer reads nothing.
            padded = [await publish_raw(js, "AAPL", padded_tick("AAPL", 2000)) for _ in range(60)]
            await eventually(lambda: r.live.position == padded[-1], within=5, what="fanned out")
            assert client.outbox.overflowed
            # What the outbox held may go out first; then, without waiting for a
            # heartbeat, the client reads a consumer of its own.
            got: list[int] = []
            while feed.state is LIVE:
                assert len(got) < len(padded), "read everything without falling back"
                got += await read(feed, 1)
            assert feed.state is CATCHING_UP
            assert sample(r.metrics, "gateway_live_fallbacks_total") == 1
            assert await client_consumers(js) == [client.consumer]
            got += await read(feed, len(padded) - len(got))
            assert got == padded
            await read_exactly(feed, js, [])
            assert feed.state is LIVE
            assert await client_consumers(js) == []
            assert sample(r.metrics, "gateway_live_fallbacks_total") == 1


@pytest.mark.parametrize("where", ["waiting-live", "pulling-own-consumer", "catching-up"])
async def test_stop_ends_the_pending_next_frames_and_the_first_reason_wins(
    nats_url: str, nc: NATS, js: JetStreamContext, where: str
) -> None:
    async with rig(nats_url, nc, js) as r:
        await publish(js, "AAPL")
        client = await r.client("AAPL", shared=where != "pulling-own-consumer")
        async with client.feed as feed:
            if where == "catching-up":
                assert feed.state is CATCHING_UP  # with one to catch up on, not asked yet
            else:
                # Awaited below, whatever happens: a task group would take its error as its own.
                pending = asyncio.create_task(read(feed, 2, within=30))
                if where == "waiting-live":
                    await eventually(lambda: feed.state is WAITING, within=5, what="waiting")
                else:
                    await eventually(lambda: pulling(js, client), within=5, what="pulling")
            feed.stop(CLIENT_CLOSED)
            feed.stop(DRAINING)
            if where != "catching-up":
                with pytest.raises(StreamEndedError) as ended:
                    async with asyncio.timeout(5):  # well before the read's 30 s
                        await pending
                assert str(ended.value) == CLIENT_CLOSED
            feed.stop(TOKEN_EXPIRED)
            assert feed.state is ENDED
            with pytest.raises(StreamEndedError) as again:
                await next_write(feed, 30.0)
            assert str(again.value) == CLIENT_CLOSED


async def pulling(js: JetStreamContext, client: Client) -> bool:
    """Whether the client's consumer has read what it had and waits on a pull request."""
    if client.feed.sent < 1:
        return False
    info = await js.consumer_info(STREAM, client.consumer)
    return (info.num_waiting or 0) > 0


class RecordingSink:
    """A connection that takes every write at once while `ready`."""

    def __init__(self) -> None:
        self.ready = True
        self.writes: list[bytes] = []

    def write_events(self, events: Sequence[LiveEvent]) -> None:
        self.writes.append(b"".join(event.frame for event in events))


async def test_due_events_are_written_to_the_sink_while_the_writer_waits(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    async with rig(nats_url, nc, js) as r:
        first = await publish(js, "AAPL")
        client = await r.client("AAPL")
        sink = RecordingSink()
        async with client.feed as feed, asyncio.TaskGroup() as tasks:
            assert await read(feed, 1) == [first]  # caught up: live
            feed.write_directly(sink)
            writer = tasks.create_task(next_write(feed, 30.0))
            await eventually(lambda: feed.state is WAITING, within=5, what="waiting")
            direct = [await publish(js, "AAPL", f"7.{i}") for i in range(2)]
            await eventually(
                lambda: sum(map(len, map(sequences, sink.writes))) == 2, within=5, what="written"
            )
            assert [seq for body in sink.writes for seq in sequences(body)] == direct
            assert feed.state is WAITING  # the writer was not woken for them
            assert not writer.done()
            assert feed.sent == 1 + 2
            assert sample(r.metrics, "gateway_events_sent_total") == 1 + 2
            # A connection that cannot take a write now: the writer is woken to do it.
            sink.ready = False
            written = len(sink.writes)  # one write per tick, or both in one: timing's choice
            woken = await publish(js, "AAPL", "8.00")
            async with asyncio.timeout(5):
                frames = await writer
            assert frames is not None
            assert sequences(frames.body) == [woken]
            assert len(sink.writes) == written  # nothing more written directly


@pytest.mark.parametrize(
    "exit_path",
    [
        "returns-catching-up",
        "raises-catching-up",
        "returns-live",
        "raises-live",
        "cancelled-waiting",
    ],
)
async def test_leaving_the_block_deletes_the_consumer_and_unsubscribes_the_outbox(
    nats_url: str, nc: NATS, js: JetStreamContext, exit_path: str
) -> None:
    async with rig(nats_url, nc, js) as r:
        await publish(js, "AAPL")
        client = await r.client("AAPL")
        assert client.outbox is not None
        inside = asyncio.Event()

        async def use() -> None:
            async with client.feed as feed:
                assert client.outbox is not None
                assert client.outbox.reader is feed
                assert await client_consumers(js) == [client.consumer]
                if exit_path.endswith(("live", "waiting")):
                    await read(feed, 1)
                    assert feed.state is LIVE
                if exit_path == "cancelled-waiting":
                    inside.set()
                    await next_write(feed, 30.0)
                if exit_path.startswith("raises"):
                    raise RuntimeError("the writer failed")

        if exit_path.startswith("raises"):
            with pytest.raises(RuntimeError, match="the writer failed"):
                await use()
        elif exit_path == "cancelled-waiting":
            task = asyncio.create_task(use())
            async with asyncio.timeout(5):
                await inside.wait()
            await eventually(lambda: client.feed.state is WAITING, within=5, what="waiting")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            await use()
        await assert_released(r, client)


async def test_a_consumer_that_cannot_be_created_leaves_no_outbox_on_the_live_feed(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    async with rig(nats_url, nc, js) as r:
        client = await r.client("AAPL", consumer_stream="NO_SUCH_STREAM")
        with pytest.raises(NatsUnavailableError):
            async with client.feed:
                pytest.fail("entered the feed of a consumer that was not created")
        await assert_released(r, client)


async def assert_released(r: Rig, client: Client) -> None:
    assert await client_consumers(r.js) == []
    assert sample(r.metrics, "gateway_consumers_open") == 0
    assert client.outbox is not None
    assert client.outbox.reader is None
    after = await publish(r.js, "AAPL")
    await eventually(lambda: r.live.position == after, within=5, what="fanned out")
    assert after not in held(client.outbox)  # no longer offered anything
