"""The publisher's settings: one typed object from flags and `PUBLISHER_*` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass

from contracts.errors import InvalidSymbolError
from contracts.messages import SOURCE_PATTERN
from contracts.settings import CommonSettings, SettingsError, load_settings, require, setting
from contracts.symbols import parse_symbols

MAX_RATE = 10_000.0
# Retries back off 0.1, 0.2, 0.4 ... seconds, each wait capped at this.
MAX_RETRY_BACKOFF = 2.0


def retry_backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (0-based), before jitter."""
    return float(min(0.1 * 2**attempt, MAX_RETRY_BACKOFF))


@dataclass(frozen=True, slots=True, kw_only=True)
class PublisherSettings(CommonSettings):
    source: str = setting("pub-1", "publisher id: the tick's source and the Nats-Msg-Id prefix")
    symbols: str = setting("AAPL,MSFT,GOOG,AMZN,BRK.B", "comma-separated symbols to publish")
    rate: float = setting(2.0, f"ticks per second per symbol (0 < rate <= {MAX_RATE:g})")
    publish_timeout: float = setting(2.0, "seconds to wait for JetStream's ack of one publish")
    publish_retries: int = setting(
        5, "retries of a publish whose ack did not come (same Nats-Msg-Id, stored once)"
    )
    connect_timeout: float = setting(
        5.0, "seconds to reach NATS at start; after that, exit with status 2"
    )
    wait_for_nats: float = setting(
        0.0,
        "seconds to wait at start, retrying with back-off, for NATS to accept connections "
        "before --connect-timeout applies (-1: for ever, as a Deployment should; 0: no wait)",
    )
    health_host: str = setting("127.0.0.1", "interface of --health-port (0.0.0.0 in a pod)")
    health_port: int = setting(
        0, "port answering GET /healthz (alive) and /readyz (publishing) for probes; 0: none"
    )
    manage_stream: bool = setting(
        True,
        "create or update the stream at start; false: only wait (--connect-timeout) for it to "
        "be provisioned (python -m contracts.provision): the prod NATS user cannot change it",
    )
    replay: str = setting(
        "",
        "CSV or NDJSON file of recorded ticks (symbol, price, timestamp) to publish instead "
        "of the random walk, then exit",
    )
    speed: float = setting(
        1.0, "with --replay: 1 replays at the recorded pace, 10 ten times faster, 0 at once"
    )

    def __post_init__(self) -> None:
        # A slotted dataclass has no __class__ cell, so zero-argument super() fails here.
        CommonSettings.__post_init__(self)
        require(
            SOURCE_PATTERN.fullmatch(self.source) is not None,
            f"--source must be 1-64 letters, digits, '_', '.' or '-', not {self.source!r}",
        )
        try:  # "AAPL,MSFT," on a command line is a trailing comma, not a mistake
            symbols = parse_symbols([self.symbols], skip_blank=True)
        except InvalidSymbolError as exc:
            raise SettingsError(f"--symbols: {exc}") from None
        require(bool(symbols), "--symbols needs at least one symbol, like AAPL,MSFT")
        object.__setattr__(self, "symbols", ",".join(symbols))
        require(0 < self.rate <= MAX_RATE, f"--rate must be > 0 and <= {MAX_RATE:g}")
        require(self.publish_timeout > 0, "--publish-timeout must be > 0")
        require(0 <= self.publish_retries <= 100, "--publish-retries must be 0-100")
        require(self.connect_timeout > 0, "--connect-timeout must be > 0")
        require(
            self.wait_for_nats >= 0 or self.wait_for_nats == -1,
            "--wait-for-nats must be >= 0 seconds, or -1 (for ever)",
        )
        require(0 <= self.health_port < 65536, "--health-port must be 0-65535")
        require(
            not self.replay or os.path.isfile(self.replay),
            f"--replay: {self.replay} is not a readable file",
        )
        require(self.speed >= 0, "--speed must be >= 0 (0: as fast as JetStream acks)")
        # JetStream de-duplicates a repeated Nats-Msg-Id only within the window: a retry
        # after it would store the tick twice.
        window = self.stream_settings().stored_duplicate_window
        require(
            self.retry_span() < window,
            f"--publish-timeout x (--publish-retries + 1) plus back-off ({self.retry_span():g}s)"
            " must be shorter than --stream-duplicate-window",
        )

    @property
    def symbol_list(self) -> tuple[str, ...]:
        """The symbols to publish, canonical and without repeats."""
        return tuple(self.symbols.split(","))

    def retry_span(self) -> float:
        """An upper bound on the time from a tick's first publish attempt to the end of its last."""
        waits = sum(retry_backoff(n) for n in range(self.publish_retries))
        # Jitter stretches a wait by at most a fifth (see ticker.py).
        return self.publish_timeout * (self.publish_retries + 1) + 1.2 * waits


def from_environment(argv: list[str]) -> PublisherSettings:
    """Settings from flags and variables; a bad value exits with status 2 (load_settings)."""
    return load_settings(
        PublisherSettings, argv, os.environ, prog="python -m publisher", env_prefix="PUBLISHER_"
    )
