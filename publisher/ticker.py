"""The tick loop: each period, one tick per symbol, each published until JetStream acks it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors

from contracts.messages import MSG_ID_HEADER, PriceTick, message_id
from contracts.symbols import subject_for
from publisher.settings import PublisherSettings, retry_backoff
from publisher.ticks import PriceWalk

if TYPE_CHECKING:
    from faststream.nats.publisher.usecase import LogicPublisher
    from nats.js.api import PubAck

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
# Errors after which the tick may or may not be stored: the ack was lost, the client is
# reconnecting and buffered it, or JetStream is between leaders. A retry with the same
# Nats-Msg-Id is safe because JetStream stores an id once within its duplicate window.
RETRYABLE = (
    TimeoutError,  # nats.errors.TimeoutError is one
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.errors.OutboundBufferLimitError,
)


def first_msg_id() -> int:
    """Where this process's counter starts: the wall clock in microseconds.

    A restarted publisher with the same source must not reuse the ids of its previous
    run while they are still in the duplicate window (its ticks would be dropped as
    duplicates); starting from the clock keeps the counter increasing across restarts
    as long as a process publishes fewer than a million ticks per second.
    """
    return time.time_ns() // 1000


@dataclass(slots=True)
class PublishStats:
    """Counters since start; each tick ends in exactly one of the first three."""

    published: int = 0  # acked and stored (once, even if a retry got there)
    duplicates: int = 0  # acked as a duplicate on the first attempt: the id was taken
    failed: int = 0  # every attempt failed; logged
    retries: int = 0
    late_rounds: int = 0  # rounds that ended after the next one was due


class TickPublisher:
    """Publishes a PriceWalk's ticks through a FastStream JetStream publisher at a fixed rate."""

    def __init__(
        self,
        publisher: LogicPublisher,
        settings: PublisherSettings,
        *,
        walk: PriceWalk | None = None,
        first_id: int | None = None,
    ) -> None:
        self._publisher = publisher
        self._stream = settings.stream
        self._prefix = settings.subject_prefix
        self._source = settings.source
        self._period = 1.0 / settings.rate
        self._timeout = settings.publish_timeout
        self._retries = settings.publish_retries
        self.walk = walk or PriceWalk(settings.symbol_list, settings.source)
        self._ids = itertools.count(first_msg_id() if first_id is None else first_id)
        self._jitter = random.Random()
        self._stopping = asyncio.Event()
        self.stats = PublishStats()

    def next_msg_id(self) -> str:
        """The next `<source>:<counter>` of this process, increasing across all symbols."""
        return message_id(self._source, next(self._ids))

    async def publish_once(self, tick: PriceTick, msg_id: str | None = None) -> PubAck | None:
        """Publish `tick` and wait for its ack, retrying a lost ack under the same id.

        Returns the ack, or None when every attempt failed; failures are logged and
        counted in `stats`, never raised.
        """
        msg_id = msg_id or self.next_msg_id()
        subject = subject_for(tick.symbol, self._prefix)
        payload = tick.encode()
        headers = {MSG_ID_HEADER: msg_id, "content-type": CONTENT_TYPE}
        attempt = 0
        while True:
            try:
                ack = await self._publisher.publish(
                    payload,
                    subject=subject,
                    headers=headers,
                    correlation_id=msg_id,
                    stream=self._stream,
                    timeout=self._timeout,
                )
            except RETRYABLE as exc:
                if attempt == self._retries:
                    error: Exception = exc
                    break
                delay = retry_backoff(attempt) * self._jitter.uniform(1.0, 1.2)
                attempt += 1
                self.stats.retries += 1
                logger.warning(
                    "publish retry",
                    extra={
                        "msg_id": msg_id,
                        "subject": subject,
                        "attempt": attempt,
                        "error": repr(exc),
                        "delay": round(delay, 3),
                    },
                )
                await asyncio.sleep(delay)
            except nats.errors.Error as exc:
                # Refused for good (e.g. the subject is not in the stream) or the
                # connection is closed: another attempt would fail the same way.
                error = exc
                break
            else:
                if ack.duplicate and attempt == 0:
                    self.stats.duplicates += 1
                    logger.warning(
                        "tick dropped: its Nats-Msg-Id was already stored",
                        extra={"msg_id": msg_id, "subject": subject, "seq": ack.seq},
                    )
                else:
                    self.stats.published += 1
                return ack
        self.stats.failed += 1
        logger.error(
            "publish failed",
            extra={
                "msg_id": msg_id,
                "subject": subject,
                "attempts": attempt + 1,
                "error": repr(error),
            },
        )
        return None

    async def publish_round(self) -> None:
        """Publish one tick of every symbol, concurrently, and wait for all of them."""
        # Ids are taken in symbol order before any publish starts, so they increase
        # across the round whatever order the acks come back in.
        batch = [(self.walk.tick(symbol), self.next_msg_id()) for symbol in self.walk.symbols]
        async with asyncio.TaskGroup() as tg:
            for tick, msg_id in batch:
                tg.create_task(self.publish_once(tick, msg_id))

    def stop(self) -> None:
        """Ask `run` to return after the round in flight."""
        self._stopping.set()

    async def run(self) -> None:
        """Publish a round every 1/rate seconds until `stop()` (or cancellation).

        Rounds are due on a fixed grid of loop times, so sleeps do not accumulate drift.
        A round that ends late starts the next one at once and the grid restarts from
        there: a stall is never followed by a burst of catch-up rounds.
        """
        loop = asyncio.get_running_loop()
        due = loop.time()
        late = False
        while not self._stopping.is_set():
            await self.publish_round()
            due += self._period
            now = loop.time()
            if due < now:
                self.stats.late_rounds += 1
                if not late:
                    logger.warning(
                        "publishing behind schedule: the rate drops instead of bursting later",
                        extra={"late_by": round(now - due, 3), "period": self._period},
                    )
                due, late = now, True
            elif late:
                logger.info("publishing on schedule again", extra={"period": self._period})
                late = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await self._stopping.wait()
