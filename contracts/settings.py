"""Typed settings from flags and environment variables, shared by both commands.

A settings class is a frozen dataclass whose fields are declared with `setting()`.
`load_settings` builds one from argv and the environment: flag beats variable beats
default, `--help` lists every field with its variable, and a bad value exits with
status 2 and a one-line message (argparse's convention).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NoReturn, TypeVar

from contracts.stream import StreamSettings
from contracts.symbols import SYMBOL_PATTERN

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value outside its range; the message names it."""


def setting(default: Any, help: str, *, env: str | None = None) -> Any:
    """A settings field: its default, its `--help` text, and its variable (else PREFIX_NAME)."""
    return dataclasses.field(default=default, metadata={"help": help, "env": env})


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def load_settings(
    cls: type[T], argv: Sequence[str], environ: Mapping[str, str], *, prog: str, env_prefix: str
) -> T:
    """Build `cls` from flags and variables; exits with status 2 on a bad value."""
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    for f in fields(cls):  # type: ignore[arg-type]
        var = f.metadata["env"] or f"{env_prefix}{f.name.upper()}"
        kind: type[Any] = type(f.default)
        parse = _parse_bool if kind is bool else kind
        default = environ.get(var)
        try:
            value = f.default if default is None else parse(default)
        except (ValueError, argparse.ArgumentTypeError):
            _fail(parser, f"${var}: invalid {kind.__name__} value {default!r}")
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=parse,
            default=value,
            metavar=kind.__name__.upper(),
            help=f"{f.metadata['help']} [${var}]",
        )
    args = parser.parse_args(list(argv))
    try:
        return cls(**vars(args))
    except SettingsError as exc:
        _fail(parser, str(exc))


def _fail(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    # One line, unlike parser.error(), which prints the whole usage block first.
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def require(condition: bool, message: str) -> None:
    """Raise SettingsError with `message` unless `condition` holds."""
    if not condition:
        raise SettingsError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommonSettings:
    """What the gateway and the publisher both need: where NATS is, and the stream."""

    nats_url: str = setting(
        "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated", env="NATS_URL"
    )
    log_level: str = setting("info", "log level: debug, info, warning, error", env="LOG_LEVEL")
    stream: str = setting("PRICES", "JetStream stream name", env="STREAM_NAME")
    subject_prefix: str = setting(
        "prices", "subject prefix: prices.<SYMBOL>", env="STREAM_SUBJECT_PREFIX"
    )
    stream_max_age: float = setting(24 * 3600.0, "seconds a tick is retained", env="STREAM_MAX_AGE")
    stream_max_msgs_per_subject: int = setting(
        1_000_000,
        "ticks retained per symbol (oldest dropped first)",
        env="STREAM_MAX_MSGS_PER_SUBJECT",
    )
    stream_max_bytes: int = setting(1024**3, "bytes retained in the stream", env="STREAM_MAX_BYTES")
    stream_duplicate_window: float = setting(
        120.0,
        "seconds within which a repeated Nats-Msg-Id is stored once",
        env="STREAM_DUPLICATE_WINDOW",
    )
    stream_max_consumers: int = setting(
        100_000, "consumers the stream admits (one per SSE client)", env="STREAM_MAX_CONSUMERS"
    )
    stream_replicas: int = setting(1, "stream replicas (3 in a cluster)", env="STREAM_REPLICAS")

    def __post_init__(self) -> None:
        require(
            self.log_level.lower() in {"debug", "info", "warning", "error"},
            f"--log-level must be debug, info, warning or error, not {self.log_level!r}",
        )
        require(
            bool(self.stream) and self.stream.isidentifier(),
            f"--stream must be a plain name like PRICES, not {self.stream!r}",
        )
        require(
            SYMBOL_PATTERN.fullmatch(self.subject_prefix.upper()) is not None
            and "." not in self.subject_prefix,
            f"--subject-prefix must be one subject token, not {self.subject_prefix!r}",
        )
        require(self.stream_max_age > 0, "--stream-max-age must be > 0")
        require(self.stream_max_msgs_per_subject > 0, "--stream-max-msgs-per-subject must be > 0")
        require(self.stream_max_bytes > 0, "--stream-max-bytes must be > 0")
        require(self.stream_duplicate_window > 0, "--stream-duplicate-window must be > 0")
        require(self.stream_max_consumers > 0, "--stream-max-consumers must be > 0")
        require(self.stream_replicas in {1, 3, 5}, "--stream-replicas must be 1, 3 or 5")

    def stream_settings(self) -> StreamSettings:
        return StreamSettings(
            name=self.stream,
            subject_prefix=self.subject_prefix,
            max_age=self.stream_max_age,
            max_msgs_per_subject=self.stream_max_msgs_per_subject,
            max_bytes=self.stream_max_bytes,
            duplicate_window=self.stream_duplicate_window,
            max_consumers=self.stream_max_consumers,
            replicas=self.stream_replicas,
        )


def redact_urls(urls: str) -> str:
    """NATS URL(s) fit for logs: user, password or token replaced by '***'."""
    return ",".join(re.sub(r"//[^/@]*@", "//***@", url.strip()) for url in urls.split(","))
