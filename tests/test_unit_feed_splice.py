"""The splice's table on its own: every (state, event) pair, the ones that must raise too."""

from __future__ import annotations

import itertools

import pytest

from gateway.feed.splice import (
    CATCHING_UP,
    CAUGHT_UP,
    CLIENT_CLOSED,
    DRAINING,
    END,
    ENDED,
    LIVE,
    OVERFLOWED,
    TRANSITIONS,
    WAIT,
    WAITING,
    WOKEN,
    Event,
    Splice,
    SpliceError,
    State,
)

# The whole machine, written out once more by hand: a change to the table must change this.
EXPECTED = {
    (CATCHING_UP, CAUGHT_UP): LIVE,
    (CATCHING_UP, END): ENDED,
    (LIVE, WAIT): WAITING,
    (LIVE, OVERFLOWED): CATCHING_UP,
    (LIVE, END): ENDED,
    (WAITING, WOKEN): LIVE,
    (WAITING, END): ENDED,
    (ENDED, END): ENDED,
    (ENDED, WOKEN): ENDED,
    (ENDED, CAUGHT_UP): ENDED,
}


def at(state: State) -> Splice:
    """A splice brought to `state` by the events a stream reports on its way there."""
    splice = Splice()
    path = {
        CATCHING_UP: [],
        LIVE: [CAUGHT_UP],
        WAITING: [CAUGHT_UP, WAIT],
        ENDED: [END],
    }[state]
    for event in path:
        splice.handle(event, CLIENT_CLOSED)
    assert splice.state is state
    return splice


def test_the_table_is_the_machine_drawn_in_the_docstring() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_state_and_event(state: State, event: Event) -> None:
    splice = at(state)
    if (state, event) in EXPECTED:
        assert splice.handle(event, DRAINING) is EXPECTED[state, event]
        assert splice.state is EXPECTED[state, event]
    else:
        with pytest.raises(SpliceError, match=f"{event.value!r} cannot happen while"):
            splice.handle(event)
        assert splice.state is state  # a refused event changes nothing


def test_a_stream_starts_catching_up_with_no_reason() -> None:
    splice = Splice()
    assert (splice.state, splice.reason) == (CATCHING_UP, None)


def test_the_first_reason_to_end_is_the_one_kept() -> None:
    splice = at(WAITING)
    splice.handle(END, DRAINING)
    splice.handle(END, CLIENT_CLOSED)
    splice.handle(WOKEN)
    assert (splice.state, splice.reason) == (ENDED, DRAINING)


def test_a_live_client_that_overflows_catches_up_again_and_can_go_live_again() -> None:
    splice = at(LIVE)
    assert splice.handle(OVERFLOWED) is CATCHING_UP
    assert splice.handle(CAUGHT_UP) is LIVE
