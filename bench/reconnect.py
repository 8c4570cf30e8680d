"""W5's client side, in a loader: armed, every client whose stream the server ends
reconnects at once to another server with its Last-Event-ID, as the page's client would.

A refusal with a Retry-After (503 when shedding, 429) is retried after that many seconds
plus a random jitter; a failure (refused, reset, closed before answering) after the
page's backoff: half to all of `retry` x 2^(n-1), capped. A client that got its 200 keeps
one history across its connections (`Connection.successor`), so the exactness check
judges what it got from the first server and the second as one stream. Times are
`time.perf_counter()` (CLOCK_MONOTONIC: the same clock in every process), so the
benchmark measures them from the moment it sent the SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.loader import Connection, Loader

STORM_OPS = frozenset({"arm", "storm", "calm"})
BACKOFF_CAP = 30.0  # the page's maxDelayMs


@dataclass(slots=True)
class Resume:
    """One client from the end of its stream until it streams again."""

    lost_at: float
    attempts: int = 0
    refused: int = 0  # answers other than 200 (503s and 429s included)
    failures: int = 0  # no answer: refused, reset, closed, timed out
    first: Connection | None = None  # its first connection answered 200 after the loss


@dataclass(slots=True)
class Counts:
    """What the clients of this loader met on the way back, by kind."""

    statuses: dict[str, int] = field(default_factory=dict)  # refusals by status
    failures: dict[str, int] = field(default_factory=dict)  # failures by kind
    dropped: int = 0  # streams of the second server that ended again (they resume too)

    def refusal(self, status: int) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1

    def failure(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


class Reconnector:
    """The loader's clients reconnecting to `port` until `calm` (or `seconds` have passed)."""

    def __init__(self, loader: Loader, request: dict[str, Any]) -> None:
        self.loader = loader
        self.port: int = request["port"]
        self.jitter: float = request["jitter"]
        self.retry: float = request["retry"]
        # The loop, kept: asyncio.get_running_loop() costs a getpid() call per use, and a
        # storm makes thousands of uses in the second its loader is busiest.
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + request["seconds"]
        self.armed = sum(not c.closed for c in loader.connections.values())
        self.clients: dict[int, Resume] = {}
        self.counts = Counts()
        self.calm = asyncio.Event()
        self.answering: set[Connection] = set()  # attempts connected, not answered yet
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "arm":
            return {"armed": self.armed}
        if op == "calm":
            await self.quiet()
            return self.report(times=True)
        return self.report(times=request.get("times", False))

    def lost(self, conn: Connection) -> None:
        """A connection ended: if it was the client's stream and the server ended it, the
        client reconnects at once."""
        if (
            conn.decoder.status != 200
            or not conn.closed_by_server
            or self.calm.is_set()
            or self.loader.connections.get(conn.ident) is not conn
        ):
            return
        resume = self.clients.get(conn.ident)
        if resume is None:
            resume = self.clients[conn.ident] = Resume(time.perf_counter())
        else:
            self.counts.dropped += 1
        task = self.loop.create_task(self._resume(conn, resume))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def quiet(self) -> None:
        """No more attempts: those waiting for an answer are closed, every client's
        resume ends (those sleeping wake at once)."""
        self.calm.set()
        for conn in list(self.answering):
            conn.close()
        if self.tasks:
            await asyncio.gather(*self.tasks)

    async def _resume(self, last: Connection, resume: Resume) -> None:
        failures = 0
        path = last.request.split(b" ", 2)[1]
        resumed = b"Last-Event-ID: " + last.last_id + b"\r\n" if last.last_id else b""
        head = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n"
        request = head % (path, self.port) + resumed + b"\r\n"
        while not self.calm.is_set() and self.loop.time() < self.deadline:
            conn = last.successor(request, self.loop)
            resume.attempts += 1
            status = await self._attempt(conn)
            if status == 200:
                self.loader.connections[conn.ident] = conn
                if resume.first is None:
                    resume.first = conn
                return
            if status > 0:
                resume.refused += 1
                self.counts.refusal(status)
            else:
                resume.failures += 1
                failures += 1
                self.counts.failure(conn.error or "closed before answering")
            after = conn.decoder.retry_after
            if status > 0 and after is not None:
                wait = after + random.uniform(0, self.jitter)
            else:  # the page's backoff
                ceiling = min(BACKOFF_CAP, self.retry * 2 ** max(0, failures - 1))
                wait = ceiling / 2 + random.uniform(0, ceiling / 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.calm.wait(), wait)

    async def _attempt(self, conn: Connection) -> int:
        """Connect and wait for the answer (or the deadline); its status, -1 for none."""
        try:
            async with asyncio.timeout_at(self.deadline):
                await self.loop.create_connection(
                    lambda: conn, "127.0.0.1", self.port, local_addr=self.loader.source
                )
                if self.calm.is_set():
                    conn.close()
                self.answering.add(conn)
                try:
                    return await conn.answered
                finally:
                    self.answering.discard(conn)
        except TimeoutError:  # the window ended: still connecting (SYN queue), or waiting
            waiting = conn.transport is not None
            conn.error = "no answer within the window" if waiting else "not connected in the window"
        except OSError as exc:
            conn.error = type(exc).__name__
        conn.close()
        return -1

    def report(self, times: bool) -> dict[str, Any]:
        """Counts so far; with `times`, each lost client's times (perf_counter seconds):
        when its stream ended, when its new stream's body began, its first event there."""
        resumes = self.clients.values()
        answer: dict[str, Any] = {
            "armed": self.armed,
            "lost": len(self.clients),
            "answered": sum(r.first is not None for r in resumes),
            "streaming": sum(_at(r.first, "first_event") is not None for r in resumes),
            "attempts": sum(r.attempts for r in resumes),
            "clients_refused": sum(r.refused > 0 for r in resumes),
            "clients_failed": sum(r.failures > 0 for r in resumes),
            "statuses": self.counts.statuses,
            "failures": self.counts.failures,
            "dropped": self.counts.dropped,
        }
        if times:
            answer["lost_at"] = [r.lost_at for r in resumes]
            answer["answered_at"] = [_at(r.first, "first_byte") for r in resumes]
            answer["first_event_at"] = [_at(r.first, "first_event") for r in resumes]
        return answer


def _at(conn: Connection | None, what: str) -> float | None:
    """A connection's `first_byte` or `first_event` on the perf_counter clock."""
    if conn is None:
        return None
    since: float | None = getattr(conn, what)
    return None if since is None else conn.started + since
