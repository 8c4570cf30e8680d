"""Where a client's feed starts, and from what.

From the live feed's memory when it can (gateway.feed.recent): a client without an id
starts from the latest event of each of its symbols, and one whose id falls inside the
resume window catches up from the window; neither needs a JetStream call. From a
consumer of its own otherwise (an id older than the window, a delayed resume, no shared
feed), created at the pace --catch-up-rate allows (gateway.broker.pace).

The memory is read and the client's outbox joins the feed with no await in between, so
the two meet exactly: what the feed hands over next goes to the outbox.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from functools import lru_cache, partial

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from contracts.stream import StreamSettings
from contracts.symbols import all_subjects, subject_for
from gateway.broker.consumer import PullConsumer
from gateway.broker.pace import CreationPace
from gateway.broker.spec import ConsumerSpec, consumer_name
from gateway.broker.streams import RecentStreamInfo, stream_info
from gateway.delivery import EXACT, Delivery
from gateway.errors import NatsUnavailableError, OverloadedError
from gateway.feed.catch_up import CatchUps
from gateway.feed.client import ClientFeed
from gateway.feed.conflation import ConflatingOutbox
from gateway.feed.feeds import LiveFeeds
from gateway.feed.framer import TickFramer
from gateway.feed.live import LiveFeed
from gateway.feed.outbox import Outbox, Policy
from gateway.feed.recent import Backlog
from gateway.feed.resume import Start, fresh, resolve_start
from gateway.http.query import StreamQuery
from gateway.metrics import FROM_JETSTREAM, FROM_MEMORY, Metrics
from gateway.settings import Settings

# Seconds a client whose id is ahead of this process's feed (it comes from a replica a
# little ahead) waits for the feed to get there before it takes a consumer instead.
AHEAD_WAIT = 1.0
# Seconds the stream's info is shared between starts: a purge that close to a resume is a
# race either way, and a storm costs ten JetStream calls a second.
STREAM_INFO_MAX_AGE = 0.1
# Starts take the last up to this old while the next is asked for: in a storm the answer
# waits its turn behind a busy loop (W5 measured 0.5-1.6 s), and every start would wait
# with it. Its last sequence is no bound then: what the live feed handed over is stored.
STREAM_INFO_MAX_STALE = 5.0
# Seconds the start that asks for the next info waits for it before it takes the last:
# a quiet gateway's answer comes in milliseconds, so a purge is seen at once.
STREAM_INFO_PATIENCE = 0.2
SUBJECTS_CACHED = 4096  # symbols whose subject is kept (~0.2 KB each)


class FeedOpener:
    """Builds each client's `ClientFeed` (not yet entered)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        framer: TickFramer,
        feeds: LiveFeeds,
        stream: StreamSettings,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._framer = framer
        self._feeds = feeds
        self._stream = stream
        self._pace = CreationPace(settings.catch_up_rate)
        self._stream_info = RecentStreamInfo(
            stream.name, STREAM_INFO_MAX_AGE, STREAM_INFO_MAX_STALE, STREAM_INFO_PATIENCE
        )
        self._client_numbers = itertools.count(1)
        # Per symbol, its subject: made once, not per stream (a storm asks for the same
        # symbols over and over); bounded, as the symbols clients may name are not.
        self._subject = lru_cache(SUBJECTS_CACHED)(
            partial(subject_for, prefix=stream.subject_prefix)
        )
        self._catch_ups_of: tuple[NATS, CatchUps] | None = None  # the connection's
        self._fresh = fresh("")  # fresh(incarnation) of the latest incarnation seen
        # A client's catch-up from memory may hold up to this much in its outbox.
        self._budget = settings.max_pending_bytes // 2

    def serve_in(self, tasks: asyncio.TaskGroup) -> None:
        """Ask for the stream's info in `tasks`, behind the starts that use the last."""
        self._stream_info.ask_in(tasks)

    def subjects(self, query: StreamQuery) -> tuple[str, ...]:
        if query.symbols is None:
            return (all_subjects(self._stream.subject_prefix),)
        return tuple(map(self._subject, query.symbols))

    async def open(
        self, query: StreamQuery, nc: NATS | None, js: JetStreamContext | None
    ) -> ClientFeed:
        """The client's feed; raises NatsUnavailableError, OverloadedError or
        BadRequestError (an id from the future) before anything is sent."""
        if nc is None or js is None or not nc.is_connected:
            raise NatsUnavailableError("not connected to NATS")
        subjects = self.subjects(query)
        wanted = None if query.symbols is None else subjects
        client_id = f"{next(self._client_numbers)}"
        delivery = query.delivery
        if self._settings.shared_feed or delivery != EXACT:
            started = await self._from_memory(query, wanted, nc, js)
            if started is not None:
                start, feed, backlog = started
                outbox = self._outbox(wanted, delivery)
                catch_ups = self._catch_ups(nc, js)
                return ClientFeed(
                    client_id, start, catch_ups, feed, outbox, self._metrics, backlog=backlog
                )
        return await self._from_jetstream(query, client_id, subjects, nc, js)

    async def _from_jetstream(
        self,
        query: StreamQuery,
        client_id: str,
        subjects: tuple[str, ...],
        nc: NATS,
        js: JetStreamContext,
    ) -> ClientFeed:
        """A feed that catches up from a consumer of its own, at the pace allowed."""
        try:
            await self._pace.turn()
        except OverloadedError:
            self._metrics.requests_shed.inc()
            raise
        wanted = None if query.symbols is None else subjects
        info = await stream_info(js, nc, self._stream.name)
        start = await resolve_start(js, info, query.position, wanted)
        catch_ups = self._catch_ups(nc, js)
        catch_up = catch_ups.new(client_id, subjects, start.incarnation, start.after)
        delivery = query.delivery
        if delivery.conflate and start.sequence is not None:
            # Conflated, the client wants only the latest tick of each symbol after its
            # id: JetStream's latest of each, less those it already had.
            catch_up.prepare(DeliverPolicy.LAST_PER_SUBJECT, None)
        else:
            catch_up.prepare(start.deliver_policy, start.sequence)
        live: LiveFeed | None = None
        outbox: Policy | None = None
        if self._settings.shared_feed or delivery != EXACT:
            live = await self._feeds.following_stream(start.incarnation, delivery.delay)
            outbox = self._outbox(wanted, delivery)
        if query.position is not None:
            self._metrics.resumes.labels(FROM_JETSTREAM).inc()
        return ClientFeed(
            client_id, start, catch_ups, live, outbox, self._metrics, catch_up=catch_up
        )

    async def _from_memory(
        self, query: StreamQuery, wanted: tuple[str, ...] | None, nc: NATS, js: JetStreamContext
    ) -> tuple[Start, LiveFeed, Backlog] | None:
        """The start from the feed's memory, or None when it does not hold it."""
        position, delay = query.position, query.delivery.delay
        if position is not None and delay:
            return None  # a delayed feed keeps no window: what is due comes from JetStream
        live = await self._feeds.following_stream(None, delay)
        # What is no longer stored (purged, aged out) is not sent from memory either.
        stored = (await self._stream_info.get(js, nc)).state
        assert live.incarnation is not None
        recent = live.recent
        if position is None:
            # A delayed feed's latest are the only start there is (JetStream's latest
            # are not due yet), whatever their size.
            budget = math.inf if delay else self._budget
            events = recent.latest_of(wanted, budget, stored.first_seq)
            if self._fresh.incarnation != live.incarnation:
                self._fresh = fresh(live.incarnation)
            start = self._fresh  # immutable: one for every fresh start on this stream
        elif (
            position.incarnation == live.incarnation
            # Still stored, and stored already: only then is the feed worth waiting for
            # (an id from the future gets its 400 from JetStream's answer at once).
            and stored.first_seq - 1 <= position.sequence <= max(stored.last_seq, live.position)
            and await recent.reached(position.sequence, AHEAD_WAIT)
        ):
            events = recent.after(position.sequence, wanted, self._budget)
            start = Start(live.incarnation, DeliverPolicy.BY_START_SEQUENCE, position.sequence + 1)
        else:
            return None  # another stream, or an id from the future: JetStream says which
        if events is None:
            return None  # not all held, or too much for the outbox
        if position is not None:
            self._metrics.resumes.labels(FROM_MEMORY).inc()
        return start, live, Backlog(events, live.position)

    def _outbox(self, wanted: tuple[str, ...] | None, delivery: Delivery) -> Policy:
        if delivery.conflate:
            return ConflatingOutbox(wanted, delivery.conflate, self._metrics)
        return Outbox(wanted, self._settings.max_pending_bytes)

    def _catch_ups(self, nc: NATS, js: JetStreamContext) -> CatchUps:
        """What makes the clients' consumers on `nc`: one for all of them, so that a client
        makes its catch-up only when it needs one (~0.4 KB while it lasts)."""
        catch_ups = self._catch_ups_of
        if catch_ups is None or catch_ups[0] is not nc:
            maker = partial(FeedOpener._open_consumer, self, nc, js)
            everything = (all_subjects(self._stream.subject_prefix),)
            catch_ups = self._catch_ups_of = (nc, CatchUps(maker, self._framer, everything))
        return catch_ups[1]

    def _open_consumer(
        self,
        nc: NATS,
        js: JetStreamContext,
        client_id: str,
        subjects: tuple[str, ...],
        policy: DeliverPolicy,
        sequence: int | None,
    ) -> PullConsumer:
        settings = self._settings
        spec = ConsumerSpec(
            stream=self._stream.name,
            name=consumer_name("sse", settings.gateway_id, client_id),
            filter_subjects=subjects,
            deliver_policy=policy,
            start_sequence=sequence,
            inactive_threshold=settings.inactive_threshold,
        )
        return PullConsumer(
            nc,
            js,
            spec,
            self._metrics,
            batch=settings.pull_batch,
            api_timeout=settings.nats_timeout,
        )
