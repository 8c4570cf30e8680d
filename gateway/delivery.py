"""What a client asked to be sent: every tick (the default), or less of them."""

from __future__ import annotations

from dataclasses import dataclass

# (unit, units per second, lowest, highest): a value is a whole number of its unit, 0 or
# within the bounds. The query parameters and the token claims of the same names.
CONFLATE = ("milliseconds", 1000, 50, 60_000)
DELAY = ("seconds", 1, 1, 86_400)


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


def whole(name: str, value: object, scale: tuple[str, int, int, int]) -> float:
    """`value` (text, or a JSON number from a token) as seconds; raises ValueError naming
    `name` unless it is 0 or a whole number of units within the scale's bounds."""
    unit, per_second, low, high = scale
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise ValueError(f"{name}={value!r} is not a whole number of {unit}")
    if number and not low <= number <= high:
        raise ValueError(f"{name}={number} is out of range: 0, or {low}-{high} {unit}")
    return number / per_second
