"""The stream's info from JetStream, or the one error every caller answers with a 503."""

from __future__ import annotations

import asyncio

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
