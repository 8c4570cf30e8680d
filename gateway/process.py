"""One gateway process: the open-files limit, the app on uvicorn, the collector tuned."""

from __future__ import annotations

import gc
import logging
import resource
import socket
import sys
from collections.abc import Callable

from contracts.settings import SettingsError, redact_urls
from gateway.app import build_app
from gateway.server import GatewayServer, server_config
from gateway.settings import PROG, Settings

logger = logging.getLogger("gateway")

GC_THRESHOLDS = (50_000, 20, 100)  # CPython's defaults: (700, 10, 10)
# File descriptors besides the streams' sockets: NATS, the listening sockets, probes and
# scrapes, log and key files. Connections still sending their headers are bounded apart
# (--max-incomplete-requests): an operator sizing the hard limit adds that too.
FD_MARGIN = 256

# What a worker's server is made of: the caller's GatewayServer subclass, if any.
ServerFactory = Callable[..., GatewayServer]


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


def serve(
    settings: Settings,
    *,
    sockets: list[socket.socket] | None = None,
    server_class: ServerFactory = GatewayServer,
) -> int:
    """Serve until stopped; the exit status (2: a setting the start found wrong)."""
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
    server_class(config, app).run(sockets=sockets)
    return 0
