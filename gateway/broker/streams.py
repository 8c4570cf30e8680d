"""The stream's info from JetStream, or the one error every caller answers with a 503."""

from __future__ import annotations

import asyncio
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
    in a reconnect storm, thousands of streams waited seconds for their turn.) While a
    call is in flight, callers take the answer before it up to `max_stale` seconds old:
    in a storm the call's answer waits its turn behind the whole loop, and every stream
    opened meanwhile waited with it."""

    def __init__(self, name: str, max_age: float, max_stale: float = 0.0) -> None:
        self._name = name
        self._max_age = max_age
        self._max_stale = max(max_stale, max_age)
        self._info: StreamInfo | None = None
        self._at = -math.inf  # loop time the info was asked for
        self._asking: _Call | None = None

    async def get(self, js: JetStreamContext | None, nc: NATS | None) -> StreamInfo:
        """Raises NatsUnavailableError as stream_info does (a call's error goes to every
        caller that waited for it)."""
        loop = asyncio.get_running_loop()
        while True:
            call = self._asking
            if self._info is not None:
                age = loop.time() - self._at
                if age < (self._max_age if call is None else self._max_stale):
                    return self._info
            if call is None:
                return await self._ask(js, nc, loop)
            await call.done.wait()
            if call.info is not None:
                return call.info
            if call.error is not None:
                raise NatsUnavailableError(call.error)
            # Its caller went away before the answer: look again.

    async def _ask(
        self, js: JetStreamContext | None, nc: NATS | None, loop: asyncio.AbstractEventLoop
    ) -> StreamInfo:
        call = self._asking = _Call()
        at = loop.time()  # the info's age counts from before the call
        try:
            call.info = await stream_info(js, nc, self._name)
        except NatsUnavailableError as exc:
            call.error = str(exc)
            raise
        finally:
            self._asking = None
            call.done.set()
        self._info, self._at = call.info, at
        return call.info


class _Call:
    """A stream-info call in flight; once `done`, its answer or its error (neither: its
    caller was cancelled)."""

    __slots__ = ("done", "error", "info")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.info: StreamInfo | None = None
        self.error: str | None = None
