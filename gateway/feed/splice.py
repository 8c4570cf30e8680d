"""The splice: which source serves a client's stream, as one state machine.

Everything that moves a stream between its sources lives in this file, as a table. The
client's writer task, the live feed's flush and the hub's sweep only report events (and
read the state); none of them sets a flag of its own.

    CATCHING_UP --caught_up--> LIVE --wait--> WAITING --woken--> LIVE
    LIVE --overflowed--> CATCHING_UP
    any state --end(reason)--> ENDED

- CATCHING_UP: the writer reads the client's own JetStream consumer; the live feed
  buffers for the client meanwhile, dropping its oldest events when it must.
- LIVE: the consumer is gone; the writer takes the client's events from the live feed.
- WAITING: live, and the writer waits for events: the live feed's flush may write them
  to the connection itself (no task switch per client and write).
- ENDED: for good; the first reason reported is the one the client is told.

An event that does not fit the current state is a bug, raised at once as SpliceError.
"""

from __future__ import annotations

import enum
from typing import Final

# Why a stream ends, as the client and the log are told.
CLIENT_CLOSED: Final = "client closed"
DRAINING: Final = "gateway draining"
TOKEN_EXPIRED: Final = "token expired"
SLOW_CLIENT: Final = "client too slow"
FEED_LOST: Final = "the gateway lost its live feed"
STREAM_REPLACED: Final = "the stream was recreated"
FELL_BEHIND: Final = "fell behind the delayed feed"
# Ends the gateway chose, as opposed to a consumer or the live feed failing.
ORDERLY_ENDS: Final = frozenset({CLIENT_CLOSED, DRAINING, TOKEN_EXPIRED, SLOW_CLIENT, FELL_BEHIND})


class State(enum.Enum):
    CATCHING_UP = "catching up"
    LIVE = "live"
    WAITING = "waiting"
    ENDED = "ended"


class Event(enum.Enum):
    CAUGHT_UP = "caught up"  # the consumer has nothing pending; the buffer has the rest
    OVERFLOWED = "overflowed"  # a live client's buffer went over its bound
    WAIT = "wait"  # the writer waits for live events
    WOKEN = "woken"  # the writer runs again (events, a heartbeat due, or the end)
    END = "end"


CATCHING_UP, LIVE, WAITING, ENDED = State
CAUGHT_UP, OVERFLOWED, WAIT, WOKEN, END = Event

TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (CATCHING_UP, CAUGHT_UP): LIVE,
    (CATCHING_UP, END): ENDED,
    (LIVE, WAIT): WAITING,
    (LIVE, OVERFLOWED): CATCHING_UP,
    (LIVE, END): ENDED,
    (WAITING, WOKEN): LIVE,
    (WAITING, END): ENDED,
    # Several parties may end a stream (the client leaves while the gateway drains).
    (ENDED, END): ENDED,
    # The writer waiting when the end came wakes up to it; one reading its consumer when
    # the end came may find it caught up: ended all the same.
    (ENDED, WOKEN): ENDED,
    (ENDED, CAUGHT_UP): ENDED,
}


class SpliceError(RuntimeError):
    """An event reported in a state where it cannot happen: a bug in the reporter."""


class Splice:
    """One client's position in the table; `reason` says why it ended."""

    __slots__ = ("reason", "state")

    def __init__(self) -> None:
        self.state = CATCHING_UP
        self.reason: str | None = None

    def handle(self, event: Event, reason: str | None = None) -> State:
        """Apply `event` (`reason` goes with END) and return the new state."""
        try:
            state = TRANSITIONS[self.state, event]
        except KeyError:
            raise SpliceError(f"{event.value!r} cannot happen while {self.state.value}") from None
        if event is END and self.reason is None:
            self.reason = reason
        self.state = state
        return state
