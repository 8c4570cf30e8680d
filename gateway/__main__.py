"""`python -m gateway`: serve /stocks on uvicorn."""

from __future__ import annotations

import logging
import sys

import uvicorn

from gateway.app import build_app
from gateway.hub import Hub
from gateway.logs import configure_logging
from gateway.server import GatewayServer
from gateway.settings import from_environment

logger = logging.getLogger("gateway")


def main(argv: list[str]) -> int:
    settings = from_environment(argv)
    configure_logging(settings.log_level)
    hub = Hub(settings)
    config = uvicorn.Config(
        build_app(settings, hub),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our JSON handler
        access_log=False,  # one line per stream from the gateway itself is enough
        # The drain ends streams over --drain-period; then a margin for the last writes
        # and consumer deletes before uvicorn cancels what is left.
        timeout_graceful_shutdown=int(settings.drain_period) + 5,
        lifespan="on",
    )
    logger.info(
        "gateway starting",
        extra={
            "url": f"http://{settings.host}:{settings.port}/",
            "gateway": settings.gateway_id,
            "nats": settings.nats_url,
        },
    )
    GatewayServer(config, hub).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
