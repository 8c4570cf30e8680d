"""gateway.feed.outbox on its own, no I/O: order, the due flag, the byte bound (drop-oldest
while catching up, overflow once live), discard_through, restart, and exact byte counts."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.feed.outbox import LiveEvent, Outbox


def event(sequence: int, size: int = 4) -> LiveEvent:
    """An event whose frame is `size` bytes."""
    return LiveEvent(sequence, b"x" * size, None, "prices.AAPL")


def take(outbox: Outbox) -> Sequence[LiveEvent]:
    """What the reader takes from the outbox (released after sequence 0: everything)."""
    events, _ = outbox.release(0, 0.0)
    return events


def kept(outbox: Outbox) -> list[int]:
    return [e.sequence for e in outbox.events or ()]


def assert_accounted(outbox: Outbox) -> None:
    """pending_bytes is exactly the bytes of the frames held."""
    assert outbox.pending_bytes == sum(len(e.frame) for e in outbox.events or ())


def filled(sizes: list[int], *, max_bytes: int, live: bool) -> Outbox:
    """An outbox offered events 1, 2, ... of `sizes` bytes."""
    outbox = Outbox(("prices.AAPL",), max_bytes)
    outbox.live = live
    for sequence, size in enumerate(sizes, start=1):
        outbox.offer(event(sequence, size))
        assert_accounted(outbox)
    return outbox


def test_a_new_outbox_is_empty_and_holds_no_deque() -> None:
    outbox = Outbox(None, 100)
    assert outbox.events is None  # no deque per idle client
    assert outbox.pending_bytes == 0
    assert take(outbox) == ()
    assert outbox.covers_after(0)


def test_take_returns_every_event_in_the_order_offered_and_empties_it() -> None:
    events = [event(3, 5), event(4, 7), event(9, 1)]
    outbox = Outbox(None, 100)
    for e in events:
        outbox.offer(e)
    assert outbox.pending_bytes == 13
    taken = take(outbox)
    assert list(taken) == events
    assert all(a is b for a, b in zip(taken, events, strict=True))  # the same objects
    assert outbox.events is None
    assert outbox.pending_bytes == 0
    assert take(outbox) == ()


def test_offer_asks_for_the_flush_once_until_the_flush_clears_due() -> None:
    outbox = Outbox(None, 100)
    assert [outbox.offer(event(s)) for s in (1, 2, 3)] == [True, False, False]
    assert outbox.due
    take(outbox)  # the reader taking its events does not take it off the flush's list
    assert outbox.due
    assert outbox.offer(event(4)) is False
    outbox.due = False  # what the live feed's flush does before telling the reader
    assert outbox.offer(event(5)) is True
    assert outbox.offer(event(6)) is False
    assert kept(outbox) == [4, 5, 6]


@pytest.mark.parametrize(
    ("sizes", "max_bytes", "expected_kept", "expected_dropped_through"),
    [
        ([4, 4], 8, [1, 2], 0),  # at the bound: nothing dropped
        ([4, 4, 4], 8, [2, 3], 1),
        ([4, 4, 4, 4, 4], 8, [4, 5], 3),
        ([2, 2, 2, 7], 8, [4], 3),  # one big event pushes out several small ones
        ([7, 2, 2], 8, [2, 3], 1),
        ([3, 9], 8, [], 2),  # an event over the bound on its own goes too
        ([9, 1], 8, [2], 1),
    ],
)
def test_while_catching_up_the_oldest_events_make_room(
    sizes: list[int], max_bytes: int, expected_kept: list[int], expected_dropped_through: int
) -> None:
    outbox = filled(sizes, max_bytes=max_bytes, live=False)
    assert kept(outbox) == expected_kept
    assert outbox.dropped_through == expected_dropped_through
    assert outbox.pending_bytes <= max_bytes
    assert not outbox.overflowed
    assert_accounted(outbox)


@pytest.mark.parametrize(("dropped_through", "covered_from"), [(0, 0), (1, 1), (3, 3)])
def test_covers_after_says_whether_any_event_after_a_sequence_was_dropped(
    dropped_through: int, covered_from: int
) -> None:
    outbox = filled([4] * (dropped_through + 2), max_bytes=8, live=False)
    assert outbox.dropped_through == dropped_through
    for sequence in range(covered_from):
        assert not outbox.covers_after(sequence), sequence
    for sequence in range(covered_from, covered_from + 5):
        assert outbox.covers_after(sequence), sequence


@pytest.mark.parametrize(
    ("sizes", "max_bytes", "expected_kept", "expected_returns", "overflowed"),
    [
        # The offer that goes over the bound keeps its event; later ones are refused.
        ([4, 4, 4, 4], 8, [1, 2, 3], [True, False, False, False], True),
        ([9, 4], 8, [1], [True, False], True),  # told at once: the reader must see it
        ([8], 8, [1], [True], False),  # at the bound is not over it
        ([4, 4], 8, [1, 2], [True, False], False),
    ],
)
def test_once_live_going_over_the_bound_overflows_and_keeps_what_it_holds(
    sizes: list[int],
    max_bytes: int,
    expected_kept: list[int],
    expected_returns: list[bool],
    overflowed: bool,
) -> None:
    outbox = Outbox(("prices.AAPL",), max_bytes)
    outbox.live = True
    returns = []
    for sequence, size in enumerate(sizes, start=1):
        returns.append(outbox.offer(event(sequence, size)))
        assert_accounted(outbox)
    assert returns == expected_returns
    assert kept(outbox) == expected_kept
    assert outbox.overflowed is overflowed
    assert outbox.dropped_through == 0  # nothing dropped: the client falls back instead


def test_an_overflowed_outbox_refuses_offers_even_after_the_flush_clears_due() -> None:
    outbox = filled([4, 4, 4], max_bytes=8, live=True)
    assert outbox.overflowed
    outbox.due = False
    assert outbox.offer(event(4)) is False
    assert not outbox.due  # not put on the flush's list again
    assert kept(outbox) == [1, 2, 3]
    assert outbox.pending_bytes == 12


@pytest.mark.parametrize(
    ("through", "expected_kept"),
    [
        (0, [3, 5, 7]),
        (2, [3, 5, 7]),
        (3, [5, 7]),
        (4, [5, 7]),
        (6, [7]),
        (7, []),
        (100, []),
    ],
)
def test_discard_through_forgets_the_events_up_to_a_sequence(
    through: int, expected_kept: list[int]
) -> None:
    outbox = Outbox(None, 1000)
    for sequence, size in ((3, 1), (5, 10), (7, 100)):
        outbox.offer(event(sequence, size))
    outbox.discard_through(through)
    assert kept(outbox) == expected_kept
    assert_accounted(outbox)


def test_discard_through_on_an_empty_outbox_does_nothing() -> None:
    outbox = Outbox(None, 100)
    outbox.discard_through(10)
    assert outbox.events is None
    assert outbox.pending_bytes == 0


@pytest.mark.parametrize("live", [True, False])
def test_restart_buffers_afresh_as_a_catching_up_outbox(live: bool) -> None:
    outbox = filled([4, 4, 4, 4], max_bytes=8, live=live)
    assert outbox.overflowed or outbox.dropped_through
    outbox.restart()
    assert (outbox.events, outbox.pending_bytes) == (None, 0)
    assert not outbox.live
    assert not outbox.overflowed
    assert outbox.dropped_through == 0
    assert outbox.covers_after(0)
    outbox.offer(event(5))
    assert kept(outbox) == [5]
    assert_accounted(outbox)


# One step on an outbox: offer an event of that many bytes, or another operation.
_steps = st.one_of(
    st.integers(min_value=0, max_value=40),
    st.sampled_from(["take", "discard", "restart", "live", "flush"]),
)


@given(st.lists(_steps, max_size=60), st.integers(min_value=1, max_value=64))
def test_pending_bytes_and_order_hold_through_any_sequence_of_operations(
    steps: list[int | str], max_bytes: int
) -> None:
    outbox = Outbox(None, max_bytes)
    sequence = 0
    for step in steps:
        if isinstance(step, int):
            sequence += 1
            outbox.offer(event(sequence, step))
        elif step == "take":
            take(outbox)
        elif step == "discard":
            outbox.discard_through(sequence - 2)
        elif step == "restart":
            outbox.restart()
        elif step == "live":
            outbox.live = True
        else:
            outbox.due = False
        assert_accounted(outbox)
        held = kept(outbox)
        assert held == sorted(held)
        assert not held or held[0] > outbox.dropped_through
        if not outbox.live:
            assert outbox.pending_bytes <= max_bytes
