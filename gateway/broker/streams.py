"""The stream's info from JetStream, or the one error every caller answers with a 503."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from nats.js.errors import NotFoundError

from gateway.errors import NatsUnavailableError

# A replicated stream's leader that has heard from fewer than a majority of its group
# within this many seconds is cut off from them (they answer within milliseconds when
# well): a partition. It answers for a stream that goes on growing elsewhere until it
# steps down (~15 s later), and then still answers, with no leader.
QUORUM_SILENCE = 3.0

NO_MESSAGE_FOUND = 10037  # JetStream's error code; a missing stream is a 404 too


async def stream_info(
    js: JetStreamContext | None,
    nc: NATS | None,
    name: str,
    *,
    subjects_filter: str | None = None,
    timeout: float | None = None,
) -> StreamInfo:
    """The info of stream `name` (with the subjects matching `subjects_filter`, if given).

    `js` and `nc` are None until the first connection. Raises NatsUnavailableError, whose
    message says why, while NATS is not connected, the stream does not exist, or NATS does
    not answer (within `timeout` seconds, when given, else the context's own timeout), or
    what answers is cut off from the stream's other replicas.
    """
    if js is None or nc is None or not nc.is_connected:
        raise NatsUnavailableError("not connected to NATS")
    try:
        async with asyncio.timeout(timeout):
            info = await js.stream_info(name, subjects_filter=subjects_filter)
    except NotFoundError:
        raise NatsUnavailableError(f"stream {name} not found") from None
    except (NatsError, TimeoutError) as exc:
        raise NatsUnavailableError(f"NATS did not answer: {exc!r}") from None
    if (problem := cut_off(info)) is not None:
        raise NatsUnavailableError(problem)
    return info


async def stored_between(
    js: JetStreamContext,
    stream: str,
    subjects: tuple[str, ...],
    after: int,
    through: int,
    timeout: float,
) -> bool:
    """Whether the stream's leader holds a message of `subjects` after sequence `after` and
    up to `through` (a consumer's replica answers from its own copy, which may be behind).
    Every subject is asked at once, and all within `timeout`. Raises NatsUnavailableError
    when the leader does not answer, or the stream is gone."""
    try:
        async with asyncio.timeout(timeout), asyncio.TaskGroup() as asks:
            firsts = [asks.create_task(_first_after(js, stream, s, after)) for s in subjects]
    except* (NatsError, TimeoutError) as failed:
        raise NatsUnavailableError(f"could not read the stream: {failed.exceptions[0]}") from None
    return any(0 < ask.result() <= through for ask in firsts)


async def _first_after(js: JetStreamContext, stream: str, subject: str, after: int) -> int:
    """The sequence of the first message of `subject` after `after` (0: none)."""
    try:
        msg = await js.get_msg(stream, seq=after + 1, subject=subject, next=True)
    except NotFoundError as exc:
        if exc.err_code == NO_MESSAGE_FOUND:
            return 0
        raise  # the stream itself is not found
    return msg.seq or 0


def cut_off(info: StreamInfo) -> str | None:
    """Why this answer cannot be trusted (see QUORUM_SILENCE), or None; a stream of one
    replica, or outside a cluster, always can."""
    cluster = info.cluster
    if cluster is None or not cluster.replicas:
        return None
    if cluster.leader is None:
        return f"stream {info.config.name} has no leader"
    heard = 1 + sum(
        1
        for peer in cluster.replicas
        if not peer.offline and (peer.active or 0) < QUORUM_SILENCE * 1e9  # nanoseconds
    )
    if 2 * heard <= 1 + len(cluster.replicas):
        return f"the leader {cluster.leader} has lost its replicas of stream {info.config.name}"
    return None


class RecentStreamInfo:
    """The stream's info at most `max_age` seconds old: one JetStream call per period
    however many ask. A fresh answer is returned with no await; callers that find it
    stale while a call is in flight wait for that call, are woken together and take its
    answer, however long it took. (Behind a lock they went through one per turn of the
    event loop, and an answer slower than `max_age` sent each of them to JetStream again:
    in a reconnect storm, thousands of streams waited seconds for their turn.)

    Up to `max_stale` seconds old, callers take the last answer at once while a call is
    in flight: in a storm the next answer waits its turn behind the whole loop, and every
    stream opened meanwhile waited with it. Once `ask_in` has given it a task group, the
    caller that asks waits `patience` seconds at most for the answer, then takes the last
    one too: a quiet gateway's answer comes within milliseconds (a purge is seen at once),
    a storm's can take a second."""

    def __init__(
        self, name: str, max_age: float, max_stale: float = 0.0, patience: float = 0.0
    ) -> None:
        self._name = name
        self._max_age = max_age
        self._max_stale = max(max_stale, max_age)
        self._patience = patience
        self._info: StreamInfo | None = None
        self._at = -math.inf  # loop time the info was asked for
        self._asking: _Call | None = None
        self._tasks: asyncio.TaskGroup | None = None

    def ask_in(self, tasks: asyncio.TaskGroup) -> None:
        """Ask in `tasks` while the last answer is still usable (see `patience`)."""
        self._tasks = tasks

    async def get(self, js: JetStreamContext | None, nc: NATS | None) -> StreamInfo:
        """Raises NatsUnavailableError as stream_info does (a call's error goes to every
        caller that waited for it)."""
        loop = asyncio.get_running_loop()
        while True:
            call = self._asking
            if self._info is not None:
                age = loop.time() - self._at
                if age < self._max_age:
                    return self._info
                if age < self._max_stale:
                    if call is not None:
                        return self._info
                    if (call := self._ask_behind(js, nc)) is not None:
                        return await self._answer_or_last(call)
            if call is None:
                return await self._ask(js, nc, self._calling())
            await call.done.wait()
            if call.info is not None:
                return call.info
            if call.error is not None:
                raise NatsUnavailableError(call.error)
            # Its caller went away before the answer: look again.

    async def _answer_or_last(self, call: _Call) -> StreamInfo:
        """The answer of `call` if it comes within `patience` seconds, else the last."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._patience):
                await call.done.wait()
        info = call.info if call.info is not None else self._info
        assert info is not None
        return info

    def _calling(self) -> _Call:
        call = self._asking = _Call()
        return call

    def _ask_behind(self, js: JetStreamContext | None, nc: NATS | None) -> _Call | None:
        """The next call, made in the task group; None when there is none (or it is
        closing): the caller asks itself."""
        if self._tasks is None:
            return None
        call = self._calling()
        asking = self._ask_quietly(js, nc, call)
        try:
            task = self._tasks.create_task(asking)
        except RuntimeError:  # the group is shutting down
            asking.close()
            self._answered(call)
            return None
        # A task cancelled before its first step never runs _ask's `finally`.
        task.add_done_callback(functools.partial(self._answered, call))
        return call

    async def _ask_quietly(self, js: JetStreamContext | None, nc: NATS | None, call: _Call) -> None:
        """`_ask` for no caller: its error is the waiters' (an error must not end the
        task group)."""
        with contextlib.suppress(NatsUnavailableError):
            await self._ask(js, nc, call)

    async def _ask(self, js: JetStreamContext | None, nc: NATS | None, call: _Call) -> StreamInfo:
        at = asyncio.get_running_loop().time()  # the info's age counts from before the call
        try:
            call.info = await stream_info(js, nc, self._name)
        except NatsUnavailableError as exc:
            call.error = str(exc)
            raise
        finally:
            self._answered(call)
        self._info, self._at = call.info, at
        return call.info

    def _answered(self, call: _Call, _: object = None) -> None:
        if self._asking is call:
            self._asking = None
        call.done.set()


class _Call:
    """A stream-info call in flight; once `done`, its answer or its error (neither: its
    caller was cancelled)."""

    __slots__ = ("done", "error", "info")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.info: StreamInfo | None = None
        self.error: str | None = None
