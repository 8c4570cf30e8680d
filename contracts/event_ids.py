"""Event ids: `<stream incarnation>-<stream sequence>`, opaque to clients.

The incarnation is the stream's creation time, so an id from a stream that was deleted
and recreated (whose sequence numbers restarted) is told apart from a current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contracts.errors import InvalidEventIdError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_EVENT_ID_LENGTH = 64


def incarnation_of(created: datetime) -> str:
    """The incarnation token of a stream created at `created`: its epoch microseconds, base 36."""
    # Clamped: a time before 1970 (a server's zero time, year 1) would loop forever below.
    micros = max(0, (created.astimezone(UTC) - _EPOCH) // _MICROSECOND)
    token = ""
    while True:
        micros, digit = divmod(micros, 36)
        token = _DIGITS[digit] + token
        if micros == 0:
            return token


@dataclass(frozen=True, slots=True)
class EventPosition:
    """Where an event sits: which stream incarnation, which sequence in it."""

    incarnation: str
    sequence: int

    def __str__(self) -> str:
        return f"{self.incarnation}-{self.sequence}"


def parse_event_id(raw: str) -> EventPosition:
    """Parse an id this system issued; raise InvalidEventIdError naming `raw` otherwise."""
    incarnation, dash, sequence = raw.strip().partition("-")
    if (
        len(raw) > MAX_EVENT_ID_LENGTH
        or not dash
        or not incarnation
        or any(c not in _DIGITS for c in incarnation)
        or not sequence.isascii()
        or not sequence.isdigit()
        or int(sequence) < 1
    ):
        raise InvalidEventIdError(
            f"invalid event id {raw[:MAX_EVENT_ID_LENGTH]!r}: expected an id this gateway sent, "
            "like '1a2b3c4d5e-42'"
        )
    return EventPosition(incarnation, int(sequence))
