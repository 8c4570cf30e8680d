"""Why the publisher could not start; `python -m publisher` exits with status 2 on any.

    PublisherError
    ├── NatsUnavailableError     NATS did not accept a connection within --wait-for-nats
    │                            and --connect-timeout
    ├── StreamUnavailableError   the stream could not be created or reconciled
    └── ReplayFileError          a --replay file that cannot be read, or a bad row (file:line)

Each message is one line that names the URL or stream, for the operator to act on.
"""

from __future__ import annotations


class PublisherError(Exception):
    pass


class NatsUnavailableError(PublisherError):
    pass


class StreamUnavailableError(PublisherError):
    pass


class ReplayFileError(PublisherError):
    pass


def describe(error: BaseException) -> str:
    """An exception as one line: its message, or its type when it has none."""
    text = " ".join(str(error).split())
    # nats-py quotes the server's -ERR text after its own prefix: "nats: 'Authorization
    # Violation'".
    return text.removeprefix("nats: ").strip("'") or type(error).__name__
