"""Paces the creation of catch-up consumers, so that a reconnect storm does not become a
storm of JetStream API calls: at most `rate` a second, bursts of one second's worth.

A stream that would wait more than MAX_WAIT for its turn is refused at once (503) with a
Retry-After spread over the backlog, so the refused do not all come back together.
"""

from __future__ import annotations

import asyncio
import math
import random

from gateway.errors import OverloadedError

MAX_WAIT = 1.0  # seconds a stream may wait for its turn before it is refused


class CreationPace:
    """`await pace.turn()` before each consumer creation; raises OverloadedError."""

    def __init__(self, rate: float) -> None:
        self._rate = rate  # 0: no pacing
        self._next = -math.inf  # loop time at which the next turn is free

    async def turn(self) -> None:
        if not self._rate:
            return
        now = asyncio.get_running_loop().time()
        interval = 1.0 / self._rate
        # Turns not taken in the last second may still be taken: that is the burst.
        at = max(self._next, now - 1.0 + interval)
        wait = at - now
        if wait > MAX_WAIT:
            backlog = math.ceil(wait)
            raise OverloadedError(
                f"{self._rate:g} catch-ups a second are under way; retry later",
                retry_after=backlog + random.randint(0, backlog),
            )
        self._next = at + interval
        if wait > 0:
            await asyncio.sleep(wait)
