"""A gateway's /stocks as an async iterator of ticks that survives disconnects.

Each connection sends the last event id it saw as Last-Event-ID, so after any cut (network,
a gateway draining or dying, a 503) the next connection, to whichever replica, resumes with
exactly the ticks that were missed: none lost, none twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any

import httpx

from price_client.backoff import Backoff, retry_after
from price_client.errors import GaveUpError, RequestRejectedError
from price_client.sse import Event, EventParser

logger = logging.getLogger(__name__)

PRICE_EVENT = "stockUpdate"
RESET_EVENT = "reset"
# The gateway sends a heartbeat every 15 s by default: three missed is a dead connection.
IDLE_TIMEOUT = 45.0
CONNECT_TIMEOUT = 10.0
# Answers worth another try: the gateway's 503 (at capacity, NATS away), proxies' 502/504,
# and 429 from a rate limit in front of it.
RETRYABLE_STATUS = {429, 500, 502, 503, 504}

Token = str | Callable[[], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Tick:
    """One price. `price` keeps the digits as published (189.230000 stays so); `data` is
    the whole event, extra fields included."""

    id: str
    symbol: str
    price: Decimal
    timestamp: datetime
    source: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reset:
    """The gateway could not resume at the last id (`position-lost`: those ticks are no
    longer stored; `stream-recreated`): ticks start again from the latest stored ones."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one connection ended and how long the stream waited before the next."""

    outcome: str  # "ended", "503", "transport: ReadTimeout", ...
    delay: float


class _RetryError(Exception):
    def __init__(self, outcome: str, at_least: float = 0.0) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.at_least = at_least


class PriceStream:
    """Ticks of `symbols` (None: every symbol) from the gateway at `base_url`, for ever.

    Use as `async with PriceStream(url, ["AAPL"]) as stream: async for tick in stream:`.
    `last_event_id` starts after a known id (kept by the caller across restarts);
    `token` is a JWT, or an async function returning one, asked before each connection;
    `on_reset` is called when the gateway cannot resume (see Reset). Connections that
    fail or end are retried with `backoff`, never sooner than the gateway's Retry-After
    or SSE `retry:`. Raises RequestRejectedError on a 4xx, GaveUpError after
    `max_attempts` failures in a row (None: never).
    """

    def __init__(
        self,
        base_url: str,
        symbols: Sequence[str] | None = None,
        *,
        last_event_id: str = "",
        token: Token | None = None,
        on_reset: Callable[[Reset], None] | None = None,
        backoff: Backoff | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        max_attempts: int | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/stocks"
        self.params = {"symbols": ",".join(symbols)} if symbols else {}
        self.last_event_id = last_event_id
        self.token = token
        self.on_reset = on_reset
        self.backoff = backoff or Backoff()
        self.timeout = httpx.Timeout(CONNECT_TIMEOUT, read=idle_timeout)
        self.max_attempts = max_attempts
        self.attempts: deque[Attempt] = deque(maxlen=100)  # the latest, for logs and tests
        self.server_retry: float | None = None
        self._http = http or httpx.AsyncClient()
        self._owns_http = http is None
        self._iterator: AsyncGenerator[Tick, None] | None = None

    async def __aenter__(self) -> PriceStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End the connection in flight; the iteration ends."""
        if self._iterator is not None:
            await self._iterator.aclose()
        if self._owns_http:
            await self._http.aclose()

    def __aiter__(self) -> AsyncIterator[Tick]:
        if self._iterator is None:
            self._iterator = self._ticks()
        return self._iterator

    async def _ticks(self) -> AsyncGenerator[Tick, None]:
        failures = 0
        while True:
            at_least = 0.0
            try:
                async for tick in self._connect():
                    failures = 0
                    yield tick
                outcome = "ended"  # drained or cut by the gateway: resume at once-ish
            except _RetryError as retry:
                outcome, at_least = retry.outcome, retry.at_least
            except httpx.TransportError as exc:
                outcome = f"transport: {type(exc).__name__}"
            failures += 1
            if self.max_attempts is not None and failures >= self.max_attempts:
                raise GaveUpError(f"{failures} connections in a row failed; the last: {outcome}")
            delay = max(self.backoff.next_delay(), at_least, self.server_retry or 0.0)
            self.attempts.append(Attempt(outcome, delay))
            logger.info(
                "reconnecting",
                extra={"outcome": outcome, "delay": round(delay, 3), "after": self.last_event_id},
            )
            await asyncio.sleep(delay)

    async def _connect(self) -> AsyncIterator[Tick]:
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        if self.token is not None:
            token = self.token if isinstance(self.token, str) else await self.token()
            headers["Authorization"] = f"Bearer {token}"
        async with self._http.stream(
            "GET", self.url, params=self.params, headers=headers, timeout=self.timeout
        ) as response:
            await _check(response)
            parser = EventParser(self.last_event_id)
            async for line in response.aiter_lines():
                event = parser.feed(line)
                self.server_retry = parser.retry
                if event is None:
                    continue
                if event.event == PRICE_EVENT:
                    tick = self._tick(event)
                    if tick is not None:
                        self.last_event_id = tick.id
                        self.backoff.reset()  # a stream that works: the next cut is news
                        yield tick
                elif event.event == RESET_EVENT:
                    self._reset(event)

    def _tick(self, event: Event) -> Tick | None:
        try:
            data = json.loads(event.data, parse_float=Decimal)
            tick = Tick(
                id=str(data["id"]),
                symbol=str(data["symbol"]),
                price=Decimal(data["price"]),
                timestamp=datetime.fromisoformat(data["timestamp"]),
                source=str(data["source"]),
                data=data,
            )
        except (ValueError, KeyError, TypeError, ArithmeticError):
            logger.warning("event skipped: not a tick", extra={"data": event.data[:200]})
            return None
        if _already_seen(tick.id, self.last_event_id):
            return None  # defensive: the gateway sends each id once per resume
        return tick

    def _reset(self, event: Event) -> None:
        try:
            data = json.loads(event.data)
            reset = Reset(str(data["reason"]), str(data.get("detail", "")))
        except (ValueError, KeyError, TypeError):
            reset = Reset("unknown", event.data[:200])
        logger.warning("resume impossible", extra={"reason": reset.reason, "detail": reset.detail})
        if self.on_reset is not None:
            self.on_reset(reset)


async def _check(response: httpx.Response) -> None:
    """Return for a 200 event stream; raise _RetryError or RequestRejectedError otherwise."""
    status = response.status_code
    content_type = response.headers.get("content-type", "")
    if status == 200 and content_type.startswith("text/event-stream"):
        return
    await response.aread()
    if status in RETRYABLE_STATUS or status == 200:
        wait = retry_after(response.headers.get("retry-after")) or 0.0
        raise _RetryError(str(status) if status != 200 else f"200 {content_type}", wait)
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {"title": response.reason_phrase, "detail": response.text[:200]}
    raise RequestRejectedError(status, problem)


def _already_seen(event_id: str, last: str) -> bool:
    """Whether `event_id` is at or before `last` in the same stream incarnation."""
    incarnation, _, sequence = event_id.rpartition("-")
    last_incarnation, _, last_sequence = last.rpartition("-")
    if not incarnation or incarnation != last_incarnation:
        return False
    try:
        return int(sequence) <= int(last_sequence)
    except ValueError:
        return False
