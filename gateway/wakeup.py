"""A wake-up flag for one waiting task: asyncio.Event's set/clear/wait, kept small.

Every open stream holds one for as long as it is open, so its size counts per idle
connection: an asyncio.Event keeps a deque for its waiters (~850 bytes with the object),
while a stream only ever has one task waiting. This keeps a future only while waited on.
"""

from __future__ import annotations

import asyncio


class Wakeup:
    """`set()` wakes the task in `wait()` (or the next one to call it) until `clear()`."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def wait(self) -> asyncio.Future[None]:
        """To await: done once set (at once if it is). Raises RuntimeError for a second
        waiter. A future rather than a coroutine, whose frame would be one more per stream."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            raise RuntimeError("a Wakeup has one waiter at a time")
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        if self._set:
            waiter.set_result(None)
        return waiter
