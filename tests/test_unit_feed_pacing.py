"""gateway.feed.pacing on its own: a due reader is told at once unless it was written to
less than the gap ago, and the gap follows the share of time the feed works (timed here
by a given clock: one that leaps makes every piece of work look long)."""

from __future__ import annotations

import asyncio

from contracts.symbols import subject_for
from gateway.feed.outbox import LiveEvent, Outbox, Policy
from gateway.feed.pacing import MIN_GAP, TARGET, TICK, WINDOW, Pacer
from tests.feeds import Leaping, RecordingReader
from tests.servers import eventually

AAPL = subject_for("AAPL")


def reader(last_write: float) -> RecordingReader:
    recorder = RecordingReader(Outbox((AAPL,), 1024 * 1024))
    recorder.last_write = last_write
    return recorder


def offer(pacer: Pacer, readers: list[RecordingReader], sequence: int) -> None:
    """One event to every reader's outbox, the due ones handed to the pacer (as the feed does)."""
    started = pacer.clock()
    event = LiveEvent(sequence, b"data: %d\n\n" % sequence, None, AAPL)
    due: list[Policy] = [r.outbox for r in readers if r.outbox.offer(event)]
    pacer.due(due, started)


async def test_a_reader_written_to_within_the_gap_waits_for_its_end_and_is_told_once() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(1.0, clock=Leaping(1.0))  # a feed working all the time: the gap stays
    pacer.gap = 0.2
    now = loop.time()
    idle, busy = reader(now - 1.0), reader(now)
    offer(pacer, [idle, busy], 1)
    assert idle.dues == [[1]]  # idle longer than the gap: told in the same step
    assert busy.dues == []
    offer(pacer, [idle, busy], 2)
    offer(pacer, [idle, busy], 3)
    assert idle.dues == [[1]]  # its gap runs from that write now
    assert busy.dues == []
    await eventually(
        lambda: len(busy.dues) == 1 and len(idle.dues) == 2, within=5, what="told after the gap"
    )
    assert loop.time() >= now + 0.2 - TICK  # not before the gap was over
    # Everything gathered, one on_due each (the recorder releases nothing).
    assert busy.dues == [[1, 2, 3]]
    assert idle.dues == [[1], [1, 2, 3]]
    assert not busy.outbox.due
    assert not idle.outbox.due
    pacer.close()


async def test_the_gap_grows_while_the_feed_works_up_to_the_cap_and_drops_to_0_when_idle() -> None:
    clock = Leaping(2 * WINDOW)  # every piece of work longer than a window: never resting
    pacer = Pacer(0.02, clock=clock)
    pacer.due([], clock())  # the first window begins
    grown = [pacer.gap]
    for _ in range(30):
        await asyncio.sleep(WINDOW)
        pacer.due([], clock())
        grown.append(pacer.gap)
        if pacer.gap == 0.02:
            break
    assert grown[1] >= MIN_GAP
    assert grown == sorted(grown)
    assert grown[-1] == 0.02  # at most the cap
    clock.step = WINDOW * TARGET / 2  # working half the target share (or less)
    await asyncio.sleep(WINDOW)
    pacer.due([], clock())
    assert 0 < pacer.gap < 0.02  # closer
    clock.step = 0.0  # a quiet spell: the next tick goes at once
    await asyncio.sleep(WINDOW * 10)
    pacer.due([], clock())
    assert pacer.gap == 0.0


async def test_without_a_cap_every_due_reader_is_told_at_once_however_busy() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(0.0, clock=Leaping(1.0))
    readers = [reader(loop.time()) for _ in range(3)]
    for sequence in range(1, 4):
        await asyncio.sleep(WINDOW)
        offer(pacer, readers, sequence)
        assert pacer.gap == 0.0
        for recorder in readers:
            assert recorder.dues[-1] == list(range(1, sequence + 1))
