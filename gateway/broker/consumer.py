"""A JetStream pull consumer of ours (a client's, or the live feed's), and its pull loop.

nats-py's `fetch()` waits to fill a whole batch before returning, which would hold a live
tick back for up to the request's expiry. This loop instead keeps pull requests
outstanding and hands over whatever has arrived: ticks flow at once, catch-up comes in
batches, and nothing more is asked of JetStream until the client has taken what it has,
so a slow client costs the gateway at most ~1.5 batches of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from types import TracebackType

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from gateway.broker.deliveries import consumer_sequence
from gateway.broker.spec import ConsumerSpec
from gateway.broker.streams import stream_info
from gateway.errors import NatsUnavailableError, StreamEndedError
from gateway.metrics import Metrics
from gateway.wakeup import Wakeup

logger = logging.getLogger(__name__)

CLEANUP_TIMEOUT = 2.0
_STATUS = "Status"
_PENDING_MESSAGES = "Nats-Pending-Messages"
_LAST_CONSUMER = "Nats-Last-Consumer"


class PullConsumer:
    """An async context manager: creates the consumer on entry, deletes it on every exit
    (or earlier, with `close()`)."""

    # One per client catching up, or per client for good with --shared-feed=false.
    __slots__ = (
        "_api_timeout",
        "_batch",
        "_expires",
        "_failure",
        "_handed",
        "_idle_heartbeat",
        "_inbox",
        "_js",
        "_last_heard",
        "_metrics",
        "_nc",
        "_next_subject",
        "_open",
        "_outstanding",
        "_ready",
        "_silence",
        "_silences",
        "_sub",
        "_wake",
        "initial_pending",
        "spec",
    )

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        spec: ConsumerSpec,
        metrics: Metrics,
        *,
        batch: int,
        api_timeout: float,
    ) -> None:
        self._nc = nc
        self._js = js
        self.spec = spec
        self._metrics = metrics
        self._batch = batch
        self._api_timeout = api_timeout
        # A pull request lives half the inactivity threshold, so the server sees a live
        # consumer; idle heartbeats on it reveal a request lost in a NATS reconnect.
        self._expires = max(1.0, min(30.0, spec.inactive_threshold / 2))
        self._idle_heartbeat = self._expires / 4
        self._silence = 3 * self._idle_heartbeat
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.name}"
        self._inbox = nc.new_inbox()
        self._ready: list[Msg] = []
        self._wake = Wakeup()
        self._outstanding = 0
        self._last_heard = 0.0
        self._silences = 0  # silences in a row, each answered by pulling again
        # Why it ended, as text: a stored, raised exception would keep its traceback's
        # frames (and this object) alive in a reference cycle.
        self._failure: str | None = None
        self._sub: Subscription | None = None
        self._handed = 0  # consumer sequence of the last message handed over
        self._open = False
        self.initial_pending = 0  # messages it had to deliver when created

    async def __aenter__(self) -> PullConsumer:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            info = await self._js.add_consumer(
                self.spec.stream, self.spec.config(), timeout=self._api_timeout
            )
        except (NatsError, TimeoutError) as exc:
            # Includes the stream's consumer limit (10026): a capacity problem, not a bug.
            raise NatsUnavailableError(f"could not create a consumer: {exc}") from None
        self._last_heard = loop.time()
        self._metrics.consumer_create_seconds.observe(self._last_heard - started)
        self._metrics.consumers_open.inc()
        self._open = True
        self.initial_pending = info.num_pending or 0
        try:
            self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)
        except BaseException:
            await self.close()
            raise
        logger.debug("consumer created", extra={"consumer": self.spec.name})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Unsubscribe and delete the consumer; a no-op once done."""
        if not self._open:
            return
        self._open = False
        if self._sub is not None:
            sub, self._sub = self._sub, None  # a spent one still holds its queue and task
            # If the connection is closing, the subscription goes with it.
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()
        self._metrics.consumers_open.dec()
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                with self._metrics.consumer_delete_seconds.time():
                    await self._js.delete_consumer(self.spec.stream, self.spec.name)
        except NotFoundError:
            pass  # already removed by the server (inactivity, stream deleted)
        except (TimeoutError, NatsError) as exc:
            # Not fatal: the server removes it after the inactivity threshold.
            logger.warning(
                "consumer not deleted", extra={"consumer": self.spec.name, "error": repr(exc)}
            )
        else:
            logger.debug("consumer deleted", extra={"consumer": self.spec.name})

    def stop(self, reason: str) -> None:
        """End the feed: the pending or next `next_batch` raises StreamEndedError(reason)."""
        if self._failure is None:
            self._failure = reason
        self._wake.set()

    def repull(self) -> None:
        """Forget the pull requests in flight (lost in a reconnect) and ask again."""
        self._outstanding = 0
        self._silences = 0  # a new connection: a new silence window
        self._last_heard = asyncio.get_running_loop().time()
        self._wake.set()

    async def next_batch(self, timeout: float, *, probe: bool = False) -> list[Msg]:
        """The messages that have arrived, waiting up to `timeout` for at least one.

        Returns [] when nothing came in time (with `probe`, once JetStream has answered for
        the stream: else NatsUnavailableError); raises StreamEndedError when the feed was
        stopped or the consumer is gone (deleted, lost with a NATS restart, or silent).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._ready:
            if self._failure is not None:
                raise StreamEndedError(self._failure)
            if self._outstanding <= self._batch // 2:
                await self._pull()
            now = loop.time()
            heard_by = self._last_heard + self._silence
            wait = min(deadline, heard_by) - now
            if wait > 0:
                self._wake.clear()
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            elif now >= deadline:
                if probe:  # a quiet stream, or a JetStream cut off: which is it?
                    await self._probe()
                return []
            elif self._silences:
                # Asked again and still nothing: the link to the consumer is silent (a
                # partition, or its node cut off). End; a new consumer may be reachable.
                raise StreamEndedError(f"no word from consumer {self.spec.name}")
            else:
                # Neither messages nor heartbeats: our pull requests were lost (a reconnect).
                # Ask again; if the consumer itself is gone, the server answers 503.
                self._silences += 1
                self._outstanding = 0
                self._last_heard = now
        return self._take()

    def _take(self) -> list[Msg]:
        """What has arrived, up to the first gap in the consumer's sequence. A gap means
        deliveries were lost on the way (a NATS node died holding them) that JetStream
        counts as delivered: the feed ends after the messages before it, and whoever
        follows on (a new consumer, a client resuming by id) starts right after them."""
        batch, self._ready = self._ready, []
        if consumer_sequence(batch[-1].reply) != self._handed + len(batch):
            batch = self._before_gap(batch)
        self._handed += len(batch)
        return batch

    def _before_gap(self, batch: list[Msg]) -> list[Msg]:
        for i, msg in enumerate(batch):
            if consumer_sequence(msg.reply) != self._handed + i + 1:
                self._lost()
                if not i:
                    raise StreamEndedError(f"deliveries of {self.spec.name} were lost")
                return batch[:i]
        return batch

    def _lost(self) -> None:
        if self._failure is None:
            self._failure = f"deliveries of consumer {self.spec.name} were lost on the way"
            self._metrics.deliveries_lost.inc()

    async def _probe(self) -> None:
        """Raises NatsUnavailableError unless JetStream answers for the stream, from a
        leader that is not cut off from its replicas (gateway.broker.streams)."""
        await stream_info(self._js, self._nc, self.spec.stream, timeout=self._api_timeout)

    async def _pull(self) -> None:
        request = {
            "batch": self._batch,
            "expires": int(self._expires * 1e9),
            "idle_heartbeat": int(self._idle_heartbeat * 1e9),
        }
        self._outstanding += self._batch
        try:
            await self._nc.publish(
                self._next_subject, json.dumps(request).encode(), reply=self._inbox
            )
        except NatsError:
            # Closed or over nats-py's reconnect buffer: asked again after the silence.
            self._outstanding -= self._batch

    async def _on_message(self, msg: Msg) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        self._silences = 0
        headers = msg.headers
        status = headers.get(_STATUS) if headers else None
        if status is None:
            self._ready.append(msg)
            self._outstanding -= 1
        elif status == "408" or (status == "409" and _PENDING_MESSAGES in headers):  # type: ignore[operator]
            # A pull request expired or ended early: what it still owed will not come.
            self._outstanding -= int(headers[_PENDING_MESSAGES])  # type: ignore[index]
            description = headers.get("Description", "")  # type: ignore[union-attr]
            if "Deleted" in description:
                self._failure = f"consumer {self.spec.name} was deleted"
        elif status == "409":
            self._failure = f"consumer {self.spec.name}: {headers}"
        elif status == "503":
            self._failure = f"consumer {self.spec.name} is gone"
        elif status == "100":  # an idle heartbeat: it says how many were delivered so far
            delivered = headers.get(_LAST_CONSUMER)  # type: ignore[union-attr]
            if delivered is not None and int(delivered) > self._handed + len(self._ready):
                self._lost()
        # 404 "no messages" only answers no_wait requests.
        self._wake.set()
