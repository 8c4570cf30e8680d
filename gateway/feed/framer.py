"""Poison messages: a stored message that is no tick is skipped, counted and logged, and the
stream goes on.

Anyone with publish rights on the subjects can store anything, so every message is checked
before its bytes reach a browser: size first (free), then nesting (two byte counts rule out
depth almost always), then one fast parse and the four fields a client relies on. The
bytes that are forwarded stay the publisher's own (exact price digits); the parse is only
a check. A failure is logged at most once per LOG_INTERVAL per reason, so a flood of
poison cannot flood the log.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from typing import Any

import orjson

from contracts.messages import MAX_NESTING, RESERVED_FIELD, nesting_depth
from contracts.symbols import SYMBOL_PATTERN
from gateway.feed import sse
from gateway.metrics import (
    INVALID_MESSAGE,
    MALFORMED,
    NOT_A_TICK,
    OVERSIZED,
    TOO_DEEP,
    WRONG_SUBJECT,
    Metrics,
)

logger = logging.getLogger(__name__)

LOG_INTERVAL = 5.0


def inspect(payload: bytes, subject: str, max_bytes: int) -> str | None:
    """Why `payload`, stored on `subject`, must not be sent; None when it is a tick."""
    if len(payload) > max_bytes:
        return OVERSIZED
    try:
        tick = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return TOO_DEEP if str(exc).startswith("depth limit") else MALFORMED
    # Fewer brackets than the limit cannot nest deeper than it: the walk is rarely needed.
    brackets = payload.count(b"{") + payload.count(b"[")
    if brackets > MAX_NESTING and nesting_depth(tick) > MAX_NESTING:
        return TOO_DEEP
    if not isinstance(tick, dict) or not _has_tick_fields(tick):
        return NOT_A_TICK
    symbol: str = tick["symbol"]
    # The symbol decides who gets the event: it must be the one of its subject, or a
    # client of one symbol could be sent another's prices.
    if subject.partition(".")[2] != symbol.replace(".", "_"):
        return WRONG_SUBJECT
    return None


def _has_tick_fields(tick: dict[str, Any]) -> bool:
    symbol, price = tick.get("symbol"), tick.get("price")
    return (
        isinstance(symbol, str)
        and SYMBOL_PATTERN.fullmatch(symbol) is not None
        and isinstance(price, int | float)
        and not isinstance(price, bool)
        and price > 0
        and math.isfinite(price)
        and isinstance(tick.get("timestamp"), str)
        and isinstance(tick.get("source"), str)
        and RESERVED_FIELD not in tick  # two "id" keys: JSON.parse would keep the wrong one
    )


class PoisonLog:
    """Counts skipped messages by reason, and logs them without flooding the log."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._suppressed: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}

    def skipped(self, reason: str, subject: str, event_id: str) -> None:
        self._metrics.errors.labels(INVALID_MESSAGE).inc()
        self._metrics.messages_skipped.labels(reason).inc()
        now = time.monotonic()
        if now - self._logged_at.get(reason, -LOG_INTERVAL) < LOG_INTERVAL:
            self._suppressed[reason] += 1
            return
        self._logged_at[reason] = now
        logger.warning(
            "message skipped",
            extra={
                "reason": reason,
                "subject": subject,
                "event_id": event_id,
                "skipped_since_last_log": self._suppressed.pop(reason, 0),
            },
        )


class TickFramer:
    """Frames stored messages for clients: a price event, or a comment in place of poison."""

    def __init__(self, max_bytes: int, metrics: Metrics) -> None:
        self.max_bytes = max_bytes
        self._log = PoisonLog(metrics)

    def frame(self, event_id: bytes, payload: bytes, subject: str) -> bytes:
        reason = inspect(payload, subject, self.max_bytes)
        frame = None if reason else sse.event_frame(event_id, payload)
        if frame is not None:
            return frame
        # The comment tells a reader of the raw stream why a sequence is missing.
        event = event_id.decode()
        self._log.skipped(reason or NOT_A_TICK, subject, event)
        return sse.comment_frame(f"skipped invalid message {event}")
