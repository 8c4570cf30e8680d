"""`python -m publisher`: publish demo ticks to NATS JetStream until SIGTERM or Ctrl-C, or
with --replay FILE the ticks of a recording, then exit."""

from __future__ import annotations

import asyncio
import logging
import sys

from contracts.logs import configure_logging
from publisher.app import PublisherService
from publisher.errors import PublisherError
from publisher.health import health_server
from publisher.settings import PublisherSettings, from_environment

PROG = "python -m publisher"


async def serve(settings: PublisherSettings) -> int:
    service = PublisherService(settings)
    try:
        # The probes answer from the start: alive while waiting for NATS, ready once publishing.
        async with health_server(settings.health_host, settings.health_port, service.readiness):
            try:
                await service.open()
            except PublisherError as exc:
                # Before anything else is logged, so the operator sees this one line alone.
                sys.stderr.write(f"{PROG}: error: {exc}\n")
                return 2
            # FastStream handles SIGTERM and SIGINT: it runs the shutdown hook (the tick loop
            # stops), drains the connection and returns.
            await service.app.run(log_level=logging.INFO)
    finally:
        await service.close()
    return 1 if service.crashed or service.incomplete else 0


def main(argv: list[str]) -> int:
    settings = from_environment(argv)
    configure_logging(settings.log_level)
    try:
        return asyncio.run(serve(settings))
    except KeyboardInterrupt:
        # Ctrl-C before FastStream took over the signal, i.e. while connecting.
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
