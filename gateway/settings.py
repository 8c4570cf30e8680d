"""The gateway's settings: one typed object from flags and environment variables."""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass

from contracts.messages import MAX_TICK_BYTES
from contracts.settings import CommonSettings, require, setting


def default_gateway_id() -> str:
    """Host name plus a random suffix: a restarted process never reuses its predecessor's
    consumer names, and operators still see which host owns a consumer."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "gateway"
    return f"{host}-{secrets.token_hex(3)}"


MAX_WORKERS = 64
MAX_WORKERS_ID = 48


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(CommonSettings):
    host: str = setting("127.0.0.1", "interface to listen on (0.0.0.0 in a container)")
    port: int = setting(8000, "HTTP port")
    ops_port: int = setting(
        0,
        "port that alone serves /healthz, /readyz and /metrics, for probes and scrapers "
        "inside the cluster (0: none, the HTTP port serves them)",
    )
    workers: int = setting(
        1,
        "processes serving --port together (SO_REUSEPORT), each with its own NATS connection, "
        "live feed and limits; above 1, a supervisor runs them, and needs --ops-port: worker "
        "i answers /healthz, /readyz and /metrics on --ops-port + i",
    )
    gateway_id: str = setting("", "name of this process in consumer names (default: host-random)")
    heartbeat: float = setting(15.0, "seconds between keep-alive comments on an idle stream")
    retry: float = setting(
        2.0, "reconnect delay advised to browsers (the SSE retry: field), seconds"
    )
    inactive_threshold: float = setting(
        30.0, "seconds after which NATS deletes the consumer of a client that is gone"
    )
    max_connections: int = setting(10_000, "open /stocks streams per process; more get 503")
    backlog: int = setting(
        4096,
        "connections the kernel may queue before they are accepted (capped by the "
        "net.core.somaxconn sysctl): a reconnect storm arrives at once, and a connection "
        "past the queue waits for its SYN to be sent again, a second or more later",
    )
    max_connections_per_client: int = setting(
        0, "open /stocks streams per client address; 0 means no limit"
    )
    max_connections_per_user: int = setting(
        0, "open /stocks streams per token subject (sub); more get 429; 0 means no limit"
    )
    max_symbols: int = setting(100, "symbols per /stocks request")
    max_delays: int = setting(
        8, "distinct ?delay= values served at once, each by one delayed feed; more get 503"
    )
    max_header_bytes: int = setting(16 * 1024, "bytes of request line and headers; more get 431")
    header_timeout: float = setting(
        10.0, "seconds a connection may take to send a request's headers; then it is closed"
    )
    max_incomplete_requests: int = setting(
        # With the kernel's accept queue (4,096), a storm of --max-connections fits.
        8192,
        "connections still sending request headers; past it the one waiting longest is closed",
    )
    send_timeout: float = setting(
        10.0, "seconds a write may wait for a client that does not read before its stream ends"
    )
    drain_period: float = setting(
        10.0, "seconds over which open streams are ended on SIGTERM, in waves"
    )
    pull_batch: int = setting(256, "messages asked of JetStream per pull request")
    shared_feed: bool = setting(
        True,
        "serve caught-up clients from one live consumer per process (false: each client of "
        "every tick reads its own consumer for good; conflated and delayed ones still use "
        "the feeds)",
    )
    coalesce: float = setting(
        0.02,
        "live writes go out at most once per this many seconds, events arriving in between "
        "joining them; under a light load they go at once, the spacing grows with the cost "
        "of writing (0: every event at once)",
    )
    max_pending_bytes: int = setting(
        4 * 1024 * 1024,
        "bytes of live events a client may have waiting; more sends it back to a consumer "
        "of its own",
    )
    compression: bool = setting(
        True,
        "gzip the /stocks stream for clients whose Accept-Encoding asks for it (~16 KB of "
        "compressor per such stream; false: every stream goes uncompressed)",
    )
    nats_timeout: float = setting(5.0, "seconds to wait for a JetStream API answer")
    nats_ping_interval: float = setting(
        2.0,
        "seconds between pings to NATS; a link that drops packets silently is given up after "
        "--nats-max-outstanding-pings + 1 of them, then reconnected",
    )
    nats_max_outstanding_pings: int = setting(
        2, "pings NATS may leave unanswered before the connection counts as lost"
    )
    resume_window: float = setting(
        60.0,
        "seconds of live events kept in memory: a client that resumes from an id inside "
        "them (or connects without one) is served from memory, without a consumer (0: "
        "the latest event of each symbol only)",
    )
    resume_window_bytes: int = setting(
        64 * 1024 * 1024, "bytes of event frames --resume-window may hold at most"
    )
    catch_up_rate: float = setting(
        250.0,
        "catch-up consumers created per second at most (bursts of one second's worth); a "
        "stream that would wait more than a second for one gets 503 with a jittered "
        "Retry-After (0: no limit)",
    )
    max_message_bytes: int = setting(
        MAX_TICK_BYTES, "bytes of a stored message sent on; a bigger one is skipped and counted"
    )
    ensure_stream: bool = setting(
        True,
        "create or update the stream at start (false: wait until it is provisioned, e.g. by "
        "python -m contracts.provision; the gateway's NATS user then needs no "
        "stream-management permission)",
    )
    auth_jwt_secret: str = setting(
        "",
        "HS256 shared secret: /stocks and /symbols then need a JWT (empty: no auth; prefer "
        "the variable: a flag shows in the process list)",
        secret=True,
    )
    auth_public_key_file: str = setting(
        "", "PEM public key (RS256 or ES256) that signs the JWTs (empty: none)"
    )
    auth_jwks_file: str = setting("", "JWKS file with the keys that sign the JWTs (empty: none)")
    auth_issuer: str = setting("", "the JWT iss every token must carry (required with auth)")
    auth_audience: str = setting("", "the JWT aud every token must carry (required with auth)")
    auth_leeway: float = setting(30.0, "seconds of clock skew allowed on exp, nbf and iat")
    auth_max_token_lifetime: float = setting(
        86_400.0, "seconds a token may live (exp - iat); a longer-lived one is refused"
    )
    auth_cookie: str = setting("price_token", "name of the HttpOnly cookie that may carry the JWT")
    auth_renew_url: str = setting(
        "", "URL the page POSTs to (with cookies) to renew an expired token (empty: none)"
    )
    cors_origins: str = setting(
        "", "comma-separated origins allowed to call the gateway from browsers (empty: none)"
    )

    def __post_init__(self) -> None:
        CommonSettings.__post_init__(self)
        if not self.gateway_id:
            object.__setattr__(self, "gateway_id", default_gateway_id())
        require(
            re.fullmatch(r"[A-Za-z0-9-]{1,64}", self.gateway_id) is not None,
            f"--gateway-id must be 1-64 letters, digits or '-', not {self.gateway_id!r}",
        )
        require(0 < self.port < 65536, f"--port must be 1-65535, not {self.port}")
        require(
            0 <= self.ops_port < 65536 and self.ops_port != self.port,
            f"--ops-port must be 0 or 1-65535 other than --port, not {self.ops_port}",
        )
        self._check_workers()
        require(self.heartbeat > 0, "--heartbeat must be > 0")
        require(self.retry > 0, "--retry must be > 0")
        require(self.inactive_threshold >= 1, "--inactive-threshold must be >= 1 second")
        require(self.max_connections > 0, "--max-connections must be > 0")
        require(self.backlog > 0, "--backlog must be > 0")
        require(self.max_connections_per_client >= 0, "--max-connections-per-client must be >= 0")
        require(self.max_connections_per_user >= 0, "--max-connections-per-user must be >= 0")
        require(self.max_symbols > 0, "--max-symbols must be > 0")
        require(self.max_delays >= 0, "--max-delays must be >= 0")
        require(self.max_header_bytes >= 1024, "--max-header-bytes must be >= 1024")
        require(self.header_timeout > 0, "--header-timeout must be > 0")
        require(self.max_incomplete_requests > 0, "--max-incomplete-requests must be > 0")
        require(self.send_timeout > 0, "--send-timeout must be > 0")
        require(self.drain_period >= 0, "--drain-period must be >= 0")
        require(1 <= self.pull_batch <= 10_000, "--pull-batch must be 1-10000")
        require(self.max_pending_bytes >= 64 * 1024, "--max-pending-bytes must be >= 65536")
        require(0 <= self.coalesce <= 1, "--coalesce must be 0-1 seconds")
        require(self.nats_timeout > 0, "--nats-timeout must be > 0")
        require(self.nats_ping_interval > 0, "--nats-ping-interval must be > 0")
        require(self.nats_max_outstanding_pings >= 1, "--nats-max-outstanding-pings must be >= 1")
        require(self.resume_window >= 0, "--resume-window must be >= 0")
        require(self.resume_window_bytes >= 0, "--resume-window-bytes must be >= 0")
        require(self.catch_up_rate >= 0, "--catch-up-rate must be >= 0")
        require(self.max_message_bytes >= 256, "--max-message-bytes must be >= 256")
        self._check_auth()
        self._check_browser()

    def _check_workers(self) -> None:
        require(1 <= self.workers <= MAX_WORKERS, f"--workers must be 1-{MAX_WORKERS}")
        if self.workers == 1:
            return
        last = self.ops_port + self.workers - 1
        require(
            self.ops_port != 0,
            "--workers above 1 needs --ops-port: worker i answers /metrics on --ops-port + i",
        )
        require(
            last < 65536 and not self.ops_port <= self.port <= last,
            f"--ops-port {self.ops_port} to {last} (one per worker) must be ports other "
            "than --port",
        )
        # Worker ids are <id>-w<i>, and -r<n> once restarted: they must still fit 64.
        require(
            len(self.gateway_id) <= MAX_WORKERS_ID,
            f"--gateway-id may have at most {MAX_WORKERS_ID} characters with --workers",
        )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_jwt_secret or self.auth_public_key_file or self.auth_jwks_file)

    def _check_auth(self) -> None:
        keys = [self.auth_jwt_secret, self.auth_public_key_file, self.auth_jwks_file]
        require(
            sum(map(bool, keys)) <= 1,
            "give one of --auth-jwt-secret, --auth-public-key-file and --auth-jwks-file",
        )
        require(
            not self.auth_jwt_secret or len(self.auth_jwt_secret.encode()) >= 32,
            "--auth-jwt-secret must be at least 32 bytes (RFC 7518: HS256 keys >= 256 bits)",
        )
        require(
            not self.auth_enabled or bool(self.auth_issuer and self.auth_audience),
            "--auth-issuer and --auth-audience are required when tokens are checked",
        )
        require(0 <= self.auth_leeway <= 300, "--auth-leeway must be 0-300 seconds")
        require(self.auth_max_token_lifetime > 0, "--auth-max-token-lifetime must be > 0")
        # The key files are read where the authenticator is built, which __main__ does
        # before serving: a bad one still stops the start with one line.
        require(
            re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}", self.auth_cookie) is not None,
            f"--auth-cookie must be a cookie name, not {self.auth_cookie!r}",
        )

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """The allowed origins, ("*",) for any, () for no CORS at all."""
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())

    def _check_browser(self) -> None:
        origins = self.cors_origin_list
        require(
            "*" not in origins or origins == ("*",),
            "--cors-origins: '*' (any origin, without cookies) stands alone",
        )
        for origin in origins:
            require(
                origin == "*" or _is_origin(origin),
                f"--cors-origins: {origin!r} is not an origin as browsers send it "
                "(lower-case scheme://host[:port], no path, no default port)",
            )
        # The renew URL's origin goes into the Content-Security-Policy header: a ';' or a
        # space there would add directives of the operator's typo's choosing.
        url = self.auth_renew_url
        relative = not url.startswith("//") and _PATH.fullmatch(url) is not None
        require(
            not url or relative or _is_origin(url, path=True),
            f"--auth-renew-url must be an http(s) URL or a path starting with /, not {url!r}",
        )


_ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?")
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+=:@%/-]*(?:\?[A-Za-z0-9._~!$&'()*+=:@%/?-]*)?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_origin(text: str, *, path: bool = False) -> bool:
    """An origin as browsers serialise it in `Origin` (which CORS compares byte for byte);
    with `path`, a URL made of such an origin and an optional path and query."""
    match = _ORIGIN.match(text)
    if match is None:
        return False
    rest = text[match.end() :]
    if rest and not (path and _PATH.fullmatch(rest)):
        return False
    scheme, _, port = match.groups()
    return port is None or (0 < int(port) < 65536 and int(port) != _DEFAULT_PORTS[scheme])


PROG = "python -m gateway"


def from_environment(argv: list[str]) -> Settings:
    from contracts.settings import load_settings

    return load_settings(Settings, argv, os.environ, prog=PROG, env_prefix="GATEWAY_")
