"""What one write to a client carries, and the sink the live feed may write to itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.feed.outbox import LiveEvent
from gateway.metrics import Metrics


@dataclass(slots=True)
class Frames:
    """What one write carries."""

    body: bytes
    events: int
    published: float | None  # timestamp of the oldest tick in it

    @classmethod
    def of(cls, events: Sequence[LiveEvent]) -> Frames:
        return cls(b"".join([event.frame for event in events]), len(events), events[0].published)

    def count(self, metrics: Metrics) -> None:
        """Account for its write: the events metric and the lag of its oldest tick."""
        metrics.writes.add(self.events, self.published)


# A live client's feed has nothing to write until it is woken (gateway.feed.client).
IDLE = Frames(b"", 0, None)


class DirectSink(Protocol):
    """A sink that can take a write at once, without waiting (the connection itself)."""

    @property
    def ready(self) -> bool:
        """True when a write now would not have to wait (open, buffer under its mark)."""

    def write_events(self, events: Sequence[LiveEvent]) -> None:
        """Write these events' frames now, in one write."""
