"""Waiting at start, with back-off, until some NATS server accepts TCP connections: on a
first deployment the publishers often start before NATS, and exiting then only makes
Kubernetes restart them with its own, growing back-off (CrashLoopBackOff)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from urllib.parse import urlsplit

from contracts.settings import redact_urls
from publisher.errors import NatsUnavailableError

logger = logging.getLogger(__name__)

FIRST_WAIT = 0.1  # seconds before the second attempt; doubled after each, up to MAX_WAIT
MAX_WAIT = 5.0
ATTEMPT_TIMEOUT = 2.0  # a dropped SYN (a Service without endpoints) must not hang an attempt
DEFAULT_PORT = 4222


def addresses(nats_url: str) -> list[tuple[str, int]]:
    """host and port of each comma-separated URL (nats://, tls://; 4222 by default)."""
    found = []
    for url in nats_url.split(","):
        parts = urlsplit(url.strip())
        found.append((parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORT))
    return found


async def _accepts(host: str, port: int) -> bool:
    try:
        async with asyncio.timeout(ATTEMPT_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_for_nats(nats_url: str, wait: float) -> None:
    """Return once one of the servers accepts a connection. `wait` bounds the time in
    seconds (0: one round of attempts, < 0: no bound); past it, NatsUnavailableError."""
    servers = addresses(nats_url)
    deadline = None if wait < 0 else time.monotonic() + wait
    delay = FIRST_WAIT
    attempt = 0
    while True:
        for host, port in servers:
            if await _accepts(host, port):
                if attempt:
                    logger.info("NATS accepts connections", extra={"attempts": attempt + 1})
                return
        attempt += 1
        if deadline is not None and time.monotonic() + delay > deadline:
            raise NatsUnavailableError(
                f"no NATS server at {redact_urls(nats_url)} accepted a connection "
                f"within {wait:g}s (--wait-for-nats)"
            )
        # The first miss and then every tenth: a pod waiting for minutes logs a few lines.
        if attempt % 10 == 1:
            logger.warning(
                "waiting for NATS",
                extra={"url": redact_urls(nats_url), "attempts": attempt, "next_in": delay},
            )
        # Jitter: publishers started together do not knock in step.
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, MAX_WAIT)
