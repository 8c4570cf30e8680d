"""Poison messages: a stored message that is no tick is skipped, counted and logged, and the
stream goes on.

Anyone with publish rights on the subjects can store anything, so every message is checked
before its bytes reach a browser: size first (free), then nesting (two byte counts rule out
depth almost always), then one fast parse and `contracts.messages.tick_verdict`, which
applies PriceTick's rules without building one (a test holds the two to the same answers).
What it cannot settle cheaply (a price with an exponent, an escape in the text, JSON that
orjson refuses) PriceTick settles. The bytes that are forwarded stay the publisher's own
(exact price digits); the parse is only a check. A failure is logged at most once per
LOG_INTERVAL per reason, so a flood of poison cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import orjson

from contracts.errors import InvalidTickError
from contracts.messages import MAX_NESTING, PriceTick, nesting_depth, tick_verdict
from contracts.symbols import subject_token
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
        if str(exc).startswith("depth limit"):
            return TOO_DEEP
        # orjson refuses a few things the contract's parser takes (a lone surrogate
        # escape, an integer past 64 bits made a float it cannot hold): poison is rare,
        # so PriceTick decides.
        return _by_contract(payload, subject, MALFORMED)
    # Fewer brackets than the limit cannot nest deeper than it: the walk is rarely needed.
    brackets = payload.count(b"{") + payload.count(b"[")
    if brackets > MAX_NESTING and nesting_depth(tick) > MAX_NESTING:
        return TOO_DEEP
    if not isinstance(tick, dict):
        return NOT_A_TICK
    verdict = tick_verdict(tick, payload)
    if verdict is None:
        return _by_contract(payload, subject, NOT_A_TICK)
    if not verdict:
        return NOT_A_TICK
    return _on_subject(tick["symbol"], subject)


def _on_subject(symbol: str, subject: str) -> str | None:
    # The symbol decides who gets the event: it must be the one of its subject, or a
    # client of one symbol could be sent another's prices.
    return None if subject.partition(".")[2] == subject_token(symbol) else WRONG_SUBJECT


def _by_contract(payload: bytes, subject: str, reason: str) -> str | None:
    """PriceTick's answer, where the cheap check cannot give it."""
    try:
        tick = PriceTick.decode(payload)
    except InvalidTickError:
        return reason
    return _on_subject(tick.symbol, subject)


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
