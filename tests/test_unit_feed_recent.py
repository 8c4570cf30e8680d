"""The live feed's memory (gateway.feed.recent): what it holds, what it forgets, and what
a resume or a fresh start gets from it."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from gateway.feed.outbox import LiveEvent
from gateway.feed.recent import RecentEvents

SUBJECTS = ("prices.A", "prices.B", "prices.C")


def event(sequence: int, subject: str, size: int = 10) -> LiveEvent:
    return LiveEvent(sequence, b"x" * size, None, subject)


def fed(recent: RecentEvents, subjects: list[str], now: float = 0.0, start: int = 1) -> None:
    for offset, subject in enumerate(subjects):
        recent.add(event(start + offset, subject))
    recent.trim(now, start + len(subjects) - 1)


def sequences(events: list[LiveEvent] | None) -> list[int] | None:
    return None if events is None else [e.sequence for e in events]


def test_after_gives_the_events_of_the_subjects_after_the_id_in_stream_order() -> None:
    recent = RecentEvents(60, 10_000)
    fed(recent, ["prices.A", "prices.B", "prices.A", "prices.C", "prices.B", "prices.A"])
    assert sequences(recent.after(1, ("prices.A", "prices.B"), 1_000)) == [2, 3, 5, 6]
    assert sequences(recent.after(2, None, 1_000)) == [3, 4, 5, 6]
    assert sequences(recent.after(6, ("prices.A",), 1_000)) == []
    assert sequences(recent.after(0, ("prices.Z",), 1_000)) == []


def test_events_older_than_the_window_are_forgotten_and_ids_before_them_refused() -> None:
    recent = RecentEvents(10, 10_000)
    fed(recent, ["prices.A", "prices.B"], now=0.0, start=1)
    fed(recent, ["prices.A", "prices.C"], now=5.0, start=3)
    fed(recent, ["prices.B"], now=10.5, start=5)  # the first batch is now 10.5 s old
    assert recent.since == 2
    assert recent.after(1, None, 1_000) is None  # event 2 is gone: not all held
    assert sequences(recent.after(2, None, 1_000)) == [3, 4, 5]
    assert recent.holds_after(2)
    assert not recent.holds_after(1)


def test_the_byte_bound_forgets_the_oldest_first() -> None:
    recent = RecentEvents(60, 35)  # three 10-byte frames fit, four do not
    fed(recent, ["prices.A", "prices.B", "prices.A", "prices.B", "prices.C"])
    assert recent.since == 2
    assert sequences(recent.after(2, ("prices.A", "prices.B"), 1_000)) == [3, 4]


def test_a_catch_up_over_the_budget_is_refused() -> None:
    recent = RecentEvents(60, 10_000)
    fed(recent, ["prices.A"] * 5)
    assert sequences(recent.after(0, None, 50)) == [1, 2, 3, 4, 5]
    assert recent.after(0, None, 49) is None
    assert recent.latest_of(None, 9) is None


def test_latest_holds_each_subject_even_past_the_window_and_skips_what_is_gone() -> None:
    recent = RecentEvents(0, 0)  # no window: the latest of each subject only
    fed(recent, ["prices.A", "prices.B", "prices.A"])
    assert sequences(recent.latest_of(None, 1_000)) == [2, 3]
    assert sequences(recent.latest_of(("prices.A", "prices.C"), 1_000)) == [3]
    assert sequences(recent.latest_of(None, 1_000, first=3)) == [3]  # 2 was purged
    assert recent.after(2, None, 1_000) is None  # no window holds nothing to catch up on


def test_reset_keeps_the_latest_unless_told_and_holds_from_the_new_position() -> None:
    recent = RecentEvents(60, 10_000)
    fed(recent, ["prices.A", "prices.B"])
    recent.reset(10)  # a gap: what came before 11 is not continuous with what follows
    assert recent.after(2, None, 1_000) is None
    assert sequences(recent.latest_of(None, 1_000)) == [1, 2]
    recent.reset(0, [event(7, "prices.C")])
    assert sequences(recent.latest_of(None, 1_000)) == [7]


async def test_reached_waits_for_the_feed_and_gives_up_after_the_timeout() -> None:
    recent = RecentEvents(60, 10_000)
    fed(recent, ["prices.A"])
    assert await recent.reached(1, 0.0)
    waiting = asyncio.ensure_future(recent.reached(3, 5.0))
    await asyncio.sleep(0)
    fed(recent, ["prices.B"], start=2)
    await asyncio.sleep(0)
    assert not waiting.done()
    fed(recent, ["prices.C"], start=3)
    assert await waiting
    assert not await recent.reached(9, 0.01)
    assert recent._reached == []  # no waiter left behind


@given(
    st.lists(st.sampled_from(SUBJECTS), max_size=60),
    st.integers(0, 60),
    st.sets(st.sampled_from(SUBJECTS), min_size=1),
    st.integers(20, 400),
)
def test_a_catch_up_is_exactly_what_was_handed_over_after_the_id(
    subjects: list[str], after: int, wanted: set[str], max_bytes: int
) -> None:
    recent = RecentEvents(60, max_bytes)
    for sequence, subject in enumerate(subjects, start=1):
        recent.add(event(sequence, subject))
        recent.trim(0.0, sequence)
    chosen = tuple(sorted(wanted))
    got = recent.after(after, chosen, 10_000)
    expected = [s for s, subject in enumerate(subjects, start=1) if s > after and subject in wanted]
    if after < recent.since:
        assert got is None
    else:
        assert sequences(got) == expected
