"""`python -m contracts.provision`: create the PRICES stream, or bring it to the configured
limits, with message deletes and purges denied; then exit. The admin step of a deployment
(the Job `stream-provision`, `make run`): the programs' own NATS users cannot change the
stream. Idempotent; never deletes the stream or a message. Waits for NATS with back-off."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import nats
from nats.errors import Error as NatsError
from nats.js.api import StreamInfo

from contracts.errors import StreamConfigError
from contracts.logs import configure_logging
from contracts.nats_options import connect_options
from contracts.settings import CommonSettings, load_settings, redact_urls
from contracts.stream import ensure_stream

PROG = "python -m contracts.provision"
logger = logging.getLogger("contracts.provision")
# NATS may still be starting (the first apply of a deployment): retry for this long.
WAIT = float(os.environ.get("PROVISION_WAIT", "300"))
MAX_BACKOFF = 10.0


async def provision(settings: CommonSettings, wait: float = WAIT) -> StreamInfo:
    """Connect (retrying with back-off for `wait` seconds) and ensure the protected stream.
    Returns its info; raises StreamConfigError or the last NATS error."""
    deadline = time.monotonic() + wait
    delay = 0.2
    servers = [url.strip() for url in settings.nats_url.split(",")]
    while True:
        try:
            nc = await nats.connect(
                servers, allow_reconnect=False, connect_timeout=5, **connect_options(settings)
            )
            break
        except (OSError, TimeoutError, NatsError):
            if time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, MAX_BACKOFF)
    try:
        stream = settings.stream_settings()
        return await ensure_stream(nc.jetstream(timeout=10), stream, protect=True)
    finally:
        await nc.close()


def main(argv: list[str]) -> int:
    settings = load_settings(CommonSettings, argv, os.environ, prog=PROG, env_prefix="PROVISION_")
    configure_logging(settings.log_level)
    try:
        info = asyncio.run(provision(settings))
    except StreamConfigError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    except (OSError, TimeoutError, NatsError) as exc:
        urls = redact_urls(settings.nats_url)
        sys.stderr.write(f"{PROG}: error: cannot provision through NATS at {urls}: {exc!r}\n")
        return 1
    config = info.config
    logger.info(
        "stream provisioned",
        extra={
            "stream": config.name,
            "messages": info.state.messages,
            "replicas": config.num_replicas,
            "deny_delete": config.deny_delete,
            "deny_purge": config.deny_purge,
            "rollups": config.allow_rollup_hdrs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
