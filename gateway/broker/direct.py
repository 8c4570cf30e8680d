"""JetStream direct gets: stored messages looked up by time, or the last of each subject
up to a sequence, without a consumer (the stream allows direct gets)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import NamedTuple

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

_STATUS = "Status"
_SEQUENCE = "Nats-Sequence"
_SUBJECT = "Nats-Subject"


class StoredMessage(NamedTuple):
    sequence: int
    subject: str
    data: bytes


class DirectGetError(Exception):
    """The server refused a direct get, or answered what no direct get answers."""


async def first_sequence_since(nc: NATS, stream: str, since: float, timeout: float) -> int | None:
    """The sequence of the first message stored at or after epoch `since`; None if none."""
    at = datetime.fromtimestamp(since, UTC).isoformat().replace("+00:00", "Z")
    answer = await nc.request(_subject(stream), _request(start_time=at), timeout=timeout)
    headers = answer.headers or {}
    if headers.get(_STATUS) == "404":
        return None
    if _SEQUENCE not in headers:
        raise DirectGetError(f"direct get by time in {stream}: {headers}")
    return int(headers[_SEQUENCE])


async def last_per_subject(
    nc: NATS, stream: str, subjects: str, up_to: int, timeout: float
) -> list[StoredMessage]:
    """The last message of every subject matching `subjects` with a sequence <= `up_to`."""
    if up_to < 1:
        return []
    inbox = nc.new_inbox()
    found: list[StoredMessage] = []
    subscription = await nc.subscribe(inbox)
    try:
        # A batch request: the answers come one message each, then an end-of-batch status.
        request = _request(multi_last=[subjects], up_to_seq=up_to, batch=100_000)
        await nc.publish(_subject(stream), request, reply=inbox)
        while True:
            message: Msg = await subscription.next_msg(timeout=timeout)
            headers = message.headers or {}
            status = headers.get(_STATUS)
            if status == "204":  # end of the batch
                return found
            if status == "404":  # nothing matches
                return found
            if status is not None or _SEQUENCE not in headers:
                raise DirectGetError(f"direct get of the last messages in {stream}: {headers}")
            found.append(StoredMessage(int(headers[_SEQUENCE]), headers[_SUBJECT], message.data))
    finally:
        await subscription.unsubscribe()


def _subject(stream: str) -> str:
    return f"$JS.API.DIRECT.GET.{stream}"


def _request(**fields: object) -> bytes:
    return json.dumps(fields).encode()
