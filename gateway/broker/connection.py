"""The gateway's NATS connection: established in the background, retried until it works.

The gateway serves (health, 503s) while NATS is away, and becomes ready by itself when
NATS comes; nats-py then keeps reconnecting on its own.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.errors import StreamConfigError
from contracts.settings import redact_urls
from contracts.stream import StreamSettings, ensure_stream

logger = logging.getLogger(__name__)

RETRY_DELAY = 1.0
# A refusal repeats on every reconnect attempt (twice a second): log one line in this many.
REPEAT_EVERY = 30
# What the server answers, as nats-py words it, to credentials it does not accept.
AUTH_ERRORS = ("authorization violation", "authentication", "authorization failed")


async def connect(
    servers: list[str],
    name: str,
    on_disconnected: Callable[[], Awaitable[None]],
    on_reconnected: Callable[[], Awaitable[None]],
    options: Mapping[str, Any] | None = None,
) -> NATS:
    """Connect, retrying every RETRY_DELAY seconds until a server answers; `options` are
    more nats.connect() arguments (credentials, TLS: contracts.nats_options)."""

    attempt = 0
    report = _error_report(redact_urls(",".join(servers)))
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
                error_cb=report,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                **(options or {}),
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


async def wait_for_stream(js: JetStreamContext, stream: str) -> None:
    """Until the stream exists (the publishers provision it), without managing it: the
    gateway's NATS user then needs no permission to create or update streams."""
    attempt = 0
    while True:
        attempt += 1
        try:
            await js.stream_info(stream)
            return
        except NotFoundError:
            error = "not found"
        except (NatsError, TimeoutError) as exc:
            error = repr(exc)
        if attempt == 1 or attempt % REPEAT_EVERY == 0:
            logger.warning(
                "waiting for the stream to be provisioned",
                extra={"stream": stream, "attempt": attempt, "error": error},
            )
        await asyncio.sleep(RETRY_DELAY)


def _error_report(servers: str) -> Callable[[Exception], Awaitable[None]]:
    """nats-py's error_cb (a coroutine function, it insists): each error is a warning, but a
    refusal of our credentials or certificate, met again on every reconnect attempt, only
    every REPEAT_EVERY times."""
    refusals = 0

    async def report(exc: Exception) -> None:
        nonlocal refusals
        if isinstance(exc, ssl.SSLError):  # a certificate refused, by either side
            message = "TLS handshake with NATS failed, retrying"
        elif any(words in str(exc).lower() for words in AUTH_ERRORS):
            message = "NATS refused the credentials, retrying"
        else:
            logger.warning("NATS error", extra={"error": repr(exc)})
            return
        refusals += 1
        if refusals == 1 or refusals % REPEAT_EVERY == 0:
            logger.warning(
                message, extra={"servers": servers, "attempt": refusals, "error": str(exc)}
            )

    return report


async def close(nc: NATS) -> None:
    """Drain the connection (it flushes consumer deletes still in flight), or, when NATS is
    away and a drain cannot be, just close it: the server removes what is left of this
    gateway's consumers by their inactive threshold."""
    if nc.is_connected:
        try:
            await nc.drain()
            return
        except (NatsError, TimeoutError) as exc:
            logger.warning("NATS connection not drained", extra={"error": repr(exc)})
    try:
        await nc.close()
    except Exception as exc:  # nats-py may write to the socket it has lost (uvloop raises)
        logger.warning("NATS connection closed uncleanly", extra={"error": repr(exc)})
