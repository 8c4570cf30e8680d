"""When the live feed tells a client's reader that events are due: at once, unless the
client was written to less than `gap` seconds ago; then once that gap is over.

A client that was quiet gets its tick in the same loop step it arrives in; one that is
busy gets its events gathered, one write per `gap` at most. Nothing waits on a global
tick: each client's gap runs from its own last write, so the writes of a loaded feed are
spread over time instead of bunched into one long flush that every client waits behind.

`gap` follows how busy the feed keeps the event loop: the wall time of its dispatches and
the writes they lead to, over every WINDOW. Above TARGET of the time the gap grows (fewer,
larger writes; at most `--coalesce`), below it shrinks to 0. A write costs mostly per
write (a send syscall), not per event, so this keeps the loop free for the rest at any
rate, while a moderate load still goes out at once to most clients. Wall time, not CPU
time: a process that shares its core gets less done per second and spaces its writes out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from gateway.feed.outbox import Policy

TICK = 0.001  # a client waiting out its gap is told at the whole TICK after it ends
WINDOW = 0.1  # seconds of loop time behind each change of the gap
TARGET = 0.6  # the share of the loop's time the feed may take before writes are spaced
MIN_GAP = 0.001  # a gap below this is 0: the loop's clock counts milliseconds


class Pacer:
    """Tells the readers of due outboxes, each at once or at the end of its gap."""

    def __init__(self, cap: float, clock: Callable[[], float] = time.perf_counter) -> None:
        """`cap`: the longest gap (--coalesce; 0: never one). `clock`: what the feed's
        work is timed with."""
        self.gap = 0.0
        self._cap = cap
        self.clock = clock  # the feed times its dispatches with it too
        # Outboxes waiting out a gap, by the TICK they are due at (an int: loop time / TICK).
        self._slots: dict[int, list[Policy]] = {}
        self._first_slot = 0  # the earliest slot, while any outbox waits
        self._timer: asyncio.TimerHandle | None = None
        self._window_at: float | None = None  # loop time the current window began
        self._busy = 0.0  # seconds of work in it

    def due(self, outboxes: list[Policy], started: float) -> None:
        """`outboxes` have just become due (each marked `due`): told now, or slotted.
        `started`: the clock when the dispatch that made them due began."""
        now = asyncio.get_running_loop().time()
        gap = self.gap
        slots = self._slots
        first = self._first_slot if slots else math.inf
        for outbox in outboxes:
            reader = outbox.reader
            if reader is None:
                outbox.due = False  # its client has left
            elif (at := reader.last_write + gap) <= now:
                outbox.due = False
                reader.on_due(now)
            else:
                slot = math.ceil(at / TICK)
                waiting = slots.get(slot)
                if waiting is None:
                    slots[slot] = [outbox]
                    first = min(first, slot)
                else:
                    waiting.append(outbox)
        if slots and (self._timer is None or first < self._first_slot):
            self._first_slot = int(first)
            self._schedule()
        self._measure(now, started)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(self._first_slot * TICK, self._on_tick)

    def _on_tick(self) -> None:
        started = self.clock()
        self._timer = None
        now = asyncio.get_running_loop().time()
        slots = self._slots
        last = round(now / TICK)  # not floor: 0.105 / 0.001 is 104.999...
        for slot in range(self._first_slot, last + 1):
            waiting = slots.pop(slot, None)
            if waiting is None:
                continue
            for outbox in waiting:
                outbox.due = False
                if (reader := outbox.reader) is not None:
                    reader.on_due(now)
        if slots:
            self._first_slot = min(slots)  # a few: one per TICK of the longest gap at most
            self._schedule()
        self._measure(now, started)

    def _measure(self, now: float, started: float) -> None:
        """Count the work since `started`; every WINDOW, the gap times the share of the
        time worked over TARGET, within [0, cap]."""
        self._busy += self.clock() - started
        if self._window_at is None:
            self._window_at, self._busy = now, 0.0
            return
        elapsed = now - self._window_at
        if elapsed < WINDOW:
            return
        # A share over TARGET spaces writes further; one below brings them closer, and
        # after a quiet spell (a long window, little work) the first tick goes at once.
        ratio = min(self._busy / elapsed, 1.0) / TARGET
        gap = max(self.gap, MIN_GAP) * ratio if ratio > 1 else self.gap * ratio
        self.gap = min(self._cap, gap) if gap >= MIN_GAP else 0.0
        self._window_at, self._busy = now, 0.0
