"""Why the publisher could not start; `python -m publisher` exits with status 2 on any.

    PublisherError
    ├── NatsUnavailableError     NATS did not accept a connection within --connect-timeout
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
