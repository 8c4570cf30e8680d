"""The gateway's NATS connection: established in the background, retried until it works.

The gateway serves (health, 503s) while NATS is away, and becomes ready by itself when
NATS comes; nats-py then keeps reconnecting on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from contracts.errors import StreamConfigError
from contracts.settings import redact_urls
from contracts.stream import StreamSettings, ensure_stream

logger = logging.getLogger(__name__)

RETRY_DELAY = 1.0


async def connect(
    servers: list[str],
    name: str,
    on_disconnected: Callable[[], Awaitable[None]],
    on_reconnected: Callable[[], Awaitable[None]],
) -> NATS:
    """Connect, retrying every RETRY_DELAY seconds until a server answers."""

    attempt = 0
    while True:
        attempt += 1
        try:
            return await nats.connect(
                servers,
                name=name,
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=_on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            )
        except (NatsError, OSError, TimeoutError) as exc:
            if attempt == 1 or attempt % 30 == 0:
                logger.warning(
                    "NATS not reachable, retrying",
                    extra={
                        "servers": redact_urls(",".join(servers)),
                        "attempt": attempt,
                        "error": repr(exc),
                    },
                )
            await asyncio.sleep(RETRY_DELAY)


async def ensure_stream_until_done(nc: NATS, stream: StreamSettings) -> None:
    """ensure_stream, retried while JetStream is not answering yet (it starts after NATS)."""
    while True:
        try:
            await ensure_stream(nc.jetstream(), stream)
            return
        except (NatsError, TimeoutError) as exc:
            logger.warning(
                "stream not ensured yet, retrying",
                extra={"stream": stream.name, "error": repr(exc)},
            )
        except StreamConfigError:
            logger.exception("stream configuration conflict")
        await asyncio.sleep(RETRY_DELAY)


async def _on_error(exc: Exception) -> None:
    logger.warning("NATS error", extra={"error": repr(exc)})
