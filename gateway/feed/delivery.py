"""What a client asked to be sent: every tick (the default), or less of them."""

from __future__ import annotations

from dataclasses import dataclass

CONFLATE_RANGE = (0.05, 60.0)  # seconds, or 0: every tick
DELAY_RANGE = (1.0, 86_400.0)  # seconds, or 0: no delay


@dataclass(frozen=True, slots=True)
class Delivery:
    """`conflate`: at most one event per symbol per this many seconds, the latest value
    winning (0: every tick). `delay`: every tick sent this many seconds after JetStream
    stored it (0: at once)."""

    conflate: float = 0.0
    delay: float = 0.0

    def at_least(self, floor: Delivery) -> Delivery:
        """This, raised to `floor` where it asks for more (a token's licence)."""
        return Delivery(max(self.conflate, floor.conflate), max(self.delay, floor.delay))

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The effective values, as the stream's answer carries them."""
        return [
            (b"price-conflate", b"%d" % round(self.conflate * 1000)),
            (b"price-delay", b"%d" % round(self.delay)),
        ]


EXACT = Delivery()
