"""gateway.feed.live on its own, against a real nats-server: one consumer framing each
message once and offering it to the outboxes of its subject, the flush telling their
readers, and what the feed does when its stream or its consumer goes away."""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from contracts.event_ids import incarnation_of
from contracts.stream import StreamSettings, ensure_stream
from contracts.symbols import subject_for
from gateway.feed import sse
from gateway.feed.flushing import STORM_WAITING
from gateway.feed.framer import TickFramer
from gateway.feed.live import LiveFeed
from gateway.feed.outbox import Outbox
from gateway.feed.splice import STREAM_REPLACED
from gateway.metrics import SKIP_REASONS, Metrics
from tests.feeds import STREAM, RecordingReader, feed_settings, held, running_live_feed
from tests.servers import eventually
from tests.ticks import event_id, publish, publish_raw

MAX_BYTES = 1024 * 1024


def outbox(*symbols: str) -> Outbox:
    """An outbox of `symbols`; none: every subject."""
    return Outbox(tuple(subject_for(s) for s in symbols) if symbols else None, MAX_BYTES)


async def publish_mix(js: JetStreamContext, symbols: list[str]) -> dict[str, list[int]]:
    """One tick per entry of `symbols`; the sequences stored, by symbol."""
    stored: dict[str, list[int]] = {}
    for i, symbol in enumerate(symbols):
        stored.setdefault(symbol, []).append(await publish(js, symbol, f"1.{i:02d}"))
    return stored


