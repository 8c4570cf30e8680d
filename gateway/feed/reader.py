"""A client's side of its outbox once it is live: the steady state of a stream.

What the outbox lets out is released after the last event sent, as one write: now, or
when the outbox's own timer says (conflation). The live feed tells the reader when events
are due (outbox.Reader): while the writer task waits and the connection takes bytes, they
are written here and now, with no task switch; otherwise the writer is woken. Which
source serves the client, and moving it between them, is gateway.feed.client's.
"""

from __future__ import annotations

import asyncio
import math

from gateway.feed.outbox import Policy
from gateway.feed.splice import WAITING, WOKEN, Splice, State
from gateway.feed.writes import DirectSink, Frames
from gateway.metrics import Metrics
from gateway.wakeup import Wakeup


class OutboxReader:
    """Reads one client's outbox (None: the client's consumer serves it for good)."""

    # Slots only, here and in the subclass: one per open stream, for as long as it is open.
    __slots__ = (
        "_direct",
        "_last_sequence",
        "_metrics",
        "_outbox",
        "_splice",
        "_timer",
        "_wake",
        "last_write",
        "sent",
    )

    def __init__(self, outbox: Policy | None, metrics: Metrics, last_sequence: int) -> None:
        self._outbox = outbox
        self._metrics = metrics
        self._last_sequence = last_sequence  # the last sent
        self._splice = Splice()
        self._wake = Wakeup()  # only the writer task waits on it
        self._timer: asyncio.TimerHandle | None = None  # the outbox's next release
        self._direct: DirectSink | None = None
        self.last_write = 0.0  # loop time, for the heartbeat
        self.sent = 0  # events written

    @property
    def state(self) -> State:
        return self._splice.state

    def write_directly(self, sink: DirectSink) -> None:
        self._direct = sink  # the live feed's flush writes to it while the writer waits

    def idle_wait(self) -> asyncio.Future[None]:
        """After IDLE: done once woken; `woken()` must follow, however the wait ends. The
        writer awaits it in its own frame, so an idle stream keeps no frame of this class."""
        return self._wake.wait()

    def woken(self) -> None:
        self._splice.handle(WOKEN)

    def _release(self, now: float, through: float = math.inf) -> Frames | None:
        """What the outbox lets out now, after the last event sent, as one write."""
        outbox = self._outbox
        assert outbox is not None
        events, next_at = outbox.release(self._last_sequence, now, through)
        if next_at is not None:
            self._release_at(next_at)
        if not events:
            return None
        self._last_sequence = events[-1].sequence
        return Frames.of(events)

    def _release_at(self, at: float) -> None:
        """The outbox releases more at loop time `at`: be due then."""
        if self._timer is None or at < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.on_due(asyncio.get_running_loop().time())

    def count_sent(self, frames: Frames) -> None:
        """Account for a write: the stream's count, the metrics."""
        self.sent += frames.events
        frames.count(self._metrics)

    # outbox.Reader: called by the live feed.

    def on_due(self, now: float) -> None:
        """Events are due: written here and now while the writer waits and the connection
        can take bytes; otherwise the writer is woken to do it."""
        direct, outbox = self._direct, self._outbox
        if (
            self._splice.state is WAITING
            and direct is not None
            and direct.ready
            and outbox is not None
            and not outbox.overflowed
        ):
            # _release and count_sent, unrolled: this runs once per client and flush, and
            # a Frames object and two calls were a quarter of its Python time.
            events, next_at = outbox.release(self._last_sequence, now)
            if next_at is not None:
                self._release_at(next_at)
            if events:
                self._last_sequence = events[-1].sequence
                direct.write_events(events)
                self.last_write = now
                count = len(events)
                self.sent += count
                self._metrics.writes.add(count, events[0].published)
            return
        self._wake.set()

    def heartbeat_due(self, now: float, heartbeat: float) -> None:
        """The hub's sweep: wake a waiting writer that has written nothing for `heartbeat`
        (a catching-up writer times its own waits)."""
        if self._splice.state is WAITING and now - self.last_write >= heartbeat:
            self._wake.set()
