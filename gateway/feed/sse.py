"""Server-Sent Events framing, in the format of ASP.NET Core's TypedResults.ServerSentEvents.

Pure bytes, no I/O: each function returns one complete frame.
"""

from __future__ import annotations

import json
from datetime import datetime

from contracts.errors import InvalidTickError
from contracts.messages import PriceTick

PRICE_EVENT = b"stockUpdate"
HEARTBEAT = b": heartbeat\n\n"


def retry_frame(retry: float) -> bytes:
    return b"retry: %d\n\n" % round(retry * 1000)


def price_frame(event_id: bytes, payload: bytes) -> bytes:
    """One price event. `payload` is the compact one-line JSON object of a stored tick: the
    id is spliced in as its first field instead of re-encoding the JSON."""
    return (
        b"id: "
        + event_id
        + b'\nevent: stockUpdate\ndata: {"id":"'
        + event_id
        + b'",'
        + payload[1:]
        + b"\n\n"
    )


def is_spliceable(payload: bytes) -> bool:
    """True when `payload` can go through `price_frame` as it is: a non-empty JSON object on
    one line (a raw CR or LF would end the SSE data field early)."""
    return (
        len(payload) > 2
        and payload[0] == 0x7B  # {
        and payload[1] == 0x22  # " : the first field follows at once
        and payload[-1] == 0x7D  # }
        and b"\n" not in payload
        and b"\r" not in payload
    )


def reset_frame(reason: str, detail: str) -> bytes:
    data = json.dumps({"reason": reason, "detail": detail}, separators=(",", ":"))
    return b"event: reset\ndata: " + data.encode() + b"\n\n"


def comment_frame(text: str) -> bytes:
    return b": " + text.replace("\n", " ").replace("\r", " ").encode() + b"\n\n"


def event_frame(event_id: bytes, payload: bytes) -> bytes | None:
    """The frame of one stored message, or None when it is not a tick.

    Compact one-line JSON (what publishers write) is spliced as it is; anything else that
    is a valid tick is re-encoded first.
    """
    if not is_spliceable(payload):
        try:
            payload = PriceTick.decode(payload).encode()
        except InvalidTickError:
            return None
    return price_frame(event_id, payload)


def published_at(payload: bytes) -> float | None:
    """The tick's timestamp as epoch seconds, found without parsing the JSON."""
    start = payload.find(b'"timestamp":"')
    if start < 0:
        return None
    start += 13
    end = payload.find(b'"', start)
    try:
        return datetime.fromisoformat(payload[start:end].decode()).timestamp()
    except (ValueError, UnicodeDecodeError):
        return None
