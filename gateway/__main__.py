"""`python -m gateway`: serve /stocks on uvicorn."""

from __future__ import annotations

import gc
import logging
import resource
import sys

from contracts.logs import configure_logging
from contracts.settings import SettingsError, redact_urls
from gateway.app import build_app
from gateway.server import GatewayServer, server_config
from gateway.settings import PROG, from_environment

logger = logging.getLogger("gateway")

GC_THRESHOLDS = (50_000, 20, 100)  # CPython's defaults: (700, 10, 10)
# File descriptors besides the streams' sockets: NATS, the listening sockets, probes and
# scrapes, log and key files. Connections still sending their headers are bounded apart
# (--max-incomplete-requests): an operator sizing the hard limit adds that too.
FD_MARGIN = 256


def raise_open_files_limit(max_connections: int) -> str | None:
    """Raise the soft limit of open files to the hard one (containerd 2.x starts
    containers at a soft 1,024, so streams past ~1,000 failed with EMFILE, and the probes
    with them); the reason not to start when the hard limit cannot hold
    `max_connections` plus FD_MARGIN."""
    nofile = resource.RLIMIT_NOFILE
    soft, hard = resource.getrlimit(nofile)
    need = max_connections + FD_MARGIN
    unlimited = resource.RLIM_INFINITY
    if hard != unlimited and hard < need:
        return (
            f"the open files hard limit ({hard}) cannot hold --max-connections "
            f"{max_connections} plus {FD_MARGIN}: raise it (ulimit -Hn, the container "
            "runtime's nofile) or lower --max-connections"
        )
    # Linux caps a soft limit at fs.nr_open, so an unlimited hard one is not the target.
    target = hard if hard != unlimited else max(soft, need)
    if soft != unlimited and soft < target:
        resource.setrlimit(nofile, (target, hard))
    return None


def main(argv: list[str]) -> int:
    settings = from_environment(argv)
    configure_logging(settings.log_level)
    if problem := raise_open_files_limit(settings.max_connections):
        sys.stderr.write(f"{PROG}: error: {problem}\n")
        return 2
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
