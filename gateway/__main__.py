"""`python -m gateway`: serve /stocks on uvicorn."""

from __future__ import annotations

import gc
import logging
import sys

from contracts.logs import configure_logging
from contracts.settings import SettingsError, redact_urls
from gateway.app import build_app
from gateway.server import GatewayServer, server_config
from gateway.settings import PROG, from_environment

logger = logging.getLogger("gateway")

GC_THRESHOLDS = (50_000, 20, 100)  # CPython's defaults: (700, 10, 10)


def main(argv: list[str]) -> int:
    settings = from_environment(argv)
    configure_logging(settings.log_level)
    try:  # builds the authenticator, which reads the key files
        app = build_app(settings)
    except SettingsError as exc:  # one line and status 2, as for any other bad setting
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    config = server_config(settings, app)
    logger.info(
        "gateway starting",
        extra={
            "url": f"http://{settings.host}:{settings.port}/",
            "gateway": settings.gateway_id,
            "nats": redact_urls(settings.nats_url),
        },
    )
    # The heap of a gateway with thousands of streams makes CPython's full collections
    # take 100 ms and more, stalling every stream (the benchmark's GC probe shows it).
    # Startup objects are frozen out of collections, and collections run less often;
    # per-event garbage is freed by reference counting anyway.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    GatewayServer(config, app).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
