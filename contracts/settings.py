"""Typed settings from flags and environment variables, shared by both commands.

A settings class is a frozen dataclass whose fields are declared with `setting()`.
`load_settings` builds one from argv and the environment: flag beats variable beats
default, `--help` lists every field with its variable, and a bad value exits with
status 2 and a one-line message (argparse's convention).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from contracts.nats_options import tls_context
from contracts.stream import StreamSettings
from contracts.symbols import SYMBOL_PATTERN

T = TypeVar("T")
# The stream's defaults are StreamSettings'; the flags only give them a name and a help.
_STREAM = StreamSettings()

# A subject of one or more tokens without wildcards: what a reply inbox may start with.
_SUBJECT = re.compile(r"[^\s.*>]+(\.[^\s.*>]+)*")


class SettingsError(ValueError):
    """A setting has a value outside its range; the message names it."""


def setting(
    default: Any,
    help: str,
    *,
    env: str | None = None,
    secret: bool = False,
    shown: Callable[[Any], str] | None = None,
) -> Any:
    """A settings field: its default, its `--help` text, and its variable (else PREFIX_NAME).

    A `secret` is never printed: `--help` shows no value for it and repr() leaves it out.
    `shown` prints the value in `--help` (e.g. redacted); such a field is left out of repr().
    """
    return dataclasses.field(
        default=default,
        repr=not (secret or shown),
        metadata={"help": help, "env": env, "secret": secret, "shown": shown},
    )


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
    parser = argparse.ArgumentParser(prog=prog)
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
            help=f"{f.metadata['help']} [${var}]{_default_note(f, value)}",
        )
    args = parser.parse_args(list(argv))
    try:
        return cls(**vars(args))
    except SettingsError as exc:
        _fail(parser, str(exc))


def _default_note(f: dataclasses.Field[Any], value: Any) -> str:
    # Written here rather than by ArgumentDefaultsHelpFormatter, which would print a
    # password taken from the environment.
    if f.metadata.get("secret"):
        return ""
    shown = f.metadata.get("shown") or str
    return " (default: {})".format(shown(value).replace("%", "%%"))  # help is %-formatted


def _fail(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    # One line, unlike parser.error(), which prints the whole usage block first.
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def require(condition: bool, message: str) -> None:
    """Raise SettingsError with `message` unless `condition` holds."""
    if not condition:
        raise SettingsError(message)


def redact_urls(urls: str) -> str:
    """NATS URL(s) fit for logs: user, password or token replaced by '***'."""
    return ",".join(re.sub(r"//[^/@]*@", "//***@", url.strip()) for url in urls.split(","))


@dataclass(frozen=True, slots=True, kw_only=True)
class CommonSettings:
    """What the gateway and the publisher both need: where NATS is, and the stream."""

    nats_url: str = setting(
        "nats://127.0.0.1:4222",
        "NATS server URL(s), comma-separated",
        env="NATS_URL",
        shown=redact_urls,
    )
    nats_user: str = setting("", "NATS user name, with --nats-password", env="NATS_USER")
    nats_password: str = setting(
        "",
        "NATS password (prefer the variable: a flag shows in the process list)",
        env="NATS_PASSWORD",
        secret=True,
    )
    nats_token: str = setting(
        "", "NATS authentication token (prefer the variable)", env="NATS_TOKEN", secret=True
    )
    nats_nkey_seed: str = setting("", "file with the NATS user's nkey seed", env="NATS_NKEY_SEED")
    nats_creds: str = setting(
        "", "NATS .creds file: user JWT and seed (decentralized auth)", env="NATS_CREDS"
    )
    nats_tls_ca: str = setting(
        "", "CA bundle to verify the NATS server's certificate (turns TLS on)", env="NATS_TLS_CA"
    )
    nats_tls_cert: str = setting(
        "", "client certificate for mutual TLS, with --nats-tls-key", env="NATS_TLS_CERT"
    )
    nats_tls_key: str = setting("", "private key of --nats-tls-cert", env="NATS_TLS_KEY")
    nats_inbox_prefix: str = setting(
        "_INBOX",
        "subject prefix of this process's reply inboxes; one per NATS user, so that no user "
        "may subscribe to another's replies",
        env="NATS_INBOX_PREFIX",
    )
    log_level: str = setting("info", "log level: debug, info, warning, error", env="LOG_LEVEL")
    stream: str = setting(_STREAM.name, "JetStream stream name", env="STREAM_NAME")
    subject_prefix: str = setting(
        _STREAM.subject_prefix, "subject prefix: prices.<SYMBOL>", env="STREAM_SUBJECT_PREFIX"
    )
    stream_max_age: float = setting(
        _STREAM.max_age, "seconds a tick is retained", env="STREAM_MAX_AGE"
    )
    stream_max_msgs_per_subject: int = setting(
        _STREAM.max_msgs_per_subject,
        "ticks retained per symbol (oldest dropped first)",
        env="STREAM_MAX_MSGS_PER_SUBJECT",
    )
    stream_max_bytes: int = setting(
        _STREAM.max_bytes, "bytes retained in the stream", env="STREAM_MAX_BYTES"
    )
    stream_duplicate_window: float = setting(
        _STREAM.duplicate_window,
        "seconds within which a repeated Nats-Msg-Id is stored once",
        env="STREAM_DUPLICATE_WINDOW",
    )
    stream_max_consumers: int = setting(
        _STREAM.max_consumers,
        "consumers the stream admits (one per SSE client)",
        env="STREAM_MAX_CONSUMERS",
    )
    stream_replicas: int = setting(
        _STREAM.replicas, "stream replicas (3 in a cluster)", env="STREAM_REPLICAS"
    )
    stream_max_msg_size: int = setting(
        _STREAM.max_msg_size,
        "bytes of one message the stream stores; bigger publishes are refused",
        env="STREAM_MAX_MSG_SIZE",
    )
    stream_consumer_max_inactive: float = setting(
        _STREAM.consumer_max_inactive,
        "seconds any consumer of the stream may stay unused (and what one naming none gets); "
        "0 = no limit; keep it above the gateway's --inactive-threshold + 86400 (delay)",
        env="STREAM_CONSUMER_MAX_INACTIVE",
    )

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
        require(
            self.stream_consumer_max_inactive >= 0, "--stream-consumer-max-inactive must be >= 0"
        )
        require(
            256 <= self.stream_max_msg_size <= 1024 * 1024,
            "--stream-max-msg-size must be 256 to 1048576 bytes (NATS's default max payload)",
        )
        self._check_nats_auth()
        self._check_nats_tls()
        require(
            _SUBJECT.fullmatch(self.nats_inbox_prefix) is not None,
            "--nats-inbox-prefix must be a subject without wildcards, like _INBOX_gateway, "
            f"not {self.nats_inbox_prefix!r}",
        )

    def _check_nats_auth(self) -> None:
        in_url = any(_has_credentials(url) for url in self.nats_url.split(","))
        methods = [
            name
            for name, used in (
                ("credentials in --nats-url", in_url),
                ("--nats-user/--nats-password", bool(self.nats_user or self.nats_password)),
                ("--nats-token", bool(self.nats_token)),
                ("--nats-nkey-seed", bool(self.nats_nkey_seed)),
                ("--nats-creds", bool(self.nats_creds)),
            )
            if used
        ]
        require(
            len(methods) <= 1,
            f"choose one NATS authentication method, not {' and '.join(methods)}",
        )
        require(
            bool(self.nats_user) == bool(self.nats_password),
            "--nats-user and --nats-password go together",
        )
        _require_readable("--nats-nkey-seed", self.nats_nkey_seed)
        _require_readable("--nats-creds", self.nats_creds)

    def _check_nats_tls(self) -> None:
        require(
            bool(self.nats_tls_cert) == bool(self.nats_tls_key),
            "--nats-tls-cert and --nats-tls-key go together",
        )
        for flag, path in (
            ("--nats-tls-ca", self.nats_tls_ca),
            ("--nats-tls-cert", self.nats_tls_cert),
            ("--nats-tls-key", self.nats_tls_key),
        ):
            _require_readable(flag, path)
        try:  # loaded once here, so that a bad PEM file exits 2 at start, not at connect
            tls_context(self.nats_tls_ca, self.nats_tls_cert, self.nats_tls_key)
        except ssl.SSLError as exc:
            raise SettingsError(f"--nats-tls-*: cannot load the TLS files: {exc}") from None

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
            max_msg_size=self.stream_max_msg_size,
            consumer_max_inactive=self.stream_consumer_max_inactive,
        )


def _has_credentials(url: str) -> bool:
    try:
        return urlsplit(url.strip()).username is not None
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise SettingsError(f"--nats-url: {redact_urls(url)} is not a URL") from None


def _require_readable(flag: str, path: str) -> None:
    if path:
        require(
            os.path.isfile(path) and os.access(path, os.R_OK),
            f"{flag}: {path} is not a readable file",
        )