async def test_each_outbox_gets_exactly_its_subjects_events_in_stream_order(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    aapl, msft_tsla, everything = outbox("AAPL"), outbox("MSFT", "TSLA"), outbox()
    nothing_yet = await publish(js, "AAPL")  # stored before the feed starts: not its job
    async with running_live_feed(nc, js, feed_settings(nats_url), Metrics()) as feed:
        assert feed.position == nothing_yet
        for box in (aapl, msft_tsla, everything):
            feed.subscribe(box)
        stored = await publish_mix(js, ["AAPL", "MSFT", "IBM", "TSLA", "AAPL", "MSFT"] * 5)
        last = max(max(s) for s in stored.values())
        await eventually(lambda: feed.position == last, within=5, what="every tick fanned out")
    assert held(aapl) == stored["AAPL"]
    assert held(msft_tsla) == sorted(stored["MSFT"] + stored["TSLA"])
    assert held(everything) == list(range(nothing_yet + 1, last + 1))


async def test_every_outbox_of_a_subject_shares_the_same_frame_bytes(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    first, second, everything = outbox("AAPL"), outbox("AAPL", "MSFT"), outbox()
    async with running_live_feed(nc, js, feed_settings(nats_url), Metrics()) as feed:
        for box in (first, second, everything):
            feed.subscribe(box)
        stored = [await publish(js, "AAPL", f"2.{i}") for i in range(3)]
        await eventually(lambda: feed.position == stored[-1], within=5, what="fanned out")
    assert held(first) == held(second) == held(everything) == stored
    assert first.events is not None
    assert second.events is not None
    assert everything.events is not None
    for a, b, c in zip(first.events, second.events, everything.events, strict=True):
        assert a.frame is b.frame is c.frame  # framed once, not once per client
    message = await js.get_msg(STREAM, stored[0])
    assert message.data is not None
    framed = sse.event_frame((await event_id(js, stored[0])).encode(), message.data)
    assert first.events[0].frame == framed


async def test_a_poison_message_is_framed_as_a_comment_and_the_feed_goes_on(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    metrics = Metrics()
    aapl = outbox("AAPL")
    async with running_live_feed(nc, js, feed_settings(nats_url), metrics) as feed:
        feed.subscribe(aapl)
        poison = await publish_raw(js, "AAPL", b"this is no tick")
        after = await publish(js, "AAPL")
        await eventually(lambda: feed.position == after, within=5, what="both fanned out")
    assert held(aapl) == [poison, after]
    assert aapl.events is not None
    comment, tick = (e.frame for e in aapl.events)
    poison_id = await event_id(js, poison)
    assert comment.startswith(b": ")
    assert comment.endswith(b"\n\n")
    assert poison_id.encode() in comment
    assert b"this is no tick" not in comment
    assert tick.startswith(f"id: {await event_id(js, after)}\nevent: stockUpdate\n".encode())
    skipped = sum(
        metrics.registry.get_sample_value("gateway_messages_skipped_total", {"reason": r}) or 0
        for r in SKIP_REASONS
    )
    assert skipped == 1  # framed once for every outbox, so counted once


async def test_without_coalescing_readers_are_told_as_the_events_are_offered(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    aapl, everything = outbox("AAPL"), outbox()
    readers = [RecordingReader(aapl), RecordingReader(everything)]
    async with running_live_feed(nc, js, feed_settings(nats_url, coalesce=0.0), Metrics()) as feed:
        feed.subscribe(aapl)
        feed.subscribe(everything)
        stored = []
        for i in range(3):
            stored.append(await publish(js, "AAPL", f"3.{i}"))
            await eventually(lambda: feed.position == stored[-1], within=5, what="fanned out")
            # Told in the same step as the offer: no flush is left pending.
            for reader in readers:
                assert reader.dues == [stored[: j + 1] for j in range(i + 1)]
            assert not aapl.due
            assert not everything.due


async def test_a_subjects_outboxes_take_under_50_bytes_each_in_the_feed(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    """W2 at 19,000 idle clients on 5 of 50 symbols: 1,900 outboxes per subject. The
    feed's table of them counts per client for as long as it is open (docs/benchmark.md,
    idle memory); a set of them took 69 B each."""
    settings = feed_settings(nats_url)
    feed = LiveFeed(nc, js, settings, Metrics(), TickFramer(settings.max_message_bytes, Metrics()))
    boxes = [outbox("AAPL") for _ in range(1900)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for box in boxes:
            feed.subscribe(box)
        per_outbox = (tracemalloc.get_traced_memory()[0] - before) / len(boxes)
    finally:
        tracemalloc.stop()
    assert per_outbox < 50
    for box in boxes:
        feed.unsubscribe(box)
    feed.idle_since(1.0)
    assert feed.idle_since(3.0) == 2.0  # none subscribed since


class CostlyReader(RecordingReader):
    """A reader whose every on_due takes `cost` seconds of the loop (a write to many
    sockets, say)."""

    cost = 0.05

    def on_due(self, now: float) -> None:
        super().on_due(now)
        time.sleep(self.cost)  # holds the loop, as real writes do


async def test_a_light_load_is_told_at_once_even_with_a_long_coalesce(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    aapl = outbox("AAPL")
    reader = RecordingReader(aapl)
    async with running_live_feed(nc, js, feed_settings(nats_url, coalesce=1.0), Metrics()) as feed:
        feed.subscribe(aapl)
        told = []
        for price in ("1.0", "1.1", "1.2"):
            told.append(await publish(js, "AAPL", price))
            # Far less than --coalesce: the flush costs next to nothing, so it is not held.
            await eventually(
                lambda: len(reader.dues) == len(told), within=0.5, what="the tick told at once"
            )
    assert reader.dues == [told[:1], told[:2], told]


async def test_under_a_costly_flush_ticks_within_its_spacing_are_one_on_due_per_reader(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    aapl, everything = outbox("AAPL"), outbox()
    readers = [CostlyReader(aapl), CostlyReader(everything)]
    # The first flush costs 0.1 s: the next waits 0.4 s (FLUSH_SPACING), well within the
    # longest --coalesce, so the burst below surely falls within it.
    settings = feed_settings(nats_url, coalesce=1.0)
    async with running_live_feed(nc, js, settings, Metrics()) as feed:
        feed.subscribe(aapl)
        feed.subscribe(everything)
        lone = await publish(js, "AAPL")
        await eventually(
            lambda: all(r.dues for r in readers), within=5, what="a lone tick told at once"
        )
        burst = [await publish(js, "AAPL", f"4.{i}") for i in range(5)]
        await eventually(lambda: feed.position == burst[-1], within=5, what="burst fanned out")
        await eventually(
            lambda: all(len(r.dues) >= 2 for r in readers), within=5, what="the burst's flush"
        )
    for reader in readers:
        assert reader.dues == [[lone], [lone, *burst]]  # the reader took nothing meanwhile


class CostlierReader(CostlyReader):
    cost = 0.15


@pytest.mark.parametrize("storm", [False, True], ids=["few waiting", "a storm waiting"])
async def test_while_many_connections_wait_the_flushes_yield_to_them(
    nats_url: str, nc: NATS, js: JetStreamContext, storm: bool
) -> None:
    aapl = outbox("AAPL")
    reader = CostlierReader(aapl)
    # A short --coalesce: with few connections waiting, a flush follows the last one's end
    # at once; with a storm's worth, it waits 1/STORM_SHARE times the last one's cost.
    waiting = dict.fromkeys(range(STORM_WAITING + 1 if storm else STORM_WAITING), 0.0)
    settings = feed_settings(nats_url, coalesce=0.02)
    async with running_live_feed(nc, js, settings, Metrics(), waiting) as feed:
        feed.subscribe(aapl)
        lone = await publish(js, "AAPL")
        await eventually(lambda: bool(reader.dues), within=5, what="a lone tick told at once")
        burst = []
        for i in range(4):  # each after the flush its predecessor would start, if any
            burst.append(await publish(js, "AAPL", f"4.{i}"))
            await asyncio.sleep(0.03)
        await eventually(lambda: feed.position == burst[-1], within=5, what="burst fanned out")
        await eventually(
            lambda: reader.dues[-1][-1:] == burst[-1:], within=5, what="the burst told"
        )
    if storm:  # all four within the spacing after the lone tick's flush
        assert reader.dues == [[lone], [lone, *burst]]
    else:
        assert len(reader.dues) > 2, reader.dues


async def test_recreating_the_stream_ends_every_reader_as_stream_replaced(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    aapl, everything = outbox("AAPL"), outbox()
    readers = [RecordingReader(aapl), RecordingReader(everything)]
    async with running_live_feed(nc, js, feed_settings(nats_url), Metrics()) as feed:
        feed.subscribe(aapl)
        feed.subscribe(everything)
        before = await publish(js, "AAPL")
        await eventually(lambda: feed.position == before, within=5, what="fanned out")
        old = feed.incarnation
        await js.delete_stream(STREAM)
        await ensure_stream(js, StreamSettings())
        await eventually(
            lambda: all(r.stops for r in readers), within=10, what="readers told the end"
        )
        for reader in readers:
            assert reader.stops == [STREAM_REPLACED]
        info = await js.stream_info(STREAM)
        assert info.created is not None
        incarnation = incarnation_of(info.created)
        assert incarnation != old
        async with asyncio.timeout(10):
            await feed.wait_following(incarnation)
        # It follows the new stream from its start (sequences begin again at 1).
        first = await publish(js, "AAPL")
        await eventually(lambda: feed.position == first, within=5, what="new stream followed")
    assert first == 1
    assert held(aapl)[-1] == first


async def test_the_feed_recreates_its_consumer_deleted_from_outside_without_gap_or_repeat(
    nats_url: str, nc: NATS, js: JetStreamContext
) -> None:
    everything = outbox()
    async with running_live_feed(nc, js, feed_settings(nats_url), Metrics()) as feed:
        feed.subscribe(everything)
        stored = [await publish(js, "AAPL", f"5.{i}") for i in range(3)]
        await eventually(lambda: feed.position == stored[-1], within=5, what="fanned out")
        (name,) = [c.name for c in await js.consumers_info(STREAM)]
        await js.delete_consumer(STREAM, name)
        # Stored while the feed has no consumer: the next one must start at the first.
        stored += [await publish(js, symbol) for symbol in ("MSFT", "AAPL", "TSLA")]

        async def recreated() -> bool:
            names = [c.name for c in await js.consumers_info(STREAM)]
            return len(names) == 1 and names != [name]

        await eventually(recreated, within=10, what="a new live consumer")
        stored += [await publish(js, symbol) for symbol in ("IBM", "AAPL")]
        await eventually(lambda: feed.position == stored[-1], within=5, what="fanned out")
    assert held(everything) == stored
