"""What one write to a client carries, and the sink the live feed may write to itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Frames:
    """What one write carries."""

    body: bytes
    events: int
    published: float | None  # timestamp of the oldest tick in it


class DirectSink(Protocol):
    """A sink that can take a write at once, without waiting (the connection itself)."""

    @property
    def ready(self) -> bool:
        """True when a write now would not have to wait (open, buffer under its mark)."""

    def write_now(self, body: bytes) -> None: ...
