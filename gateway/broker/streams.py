"""The stream's info from JetStream, or the one error every caller answers with a 503."""

from __future__ import annotations

import asyncio
import math

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from nats.js.errors import NotFoundError

from gateway.errors import NatsUnavailableError


async def stream_info(
    js: JetStreamContext | None,
    nc: NATS | None,
    name: str,
    *,
    subjects_filter: str | None = None,
    timeout: float | None = None,
) -> StreamInfo:
    """The info of stream `name` (with the subjects matching `subjects_filter`, if given).

    `js` and `nc` are None until the first connection. Raises NatsUnavailableError, whose
    message says why, while NATS is not connected, the stream does not exist, or NATS does
    not answer (within `timeout` seconds, when given, else the context's own timeout).
    """
    if js is None or nc is None or not nc.is_connected:
        raise NatsUnavailableError("not connected to NATS")
    try:
        async with asyncio.timeout(timeout):
            return await js.stream_info(name, subjects_filter=subjects_filter)
    except NotFoundError:
        raise NatsUnavailableError(f"stream {name} not found") from None
    except (NatsError, TimeoutError) as exc:
        raise NatsUnavailableError(f"NATS did not answer: {exc!r}") from None


class RecentStreamInfo:
    """The stream's info at most `max_age` seconds old: one JetStream call per period
    however many ask (concurrent callers wait for the one in flight)."""

    def __init__(self, name: str, max_age: float) -> None:
        self._name = name
        self._max_age = max_age
        self._lock = asyncio.Lock()
        self._info: StreamInfo | None = None
        self._at = -math.inf  # loop time the info was asked for

    async def get(self, js: JetStreamContext | None, nc: NATS | None) -> StreamInfo:
        """Raises NatsUnavailableError as stream_info does."""
        async with self._lock:
            now = asyncio.get_running_loop().time()
            if self._info is None or now - self._at >= self._max_age:
                self._info = None
                self._info = await stream_info(js, nc, self._name)
                self._at = now  # its age counts from before the call
            return self._info
