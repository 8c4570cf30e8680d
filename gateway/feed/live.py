"""The live feed: one consumer on every price subject for the whole process, fanned out.

Each message is framed once; the same bytes go to every outbox of its subject, as one
shared `LiveEvent` (gateway.feed.outbox). Per client and event the cost is one offer.
The feed is ordered by stream sequence and never skips: when its consumer is lost (a NATS
restart) it is recreated from the next sequence.

Every feed keeps what it handed over lately (gateway.feed.recent): the latest event of
each subject, the start of a client that connects without an id, and, for the live feed,
the last --resume-window seconds of events, the catch-up of a client that comes back
within them. Neither needs a consumer.

A delayed feed (`delay` > 0, one per distinct delay per process) follows the stream
`delay` seconds behind: it hands a message over once JetStream's clock says it was stored
that long ago. JetStream holds what is not due yet (the feed reads a batch ahead at most).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sized

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from contracts.event_ids import incarnation_of
from contracts.symbols import all_subjects
from gateway.broker.consumer import PullConsumer
from gateway.broker.deliveries import delivery, stored_at
from gateway.broker.direct import first_sequence_since, last_per_subject
from gateway.broker.spec import ConsumerSpec, consumer_name
from gateway.broker.streams import stored_between, stream_info
from gateway.errors import NatsUnavailableError, StreamEndedError
from gateway.feed import sse
from gateway.feed.flushing import Flusher
from gateway.feed.framer import TickFramer
from gateway.feed.outbox import LiveEvent, Policy
from gateway.feed.recent import RecentEvents
from gateway.feed.splice import FEED_LOST, STREAM_REPLACED
from gateway.metrics import Metrics
from gateway.settings import Settings

logger = logging.getLogger(__name__)

LIVE_BATCH = 1024
RESTART_DELAY = 0.5


class LiveFeed:
    """`run()` keeps one pull consumer on `<prefix>.>` and fans its messages out."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        settings: Settings,
        metrics: Metrics,
        framer: TickFramer,
        delay: float = 0.0,
        waiting: Sized = (),
    ) -> None:
        self.delay = delay
        self._name = f"delayed{delay:g}" if delay else "live"
        window = 0.0 if delay else settings.resume_window
        self.recent = RecentEvents(window, settings.resume_window_bytes)
        self._idle_at: float | None = None
        self.nc = nc
        self.js = js
        self._settings = settings
        self._metrics = metrics
        self._framer = framer
        self._stream = settings.stream
        # Per subject its outboxes, as dict keys: a set of a subject's 1,900 clients (W2 at
        # 19,000) took 69 B per client, its table kept at most 60% full and grown 4x;
        # a dict takes 39 B, and iterates as fast.
        self._by_subject: dict[str, dict[Policy, None]] = {}
        self._everything: set[Policy] = set()
        self.incarnation: str | None = None
        self.position = 0  # the last stream sequence fanned out
        self.running = asyncio.Event()
        # When due outboxes' readers are told; `waiting`: connections not yet answered.
        self._flusher = Flusher(settings.coalesce, waiting)
        self._changed = asyncio.Event()  # replaced at each change; waiters hold the old one
        self._consumer: PullConsumer | None = None
        self._generations = itertools.count(1)
        self._followed_since: float | None = None

    def subscribe(self, outbox: Policy) -> None:
        if outbox.subjects is None:
            self._everything.add(outbox)
        else:
            for subject in outbox.subjects:
                self._by_subject.setdefault(subject, {})[outbox] = None

    def idle_since(self, now: float) -> float:
        """Seconds nobody has been subscribed (0 while someone is)."""
        if self._everything or self._by_subject:
            self._idle_at = None
            return 0.0
        if self._idle_at is None:
            self._idle_at = now
        return now - self._idle_at

    def unsubscribe(self, outbox: Policy) -> None:
        if outbox.subjects is None:
            self._everything.discard(outbox)
            return
        for subject in outbox.subjects:
            outboxes = self._by_subject.get(subject)
            if outboxes is not None:
                outboxes.pop(outbox, None)
                if not outboxes:
                    del self._by_subject[subject]

    async def wait_following(self, incarnation: str | None) -> None:
        """Until the feed follows the stream of `incarnation` (None: whichever; it lags a
        recreated stream by a moment); bound it with a timeout."""
        while not (self.running.is_set() and incarnation in (None, self.incarnation)):
            await self._changed.wait()

    def _set_running(self, running: bool) -> None:
        if running:
            self.running.set()
        else:
            self.running.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    async def stored_between(
        self, subjects: tuple[str, ...] | None, after: int, through: int
    ) -> bool:
        """Whether the stream's leader holds a message of `subjects` (None: all) after
        sequence `after` and up to `through`. Raises NatsUnavailableError if it does not
        answer."""
        wanted = subjects or (all_subjects(self._settings.subject_prefix),)
        timeout = self._settings.nats_timeout
        return await stored_between(self.js, self._stream, wanted, after, through, timeout)

    def repull(self) -> None:
        if self._consumer is not None:
            self._consumer.repull()

    async def run(self) -> None:
        """Until cancelled: follow the stream, recreating the consumer whenever it is lost.
        Streams wait through a short interruption (the feed resumes at the next sequence);
        if it lasts, they end, so their clients resume elsewhere by Last-Event-ID."""
        try:
            await self._keep_following()
        finally:
            self._flusher.close()

    async def _keep_following(self) -> None:
        loop = asyncio.get_running_loop()
        down_since: float | None = None
        while True:
            try:
                await self._follow()
            except (StreamEndedError, NatsUnavailableError, NatsError, TimeoutError) as exc:
                # A warning once per outage; its retries, every RESTART_DELAY, at debug.
                first = down_since is None or self._followed_since is not None
                level = logging.WARNING if first else logging.DEBUG
                logger.log(level, "live feed interrupted", extra={"error": str(exc)})
            self._set_running(False)
            now = loop.time()
            if down_since is None or self._followed_since is not None:
                down_since, self._followed_since = now, None
            elif now - down_since > self._settings.nats_timeout * 2:
                self._end_all(FEED_LOST)
                down_since = now
            await asyncio.sleep(RESTART_DELAY)

    async def _follow(self) -> None:
        info = await stream_info(self.js, self.nc, self._stream)  # from a leader not cut off
        assert info.created is not None
        incarnation = incarnation_of(info.created)
        prefix = f"{incarnation}-".encode()
        if incarnation != self.incarnation:
            if self.incarnation is not None:
                self._end_all(STREAM_REPLACED)
            # A new stream, or the first: start after what it holds now (or held `delay` ago).
            self.incarnation = incarnation
            self.position = await self._start_position(prefix, info.state.last_seq)
        elif info.state.first_seq > self.position + 1:
            # What came while the feed was away has aged out: what it hands over next
            # does not continue what it keeps.
            self.recent.reset(info.state.first_seq - 1)
        spec = ConsumerSpec(
            stream=self._stream,
            # A new name each time: a consumer on a NATS node that died may come back with
            # it, and the cluster refuses to re-create a name with another start sequence.
            name=consumer_name(self._name, self._settings.gateway_id, next(self._generations)),
            filter_subjects=(all_subjects(self._settings.subject_prefix),),
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            start_sequence=self.position + 1,
            # A delayed feed may wait up to `delay` for a message to fall due, pulling
            # nothing meanwhile (JetStream keeps what is not due): not inactive then.
            inactive_threshold=self._settings.inactive_threshold + self.delay,
        )
        async with PullConsumer(
            self.nc,
            self.js,
            spec,
            self._metrics,
            batch=LIVE_BATCH,
            api_timeout=self._settings.nats_timeout,
        ) as consumer:
            self._consumer = consumer
            self._set_running(True)
            self._followed_since = asyncio.get_running_loop().time()
            logger.info("live feed following", extra={"from": self.position + 1})
            try:
                while True:
                    batch = await consumer.next_batch(self._settings.nats_ping_interval, probe=True)
                    if self.delay:
                        await self._dispatch_when_due(prefix, batch)
                    else:
                        self._dispatch(prefix, batch)
            finally:
                self._consumer = None

    async def _start_position(self, prefix: bytes, last: int) -> int:
        """Where a new stream is followed from: its end, or where it was `delay` ago;
        with the last message of each subject up to there, framed, as the feed's latest."""
        timeout = self._settings.nats_timeout
        position = last
        if self.delay:
            since = time.time() - self.delay
            first = await first_sequence_since(self.nc, self._stream, since, timeout)
            # None: nothing stored since then; read `last` first, so anything stored
            # after it is newer still.
            position = last if first is None else min(first - 1, last)
        everything = all_subjects(self._settings.subject_prefix)
        stored = await last_per_subject(self.nc, self._stream, everything, position, timeout)
        latest = (self._event(prefix, m.sequence, m.data, m.subject) for m in stored)
        self.recent.reset(position, latest)
        return position

    def _event(self, prefix: bytes, sequence: int, data: bytes, subject: str) -> LiveEvent:
        frame = self._framer.frame(prefix + b"%d" % sequence, data, subject)
        return LiveEvent(sequence, frame, sse.published_at(data), subject)

    async def _dispatch_when_due(self, prefix: bytes, batch: list[Msg]) -> None:
        """Hand each message over once it was stored `delay` seconds ago (in order)."""
        start = 0
        for i, msg in enumerate(batch):
            wait = stored_at(msg.reply) + self.delay - time.time()
            if wait > 0:
                self._dispatch(prefix, batch[start:i])
                start = i
                await asyncio.sleep(wait)
        self._dispatch(prefix, batch[start:])

    def _dispatch(self, prefix: bytes, batch: list[Msg]) -> None:
        by_subject = self._by_subject
        everything = self._everything
        due = self._flusher.due
        recent = self.recent
        framer = self._framer
        for msg in batch:
            digits, _ = delivery(msg.reply)
            sequence = int(digits)
            if sequence <= self.position:
                continue  # from an earlier consumer of ours that came back: already sent
            self.position = sequence
            data = msg.data
            frame = framer.frame(prefix + digits, data, msg.subject)
            event = LiveEvent(sequence, frame, sse.published_at(data), msg.subject)
            recent.add(event)
            for outbox in by_subject.get(msg.subject, ()):
                if outbox.offer(event):
                    due.append(outbox)
            for outbox in everything:
                if outbox.offer(event):
                    due.append(outbox)
        recent.trim(asyncio.get_running_loop().time(), self.position)
        if due:
            self._flusher.schedule()

    def _end_all(self, reason: str) -> None:
        for outbox in self._everything.union(*self._by_subject.values()):
            if (reader := outbox.reader) is not None:
                reader.stop(reason)
