"""The gateway's settings: one typed object from flags and environment variables."""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass

from contracts.settings import CommonSettings, require, setting


def default_gateway_id() -> str:
    """Host name plus a random suffix: a restarted process never reuses its predecessor's
    consumer names, and operators still see which host owns a consumer."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "gateway"
    return f"{host}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(CommonSettings):
    host: str = setting("127.0.0.1", "interface to listen on (0.0.0.0 in a container)")
    port: int = setting(8000, "HTTP port")
    gateway_id: str = setting("", "name of this process in consumer names (default: host-random)")
    heartbeat: float = setting(15.0, "seconds between keep-alive comments on an idle stream")
    retry: float = setting(
        2.0, "reconnect delay advised to browsers (the SSE retry: field), seconds"
    )
    inactive_threshold: float = setting(
        30.0, "seconds after which NATS deletes the consumer of a client that is gone"
    )
    max_connections: int = setting(10_000, "open /stocks streams per process; more get 503")
    max_connections_per_client: int = setting(
        0, "open /stocks streams per client address; 0 means no limit"
    )
    max_symbols: int = setting(100, "symbols per /stocks request")
    max_header_bytes: int = setting(16 * 1024, "bytes of request line and headers; more get 431")
    send_timeout: float = setting(
        10.0, "seconds a write may wait for a client that does not read before its stream ends"
    )
    drain_period: float = setting(
        10.0, "seconds over which open streams are ended on SIGTERM, in waves"
    )
    pull_batch: int = setting(256, "messages asked of JetStream per pull request")
    shared_feed: bool = setting(
        True,
        "serve caught-up clients from one live consumer per process (false: each client "
        "reads its own consumer for good)",
    )
    coalesce: float = setting(
        0.02, "seconds a live client's write waits for more events to join it (0: none)"
    )
    max_pending_bytes: int = setting(
        4 * 1024 * 1024, "bytes of live events a client may have waiting; more ends its stream"
    )
    nats_timeout: float = setting(5.0, "seconds to wait for a JetStream API answer")

    def __post_init__(self) -> None:
        CommonSettings.__post_init__(self)
        if not self.gateway_id:
            object.__setattr__(self, "gateway_id", default_gateway_id())
        require(
            re.fullmatch(r"[A-Za-z0-9-]{1,64}", self.gateway_id) is not None,
            f"--gateway-id must be 1-64 letters, digits or '-', not {self.gateway_id!r}",
        )
        require(0 < self.port < 65536, f"--port must be 1-65535, not {self.port}")
        require(self.heartbeat > 0, "--heartbeat must be > 0")
        require(self.retry > 0, "--retry must be > 0")
        require(self.inactive_threshold >= 1, "--inactive-threshold must be >= 1 second")
        require(self.max_connections > 0, "--max-connections must be > 0")
        require(self.max_connections_per_client >= 0, "--max-connections-per-client must be >= 0")
        require(self.max_symbols > 0, "--max-symbols must be > 0")
        require(self.max_header_bytes >= 1024, "--max-header-bytes must be >= 1024")
        require(self.send_timeout > 0, "--send-timeout must be > 0")
        require(self.drain_period >= 0, "--drain-period must be >= 0")
        require(1 <= self.pull_batch <= 10_000, "--pull-batch must be 1-10000")
        require(self.max_pending_bytes >= 64 * 1024, "--max-pending-bytes must be >= 65536")
        require(0 <= self.coalesce <= 1, "--coalesce must be 0-1 seconds")
        require(self.nats_timeout > 0, "--nats-timeout must be > 0")


def from_environment(argv: list[str]) -> Settings:
    from contracts.settings import load_settings

    return load_settings(
        Settings, argv, os.environ, prog="python -m gateway", env_prefix="GATEWAY_"
    )
